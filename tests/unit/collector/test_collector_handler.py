"""The Lambda handler: one label per invocation, validated events, a summary for the Step Functions Map."""

from __future__ import annotations

import pytest

from imgclf.errors import ConfigError
from imgclf.settings import reset_settings
from imgclf_collector.handler import CollectRequest, lambda_handler
from tests.support.image_server import body
from tests.support.images import photo
from tests.support.tables import BUCKET


@pytest.fixture
def environment(s3, monkeypatch):
    """The collector's environment as the template sets it, plus the local stack's private-address switch."""
    for name, value in {
        "DATA_BUCKET": BUCKET,
        "ALLOW_PRIVATE_ADDRESSES": "true",
        "MIN_IMAGE_SIDE": "32",
        "DOWNLOAD_RETRIES": "0",
        "DOWNLOAD_DEADLINE_S": "2",
        "COLLECTOR_WORKERS": "4",
    }.items():
        monkeypatch.setenv(name, value)
    reset_settings()
    yield s3
    reset_settings()


def test_the_handler_collects_one_label_and_returns_its_summary(environment, image_server, lambda_context):
    # GIVEN a URL list in S3 with three photos for "happy" and one for "sad"
    s3 = environment
    rows = [f"happy,{image_server.add(f'/h{n}.jpg', body(photo(n)))}" for n in range(3)]
    rows.append(f"sad,{image_server.add('/s.jpg', body(photo(9)))}")
    s3.put_object(Bucket=BUCKET, Key="lists/obama.csv", Body="\n".join(rows).encode())
    event = {
        "dataset": "obama",
        "label": "happy",
        "query": "barack obama {label}",
        "count": 3,
        "source": "urls",
        "source_options": {"uri": f"s3://{BUCKET}/lists/obama.csv"},
        "run": "exec-1",
    }

    # WHEN the state machine invokes the collector for "happy"
    summary = lambda_handler(event, lambda_context)

    # THEN only "happy" was collected, and the summary says so in plain JSON-able data
    assert (summary["label"], summary["accepted"], summary["complete"]) == ("happy", 3, True)
    assert summary["query"] == "barack obama happy"
    assert summary["report_key"] == "datasets/obama/reports/exec-1.happy.json"
    assert image_server.hits["/s.jpg"] == 0


def test_the_handler_refuses_the_folder_source(environment, lambda_context):
    # GIVEN an event asking the Lambda to import a local folder
    event = {
        "dataset": "d",
        "label": "x",
        "count": 1,
        "source": "folder",
        "source_options": {"path": "/var/task"},
    }

    # WHEN it is invoked
    # THEN it refuses: in Lambda the collector never reads its own files
    with pytest.raises(ValueError, match="command line"):
        lambda_handler(event, lambda_context)


def test_the_bing_source_without_a_key_parameter_fails_clearly(environment, lambda_context, monkeypatch):
    # GIVEN no SEARCH_KEY_PARAMETER in the environment
    monkeypatch.delenv("SEARCH_KEY_PARAMETER", raising=False)
    reset_settings()

    # WHEN a bing collection is invoked
    # THEN it fails with a configuration error naming the setting
    with pytest.raises(ConfigError, match="SEARCH_KEY_PARAMETER"):
        lambda_handler({"dataset": "d", "label": "x", "count": 1, "source": "bing"}, lambda_context)


@pytest.mark.parametrize(
    ("event", "problem"),
    [
        ({"dataset": "a/b", "label": "x"}, "dataset"),
        ({"dataset": "d", "label": "../x"}, "label"),
        ({"dataset": "d", "label": "x", "count": 0}, "count"),
        ({"dataset": "d", "label": "x", "count": "many"}, "count"),
        ({"dataset": "d", "label": "x", "count": 5000}, "count"),
        ({"dataset": "d", "label": "x", "source": "google"}, "source"),
        ({"dataset": "d", "label": "x", "source_options": "s3://x"}, "source_options"),
    ],
)
def test_malformed_events_are_refused_naming_the_field(event, problem):
    # GIVEN an event with one bad field
    # WHEN it is parsed
    # THEN it is refused, naming the field
    with pytest.raises(ValueError, match=problem):
        CollectRequest.from_event(event)


def test_an_event_with_only_the_required_fields_gets_the_defaults():
    # GIVEN the smallest valid event
    # WHEN it is parsed
    request = CollectRequest.from_event({"dataset": "obama", "label": "happy"})

    # THEN the defaults apply: 150 images from DuckDuckGo, the label as the query
    assert (request.count, request.source, request.query) == (150, "ddg", "{label}")
