"""Candidate sources: the Bing v7 contract, DuckDuckGo through ddgs, URL lists, folders and S3 prefixes."""

from __future__ import annotations

import json
from pathlib import Path

import boto3
import pytest
import responses

from imgclf.settings import Settings
from imgclf_collector.errors import SearchAuthError, SearchError, SearchUnavailable
from imgclf_collector.search_key import forget_cached_keys
from imgclf_collector.sources import (
    BingSource,
    DdgSource,
    FolderSource,
    S3PrefixSource,
    UrlListSource,
    make_source,
)

EVENTS = Path(__file__).resolve().parents[2] / "events"
ENDPOINT = "https://search.example.com"
SEARCH_URL = f"{ENDPOINT}/v7.0/images/search"


def recorded(name: str) -> dict:
    return json.loads((EVENTS / f"{name}.json").read_text())


def bing(**kwargs) -> BingSource:
    kwargs.setdefault("sleep", kwargs.pop("slept", []).append)
    return BingSource(ENDPOINT, lambda: "secret-key", **kwargs)


@responses.activate
def test_bing_sends_the_v7_request_and_reads_the_recorded_response():
    # GIVEN the search API answering the recorded v7 response (4 results, nextOffset 4, 6 in total)
    responses.get(SEARCH_URL, json=recorded("bing_v7_images_search"))

    # WHEN the first 4 candidates are asked for
    found = list(bing().candidates("grizzly", "grizzly bear", 4))

    # THEN one GET carried the key header and the v7 parameters, and the contentUrls became candidates
    request = responses.calls[0].request
    assert request.headers["Ocp-Apim-Subscription-Key"] == "secret-key"
    params = responses.calls[0].request.params
    assert params == {"q": "grizzly bear", "count": "4", "offset": "0", "safeSearch": "Moderate"}
    assert [c.url for c in found][:2] == [
        "https://upload.wikimedia.org/wikipedia/commons/a/a9/GrizzlyBearJeanBeaufort.jpg",
        "https://i.natgeofe.com/k/5a1a2b3c-4d5e-6f70-8192-a3b4c5d6e7f8/grizzly-bear.jpg",
    ]
    first = found[0]
    assert (first.width, first.height, first.origin) == (1600, 1067, "http")
    assert first.page_url == "https://commons.wikimedia.org/wiki/File:GrizzlyBearJeanBeaufort.jpg"


@responses.activate
def test_bing_pages_with_next_offset_until_the_estimated_total():
    # GIVEN a first page ending at nextOffset 4 and a last page reaching the estimated total of 6
    responses.get(SEARCH_URL, json=recorded("bing_v7_images_search"))
    responses.get(SEARCH_URL, json=recorded("bing_v7_images_search_last_page"))

    # WHEN up to 400 candidates are asked for
    found = list(bing().candidates("grizzly", "grizzly bear", 400))

    # THEN it asked for 150 per page (the v7 maximum), continued at offset 4, and stopped at the total
    assert [call.request.params["offset"] for call in responses.calls] == ["0", "4"]
    assert responses.calls[0].request.params["count"] == "150"
    assert len(found) == 6


@responses.activate
def test_bing_refusing_the_key_fails_at_once_with_a_clear_error():
    # GIVEN the search API answering 401 with its ErrorResponse
    responses.get(SEARCH_URL, json=recorded("bing_v7_error_401"), status=401)
    slept: list[float] = []

    # WHEN candidates are asked for
    with pytest.raises(SearchAuthError) as caught:
        list(bing(slept=slept).candidates("grizzly", "grizzly bear", 10))

    # THEN there was no retry, and the message names the key setting, the API's reason and the retirement
    assert len(responses.calls) == 1 and slept == []
    message = str(caught.value)
    assert "SEARCH_KEY_PARAMETER" in message
    assert "Subscription key is not recognized" in message
    assert "2025-08-11" in message


@responses.activate
def test_bing_waits_out_a_429_for_the_time_retry_after_asks():
    # GIVEN the search API rate-limiting once (Retry-After: 2), then answering
    responses.get(SEARCH_URL, json=recorded("bing_v7_error_429"), status=429, headers={"Retry-After": "2"})
    responses.get(SEARCH_URL, json=recorded("bing_v7_images_search"))
    slept: list[float] = []

    # WHEN candidates are asked for
    found = list(bing(slept=slept).candidates("grizzly", "grizzly bear", 4))

    # THEN it waited 2 s and then got the results
    assert slept == [2.0]
    assert len(found) == 4


@responses.activate
def test_bing_gives_up_after_repeated_rate_limits_as_a_transient_failure():
    # GIVEN a search API that always answers 429
    responses.get(SEARCH_URL, json=recorded("bing_v7_error_429"), status=429)

    # WHEN candidates are asked for with three attempts
    # THEN it fails as "unavailable", which a later run may get past
    with pytest.raises(SearchUnavailable):
        list(bing(max_attempts=3).candidates("grizzly", "grizzly bear", 4))
    assert len(responses.calls) == 3


@pytest.mark.parametrize(
    "endpoint", [ENDPOINT, ENDPOINT + "/", ENDPOINT + "/v7.0", ENDPOINT + "/v7.0/images/search"]
)
def test_the_bing_endpoint_may_be_given_with_or_without_its_path(endpoint):
    # GIVEN an endpoint written in any of the usual ways
    # WHEN a source is built on it
    # THEN it searches the same v7 URL
    assert BingSource(endpoint, lambda: "k").search_url == SEARCH_URL


class FakeDDGS:
    """Stands in for ddgs.DDGS: answers from a script of results and exceptions."""

    def __init__(self, script: list):
        self.script = script
        self.calls: list[dict] = []

    def __call__(self):
        return self

    def images(self, query, **kwargs):
        self.calls.append({"query": query, **kwargs})
        outcome = self.script.pop(0)
        if isinstance(outcome, Exception):
            raise outcome
        return outcome


DDG_RESULTS = [
    {
        "title": "Happy",
        "image": "https://a.example/1.jpg",
        "thumbnail": "t",
        "url": "https://a.example/p1",
        "height": 600,
        "width": 800,
        "source": "Bing",
    },
    {
        "title": "Sad",
        "image": "https://b.example/2.png",
        "thumbnail": "t",
        "url": "https://b.example/p2",
        "height": "480",
        "width": "640",
        "source": "Bing",
    },
]


def test_ddg_waits_out_rate_limits_and_then_returns_the_image_urls():
    # GIVEN ddgs raising its rate-limit error twice, then answering
    from ddgs.exceptions import RatelimitException

    fake = FakeDDGS([RatelimitException("202 Ratelimit"), RatelimitException("202 Ratelimit"), DDG_RESULTS])
    slept: list[float] = []
    source = DdgSource(client_factory=fake, sleep=slept.append)

    # WHEN candidates are asked for
    found = list(source.candidates("happy", "barack obama happy", 50))

    # THEN it backed off twice, growing, and returned each result's image URL and size
    assert len(slept) == 2 and slept[1] > slept[0] / 2
    assert fake.calls[-1]["max_results"] == 50
    assert [(c.url, c.width, c.height) for c in found] == [
        ("https://a.example/1.jpg", 800, 600),
        ("https://b.example/2.png", 640, 480),
    ]


def test_ddg_with_no_results_gives_no_candidates():
    # GIVEN ddgs reporting that nothing was found
    from ddgs.exceptions import DDGSException

    source = DdgSource(client_factory=FakeDDGS([DDGSException("No results found.")]), sleep=lambda s: None)

    # WHEN candidates are asked for
    # THEN there are none, and no error
    assert list(source.candidates("x", "an unlikely query", 10)) == []


def test_ddg_that_keeps_rate_limiting_fails_as_unavailable():
    # GIVEN ddgs rate-limiting every attempt
    from ddgs.exceptions import RatelimitException

    fake = FakeDDGS([RatelimitException("202 Ratelimit") for _ in range(3)])
    source = DdgSource(client_factory=fake, sleep=lambda s: None, max_attempts=3)

    # WHEN candidates are asked for
    # THEN the search fails as unavailable (transient)
    with pytest.raises(SearchUnavailable):
        list(source.candidates("x", "q", 10))


def test_ddg_failing_otherwise_is_a_search_error():
    # GIVEN ddgs failing for another reason
    from ddgs.exceptions import DDGSException

    source = DdgSource(client_factory=FakeDDGS([DDGSException("engine broken")]), sleep=lambda s: None)

    # WHEN candidates are asked for
    # THEN it is a search error naming the cause
    with pytest.raises(SearchError, match="engine broken"):
        list(source.candidates("x", "q", 10))


def test_a_csv_url_list_with_a_header_gives_each_label_its_urls():
    # GIVEN a label,url CSV with a header, a comment and a blank line
    text = "label,url\n# exported from a spreadsheet\nhappy,https://a.example/1.jpg\n\nsad,https://b.example/2.jpg\n"
    text += "happy,https://c.example/3.jpg\n"

    # WHEN it is read
    source = UrlListSource.from_text(text)

    # THEN the labels come in file order, and each label gets only its own URLs
    assert source.labels() == ["happy", "sad"]
    assert [c.url for c in source.candidates("happy", "", 10)] == [
        "https://a.example/1.jpg",
        "https://c.example/3.jpg",
    ]


def test_a_json_lines_url_list_is_read_too():
    # GIVEN JSON lines of {"label", "url"}
    text = '{"label": "cat", "url": "https://a.example/cat.jpg"}\n{"label": "dog", "url": "https://a.example/d.jpg"}\n'

    # WHEN it is read
    source = UrlListSource.from_text(text)

    # THEN each line is a row
    assert source.rows == [("cat", "https://a.example/cat.jpg"), ("dog", "https://a.example/d.jpg")]


def test_a_url_list_line_without_a_url_names_the_line():
    # GIVEN a CSV whose second line lacks the URL
    # WHEN it is read
    # THEN the error names that line
    with pytest.raises(ValueError, match="line 2"):
        UrlListSource.from_text("cat,https://a.example/1.jpg\ndog\n")


def test_a_url_list_is_read_from_s3(s3):
    # GIVEN a URL list uploaded to S3
    s3.put_object(Bucket="imgclf-test-data", Key="lists/pets.csv", Body=b"cat,https://a.example/1.jpg\n")

    # WHEN the urls source is made from its URI, as the Lambda does
    source = make_source(
        "urls", {"uri": "s3://imgclf-test-data/lists/pets.csv"}, settings=Settings(), s3=s3, allow_local=False
    )

    # THEN its rows are the file's
    assert source.rows == [("cat", "https://a.example/1.jpg")]


def test_local_files_are_refused_where_only_s3_is_allowed(tmp_path):
    # GIVEN a local URL list and folder
    (tmp_path / "urls.csv").write_text("cat,https://a.example/1.jpg\n")

    # WHEN the Lambda (allow_local=False) is asked to read them
    # THEN both are refused
    with pytest.raises(ValueError, match="s3://"):
        make_source("urls", {"path": str(tmp_path / "urls.csv")}, settings=Settings(), allow_local=False)
    with pytest.raises(ValueError, match="command line"):
        make_source("folder", {"path": str(tmp_path)}, settings=Settings(), allow_local=False)


def test_a_folder_gives_its_sub_folders_as_labels_and_their_files_as_candidates(tmp_path):
    # GIVEN a folder per label, with a hidden file to ignore
    for label, names in {"daisy": ["b.jpg", "a.jpg", ".DS_Store"], "rose": ["r.png"]}.items():
        (tmp_path / label).mkdir()
        for name in names:
            (tmp_path / label / name).write_bytes(b"x" * 10)

    # WHEN the folder source lists them
    source = FolderSource(tmp_path)
    found = list(source.candidates("daisy", "", 10))

    # THEN the labels are the folders and the candidates the files, sorted, read from disk
    assert source.labels() == ["daisy", "rose"]
    assert [Path(c.url).name for c in found] == ["a.jpg", "b.jpg"]
    assert {(c.origin, c.size) for c in found} == {("file", 10)}


def test_an_s3_prefix_gives_its_folders_as_labels_and_their_objects_as_candidates(s3):
    # GIVEN objects under imports/pets/{label}/
    for key in ["imports/pets/cat/1.jpg", "imports/pets/cat/2.jpg", "imports/pets/dog/1.jpg"]:
        s3.put_object(Bucket="imgclf-test-data", Key=key, Body=b"bytes")

    # WHEN the s3 source lists them
    source = S3PrefixSource.from_uri(s3, "s3://imgclf-test-data/imports/pets")
    found = list(source.candidates("cat", "", 10))

    # THEN the labels are the folders, and the candidates the objects, read from S3
    assert source.labels() == ["cat", "dog"]
    assert [c.url for c in found] == [
        "s3://imgclf-test-data/imports/pets/cat/1.jpg",
        "s3://imgclf-test-data/imports/pets/cat/2.jpg",
    ]
    assert {c.origin for c in found} == {"s3"}


@responses.activate
def test_the_bing_source_reads_its_key_from_the_ssm_secure_string(mocked_aws):
    # GIVEN the key stored as an SSM SecureString, named by SEARCH_KEY_PARAMETER
    forget_cached_keys()
    boto3.client("ssm", region_name="us-east-1").put_parameter(
        Name="/imgclf/bing-search-key", Value="from-ssm", Type="SecureString"
    )
    responses.get(SEARCH_URL, json=recorded("bing_v7_images_search"))
    settings = Settings(search_key_parameter="/imgclf/bing-search-key", bing_endpoint=ENDPOINT)

    # WHEN the bing source searches
    list(make_source("bing", {}, settings=settings).candidates("bear", "bear", 1))

    # THEN the request carried the decrypted key
    search_calls = [c for c in responses.calls if c.request.url.startswith(SEARCH_URL)]
    assert search_calls[0].request.headers["Ocp-Apim-Subscription-Key"] == "from-ssm"
