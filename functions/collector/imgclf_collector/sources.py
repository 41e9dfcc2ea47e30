"""Where candidate images come from: image search services, URL lists, and existing folders or S3 prefixes.

Every source answers the same question, "candidate images for this label and query, at most `limit`", and
yields them lazily, so the collector stops asking once it has enough images. Candidates from searches and
URL lists are fetched over HTTP through the SSRF guard; those from a folder or an S3 prefix are read from
the file or the object. The origin is set here, by the source, never taken from the data, so a URL list
cannot make the collector read local files.
"""

from __future__ import annotations

import csv
import io
import json
import time
import unicodedata
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import requests

from imgclf import backoff
from imgclf.errors import ConfigError
from imgclf.keys import parse_s3_uri, s3_uri
from imgclf.settings import Settings

from .errors import SearchAuthError, SearchError, SearchUnavailable
from .search_key import load_search_key

SOURCES = ("bing", "ddg", "urls", "folder", "s3")
RETIREMENT_NOTE = (
    "Microsoft retired the public Bing Search APIs on 2025-08-11; BING_ENDPOINT must name a service that "
    "implements the Bing Image Search v7 contract, or collect with --source ddg, urls, folder or s3."
)


@dataclass(frozen=True)
class Candidate:
    """One image to try: where its bytes are and what the source said about it."""

    url: str
    origin: str = "http"  # "http", "file" or "s3": how the bytes are read
    title: str = ""
    page_url: str = ""
    width: int | None = None
    height: int | None = None
    size: int | None = None  # bytes, when the source knows them (files, S3 objects)


class Source(Protocol):
    """Candidate images for a label."""

    name: str

    def candidates(self, label: str, query: str, limit: int) -> Iterator[Candidate]: ...


class BingSource:
    """The Bing Image Search v7 REST contract: GET {endpoint}/v7.0/images/search, paged by offset."""

    name = "bing"
    page_size = 150  # the most the v7 API returns per request

    def __init__(
        self,
        endpoint: str,
        key: Callable[[], str],
        *,
        session: requests.Session | None = None,
        safe_search: str = "Moderate",
        market: str = "",
        max_attempts: int = 5,
        backoff_base: float = 1.0,
        backoff_cap: float = 30.0,
        max_retry_after: float = 60.0,
        timeout: tuple[float, float] = (5.0, 20.0),
        sleep: Callable[[float], None] = time.sleep,
    ):
        self.search_url = _search_url(endpoint)
        self._key = key
        self._session = session or requests.Session()
        self._params = {"safeSearch": safe_search, **({"mkt": market} if market else {})}
        self._max_attempts = max_attempts
        self._backoff = (backoff_base, backoff_cap)
        self._max_retry_after = max_retry_after
        self._timeout = timeout
        self._sleep = sleep

    def candidates(self, label: str, query: str, limit: int) -> Iterator[Candidate]:
        """Page through the results until `limit` candidates, the last page or the estimated total."""
        offset = yielded = 0
        while yielded < limit:
            page = self._page(query, offset, min(self.page_size, limit - yielded))
            items = page.get("value") or []
            for item in items:
                if item.get("contentUrl") and yielded < limit:
                    yielded += 1
                    yield _bing_candidate(item)
            if not items:
                return
            next_offset = page.get("nextOffset")
            offset = (
                next_offset if isinstance(next_offset, int) and next_offset > offset else offset + len(items)
            )
            total = page.get("totalEstimatedMatches")
            if isinstance(total, int) and offset >= total:
                return

    def _page(self, query: str, offset: int, count: int) -> dict:
        """One page of results; 401/403 fail at once, 429 and 5xx are retried honouring Retry-After."""
        params = {"q": query, "count": count, "offset": offset, **self._params}
        headers = {"Ocp-Apim-Subscription-Key": self._key(), "Accept": "application/json"}
        problem = ""
        for attempt in range(self._max_attempts):
            try:
                response = self._session.get(
                    self.search_url, params=params, headers=headers, timeout=self._timeout
                )
            except requests.RequestException as exc:
                problem = f"{type(exc).__name__}: {exc}"
                self._sleep(backoff.delay(attempt, base=self._backoff[0], cap=self._backoff[1]))
                continue
            status = response.status_code
            if status == 200:
                return _json_object(response, self.search_url)
            if status in (401, 403):
                raise SearchAuthError(
                    f"the image search API at {self.search_url} refused the key (HTTP {status}: "
                    f"{_error_message(response)}). Check the key stored under SEARCH_KEY_PARAMETER. "
                    + RETIREMENT_NOTE
                )
            if status == 429 or status >= 500:
                problem = f"HTTP {status}: {_error_message(response)}"
                asked = backoff.retry_after(response.headers.get("Retry-After"))
                wait = backoff.delay(attempt, base=self._backoff[0], cap=self._backoff[1])
                self._sleep(min(asked, self._max_retry_after) if asked is not None else wait)
                continue
            raise SearchError(f"the image search API answered HTTP {status}: {_error_message(response)}")
        raise SearchUnavailable(f"the image search API failed {self._max_attempts} times; last: {problem}")


class DdgSource:
    """DuckDuckGo image search through the ddgs package; its rate limits are waited out with backoff."""

    name = "ddg"

    def __init__(
        self,
        *,
        region: str = "us-en",
        safesearch: str = "moderate",
        backend: str = "duckduckgo",
        timeout: int = 10,
        max_attempts: int = 4,
        backoff_base: float = 2.0,
        backoff_cap: float = 30.0,
        sleep: Callable[[float], None] = time.sleep,
        client_factory: Callable[[], Any] | None = None,
    ):
        self._options = {"region": region, "safesearch": safesearch, "backend": backend}
        self._timeout = timeout
        self._max_attempts = max_attempts
        self._backoff = (backoff_base, backoff_cap)
        self._sleep = sleep
        self._client_factory = client_factory or self._default_client

    def candidates(self, label: str, query: str, limit: int) -> Iterator[Candidate]:
        for item in self._search(query, limit)[:limit]:
            if item.get("image"):
                yield Candidate(
                    url=item["image"],
                    title=str(item.get("title") or ""),
                    page_url=str(item.get("url") or ""),
                    width=_int(item.get("width")),
                    height=_int(item.get("height")),
                )

    def _search(self, query: str, limit: int) -> list[dict]:
        # Imported here: only collections that use this source pay for loading it.
        from ddgs.exceptions import DDGSException, RatelimitException, TimeoutException

        problem: Exception | None = None
        for attempt in range(self._max_attempts):
            try:
                return self._client_factory().images(query, max_results=limit, **self._options)
            except (RatelimitException, TimeoutException) as exc:
                problem = exc
                self._sleep(backoff.delay(attempt, base=self._backoff[0], cap=self._backoff[1]))
            except DDGSException as exc:
                if "no results" in str(exc).lower():
                    return []
                raise SearchError(f"DuckDuckGo image search failed: {exc}") from exc
        raise SearchUnavailable(f"DuckDuckGo kept refusing after {self._max_attempts} attempts: {problem}")

    def _default_client(self):
        from ddgs import DDGS

        return DDGS(timeout=self._timeout)


class UrlListSource:
    """A list of (label, url) rows from a CSV file or JSON lines, for people who already have URLs."""

    name = "urls"

    def __init__(self, rows: list[tuple[str, str]]):
        self.rows = rows

    @classmethod
    def from_text(cls, text: str) -> UrlListSource:
        """Parse `label,url` CSV (a header row is optional) or JSON lines of {"label": ..., "url": ...}."""
        lines = [line for line in text.splitlines() if line.strip() and not line.lstrip().startswith("#")]
        if lines and lines[0].lstrip().startswith("{"):
            return cls([_json_row(number, line) for number, line in enumerate(lines, 1)])
        rows = []
        for number, row in enumerate(csv.reader(io.StringIO("\n".join(lines))), 1):
            if len(row) < 2:
                raise ValueError(f"URL list line {number}: expected label,url, got {row!r}")
            if number == 1 and row[0].strip().lower() == "label" and row[1].strip().lower() == "url":
                continue
            rows.append((_nfc(row[0]), row[1].strip()))
        return cls(rows)

    @classmethod
    def load(cls, location: str, *, s3=None, allow_local: bool = True) -> UrlListSource:
        """Read the list from an s3:// URI or, where allowed, a local path."""
        if location.startswith("s3://"):
            bucket, key = parse_s3_uri(location)
            return cls.from_text(s3.get_object(Bucket=bucket, Key=key)["Body"].read().decode("utf-8-sig"))
        if not allow_local:
            raise ValueError(f"the URL list must be an s3:// URI here, not {location!r}")
        return cls.from_text(Path(location).read_text(encoding="utf-8-sig"))

    def labels(self) -> list[str]:
        return list(dict.fromkeys(label for label, _ in self.rows))

    def candidates(self, label: str, query: str, limit: int) -> Iterator[Candidate]:
        matching = (url for row_label, url in self.rows if row_label == label)
        for _, url in zip(range(limit), matching, strict=False):
            yield Candidate(url=url)


class FolderSource:
    """A local folder with one sub-folder per label, e.g. a dataset downloaded earlier."""

    name = "folder"

    def __init__(self, root: str | Path):
        self.root = Path(root)
        if not self.root.is_dir():
            raise ValueError(f"no such folder: {self.root}")

    def labels(self) -> list[str]:
        return sorted(p.name for p in self.root.iterdir() if p.is_dir() and not p.name.startswith("."))

    def candidates(self, label: str, query: str, limit: int) -> Iterator[Candidate]:
        folder = self.root / label
        if not folder.is_dir():
            return
        files = sorted(p for p in folder.iterdir() if p.is_file() and not p.name.startswith("."))
        for path in files[:limit]:
            yield Candidate(
                url=path.resolve().as_uri(), origin="file", title=path.name, size=path.stat().st_size
            )


class S3PrefixSource:
    """An S3 prefix with one "folder" per label, e.g. s3://bucket/imports/pets/{label}/..."""

    name = "s3"

    def __init__(self, s3, bucket: str, prefix: str):
        self._s3 = s3
        self.bucket = bucket
        self.prefix = prefix if not prefix or prefix.endswith("/") else prefix + "/"

    @classmethod
    def from_uri(cls, s3, uri: str) -> S3PrefixSource:
        if not uri.startswith("s3://"):
            raise ValueError(f"an S3 source needs an s3:// URI, not {uri!r}")
        bucket, _, prefix = uri[5:].partition("/")
        return cls(s3, bucket, prefix)

    def labels(self) -> list[str]:
        pages = self._s3.get_paginator("list_objects_v2").paginate(
            Bucket=self.bucket, Prefix=self.prefix, Delimiter="/"
        )
        return [
            p["Prefix"][len(self.prefix) :].rstrip("/")
            for page in pages
            for p in page.get("CommonPrefixes", [])
        ]

    def candidates(self, label: str, query: str, limit: int) -> Iterator[Candidate]:
        pages = self._s3.get_paginator("list_objects_v2").paginate(
            Bucket=self.bucket, Prefix=f"{self.prefix}{label}/"
        )
        objects = (obj for page in pages for obj in page.get("Contents", []) if not obj["Key"].endswith("/"))
        for _, obj in zip(range(limit), objects, strict=False):
            yield Candidate(
                url=s3_uri(self.bucket, obj["Key"]),
                origin="s3",
                title=obj["Key"].rsplit("/", 1)[-1],
                size=obj["Size"],
            )


def make_source(
    name: str, options: dict | None, *, settings: Settings, s3=None, allow_local: bool = True
) -> Source:
    """Build a source from its name and options; allow_local=False (Lambda) refuses local paths."""
    options = options or {}
    if name == "bing":
        key_name = settings.search_key_parameter
        if not key_name:
            raise ConfigError(
                "SEARCH_KEY_PARAMETER is not set: name the SSM parameter or secret holding the key"
            )
        return BingSource(
            settings.bing_endpoint,
            lambda: load_search_key(key_name),
            safe_search=options.get("safe_search", "Moderate"),
            market=options.get("market", ""),
        )
    if name == "ddg":
        return DdgSource(
            region=options.get("region", "us-en"),
            safesearch=options.get("safesearch", "moderate"),
            backend=options.get("backend", "duckduckgo"),
        )
    if name == "urls":
        return UrlListSource.load(_location(options, name), s3=s3, allow_local=allow_local)
    if name == "folder":
        if not allow_local:
            raise ValueError(
                "the folder source reads local files and is only available from the command line"
            )
        return FolderSource(_location(options, name))
    if name == "s3":
        return S3PrefixSource.from_uri(s3, _location(options, name))
    raise ValueError(f"unknown source {name!r}: choose one of {', '.join(SOURCES)}")


def _location(options: dict, name: str) -> str:
    location = options.get("uri") or options.get("path")
    if not location:
        raise ValueError(f"the {name} source needs source_options.uri (s3://...) or source_options.path")
    return str(location)


def _search_url(endpoint: str) -> str:
    """The images/search URL of a v7 endpoint given with or without its path."""
    base = endpoint.rstrip("/")
    for suffix in ("/images/search", "/v7.0"):
        base = base.removesuffix(suffix)
    return f"{base}/v7.0/images/search"


def _bing_candidate(item: dict) -> Candidate:
    return Candidate(
        url=item["contentUrl"],
        title=str(item.get("name") or ""),
        page_url=str(item.get("hostPageUrl") or ""),
        width=_int(item.get("width")),
        height=_int(item.get("height")),
    )


def _json_object(response: requests.Response, url: str) -> dict:
    try:
        page = response.json()
    except ValueError as exc:
        raise SearchError(f"{url} answered something that is not JSON") from exc
    if not isinstance(page, dict):
        raise SearchError(f"{url} answered JSON that is not an object")
    return page


def _error_message(response: requests.Response) -> str:
    """The message of a v7 ErrorResponse ({"errors": [...]}) or an API gateway error ({"error": {...}})."""
    try:
        body = response.json()
    except ValueError:
        return response.text[:200].strip() or response.reason or ""
    if isinstance(body, dict):
        errors = body.get("errors") or ([body["error"]] if isinstance(body.get("error"), dict) else [])
        messages = [" ".join(filter(None, (e.get("message"), e.get("moreDetails")))) for e in errors]
        if any(messages):
            return "; ".join(m for m in messages if m)
    return str(body)[:200]


def _json_row(number: int, line: str) -> tuple[str, str]:
    try:
        row = json.loads(line)
        return _nfc(row["label"]), str(row["url"]).strip()
    except (json.JSONDecodeError, KeyError, TypeError) as exc:
        raise ValueError(f'URL list line {number}: expected {{"label": ..., "url": ...}}: {exc}') from exc


def _nfc(label: str) -> str:
    return unicodedata.normalize("NFC", str(label).strip())


def _int(value: Any) -> int | None:
    try:
        return int(value)
    except (TypeError, ValueError):
        return None
