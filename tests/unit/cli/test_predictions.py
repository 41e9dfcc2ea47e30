"""`imgclf predictions`: the newest predictions, or only the unknown ones, through the API's listing."""

from __future__ import annotations

import json

import pytest

from imgclf import ddb
from imgclf.settings import get_settings
from imgclf_cli.main import main


@pytest.fixture
def seed(template_tables):
    """Write prediction records as the classifier does."""

    def put(key: str, processed_at: str, verdict: str = "label", **extra) -> None:
        settings = get_settings()
        bucket = settings.data_bucket
        ddb.put_item(settings.predictions_table, {
            "image": f"s3://{bucket}/{key}", "bucket": bucket, "key": key, "status": "classified",
            "label": "ants", "confidence": 0.42, "probabilities": {"ants": 0.42, "bees": 0.58},
            "verdict": verdict, "model_version": "v1", "processed_at": processed_at, **extra,
        })

    return put


def test_unknown_lists_only_unknown_predictions_newest_first_across_short_pages(seed, capsys, monkeypatch):
    # GIVEN unknown predictions behind more recent labelled ones than one page of the query reads
    monkeypatch.setattr("imgclf_cli.predictions.PAGE", 2)
    for i in range(6):
        unknown = i in (0, 2)
        seed(f"uploads/{i}.jpg", f"2026-11-29T12:00:0{i}.000+00:00", verdict="unknown" if unknown else "label",
             **({"unknown_reason": "low_confidence"} if unknown else {}))

    # WHEN the unknown ones are listed
    code = main(["predictions", "--unknown"])

    # THEN both come back, newest first, one line each with the reason
    lines = capsys.readouterr().out.splitlines()
    assert code == 0
    assert [line.split()[1] for line in lines] == ["uploads/2.jpg", "uploads/0.jpg"]
    assert all("unknown ants 0.420 (low_confidence)" in line for line in lines)


def test_limit_caps_the_listing_and_json_gives_one_object_a_line(seed, capsys):
    for i in range(3):
        seed(f"uploads/{i}.jpg", f"2026-11-29T12:00:0{i}.000+00:00")

    code = main(["--json", "predictions", "--limit", "2"])

    entries = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert code == 0
    assert [entry["prediction"]["key"] for entry in entries] == ["uploads/2.jpg", "uploads/1.jpg"]
    assert entries[0]["prediction"]["verdict"] == "label"


def test_an_empty_table_says_so(template_tables, capsys):
    assert main(["predictions", "--unknown"]) == 0

    assert "no unknown predictions yet" in capsys.readouterr().out
