"""Collecting labels: candidates in; validated, de-duplicated, normalised JPEGs and manifest records out.

LabelCollection does one label (what one Lambda invocation does); collect() runs several side by side on
one worker pool (what the CLI does). Candidates are processed on a bounded thread pool; decoding holds one
of a few decode slots, so memory is bounded by the CPU-bound decodes, not by the downloads in flight. An
image is uploaded only after it was fetched whole and decoded fully in memory, and it enters the manifest
only after its upload, so nothing partial is ever visible. Every rejected candidate is reported.

Near-duplicates (imgclf.neardup: the same picture resized, recompressed or mirrored) are found by perceptual
hash. One near an image of another label is rejected as ambiguous before it is uploaded, and both are marked;
one near an image of its own label is kept, and the manifest commit records the group it joins.
"""

from __future__ import annotations

import hashlib
import json
import os
import threading
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ALL_COMPLETED, FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit
from urllib.request import url2pathname

from imgclf import aws, images, keys
from imgclf.clock import now_iso
from imgclf.datasets import new_collection_run
from imgclf.errors import ImageRejected, ImgclfError
from imgclf.log import get_logger
from imgclf.manifest import ImageRecord
from imgclf.neardup import PHash, phash_hex
from imgclf.settings import Settings

from .download import Downloader, DownloadPolicy
from .errors import DownloadError
from .manifest import DatasetManifest, ManifestIndex, TriedLog
from .sources import Candidate, Source, make_source

logger = get_logger("collector")


@dataclass(frozen=True)
class CollectConfig:
    """How images are validated and stored, and how much work runs at once."""

    max_pixels: int = 40_000_000
    min_side: int = 64
    max_side: int = 1024
    jpeg_quality: int = 90
    max_bytes: int = 10 * 1024 * 1024
    workers: int = 32
    decode_workers: int = min(4, max(2, os.cpu_count() or 2))  # decodes are CPU-bound: more only adds memory
    label_concurrency: int = 4  # labels collected at once by collect(); the Lambda does one per invocation
    candidates_per_image: int = 3  # search results to consider per image still wanted
    # Commit to the manifest after this many new images or this many seconds, so a crash loses little.
    commit_every: int = 100
    commit_every_s: float = 20.0
    stop_margin_s: float = 165.0  # with a time budget: stop taking candidates when this much is left
    root: str = "datasets/"

    @classmethod
    def from_settings(cls, settings: Settings, **overrides) -> CollectConfig:
        retries = settings.download_retries
        # What an in-flight download may still take (every attempt, and the longest wait between them),
        # plus time to commit the manifest and write the report.
        policy = DownloadPolicy()
        worst_download = settings.download_deadline_s * (retries + 1) + policy.max_retry_after * retries
        values = {
            "max_pixels": settings.max_image_pixels,
            "min_side": settings.min_image_side,
            "max_side": settings.max_image_side,
            "jpeg_quality": settings.jpeg_quality,
            "max_bytes": settings.max_image_bytes,
            "workers": settings.collector_workers,
            "stop_margin_s": worst_download + 15,
            "root": settings.dataset_prefix,
        }
        values.update({k: v for k, v in overrides.items() if v is not None})
        return cls(**values)


def download_policy(settings: Settings) -> DownloadPolicy:
    """The download limits the settings ask for."""
    return DownloadPolicy(
        connect_timeout=min(5.0, settings.download_timeout_s),
        read_timeout=settings.download_timeout_s,
        deadline=settings.download_deadline_s,
        max_bytes=settings.max_image_bytes,
        retries=settings.download_retries,
        allow_private=settings.allow_private_addresses,
    )


@dataclass(frozen=True)
class Progress:
    """Where one label's collection stands, for a progress bar."""

    label: str
    accepted: int
    rejected: int
    wanted: int


@dataclass
class _Outcome:
    """What became of one candidate in a worker."""

    candidate: Candidate | None
    record: ImageRecord | None = None
    reason: str = ""
    message: str = ""
    transient: bool = False
    ambiguous: dict[str, set[str]] = field(default_factory=dict)  # by sha256: the labels to mark it ambiguous for
    near: bool = False  # ambiguous as a near-duplicate, not an exact copy


class _Claims:
    """Thread-safe de-duplication by content hash and perceptual hash, and the quota of images still wanted.

    The perceptual hashes are the last manifest index's (what was committed, this label's images included): it
    is never changed once built, so workers search it without the lock while a commit swaps in the next one.
    """

    def __init__(self, index: ManifestIndex, label: str, wanted: int):
        self._labels = defaultdict(set, {sha: set(labels) for sha, labels in index.labels_by_sha.items()})
        self._index = index
        self._label = label
        self._wanted = wanted
        self._taken = 0
        self._lock = threading.Lock()

    @property
    def enough(self) -> bool:
        with self._lock:
            return self._taken >= self._wanted

    def claim(self, sha: str, phash: PHash | None = None) -> _Outcome | None:
        """Reserve a new image for this label, or say why it is not wanted (candidate filled in later)."""
        with self._lock:
            index = self._index
        near = index.near_duplicates(phash)
        near_labels = index.near_labels(near)
        with self._lock:
            labels = self._labels.get(sha, set())
            if self._label in labels:
                return _Outcome(None, reason="duplicate", message=f"already collected for {self._label!r}")
            if labels:
                return _Outcome(
                    None,
                    reason="ambiguous",
                    message=f"also found for {sorted(labels)}",
                    ambiguous={sha: labels | {self._label}},
                )
            if near_labels - {self._label}:
                labels = near_labels | {self._label}
                return _Outcome(
                    None,
                    reason="ambiguous",
                    message=f"a near-duplicate of {', '.join(s[:12] for s in near)} found for "
                            f"{sorted(near_labels - {self._label})}",
                    ambiguous={other: labels for other in near},
                    near=True,
                )
            if self._taken >= self._wanted:
                return _Outcome(None, reason="surplus", message="enough images already")
            self._labels[sha].add(self._label)
            self._taken += 1
            return None

    def release(self, sha: str) -> None:
        """Give back a claim whose image could not be stored."""
        with self._lock:
            self._labels[sha].discard(self._label)
            self._taken -= 1

    def refresh(self, index: ManifestIndex) -> None:
        """Learn what concurrent collections of other labels committed."""
        with self._lock:
            for sha, labels in index.labels_by_sha.items():
                self._labels[sha] |= labels
            self._index = index


class WorkerPool:
    """The threads that fetch and process candidates, and the slots that bound concurrent decodes.

    collect() shares one pool between the labels it runs at once, so `workers` bounds the downloads of
    the whole run, and a label that ends does not leave threads idle while the next one starts.
    """

    def __init__(self, workers: int, decode_workers: int):
        self.executor = ThreadPoolExecutor(workers, thread_name_prefix="collect")
        self.decode_slots = threading.BoundedSemaphore(decode_workers)

    def __enter__(self) -> WorkerPool:
        return self

    def __exit__(self, *exc_info) -> None:
        self.executor.shutdown(wait=True)


class LabelCollection:
    """One label's collection run: holds its collaborators and its running tally."""

    def __init__(
        self,
        *,
        s3,
        bucket: str,
        dataset: str,
        label: str,
        query: str,
        count: int,
        source: Source,
        downloader: Downloader,
        config: CollectConfig,
        run: str,
        progress: Callable[[Progress], None] | None = None,
        time_left: Callable[[], float] | None = None,
        pool: WorkerPool | None = None,
    ):
        self.s3, self.bucket, self.source, self.downloader = s3, bucket, source, downloader
        self.pool = pool
        self.dataset = keys.check_name("dataset", dataset)
        self.label = keys.check_name("label", label)
        self.query = query.replace("{label}", self.label)
        self.count, self.config, self.run = count, config, run
        self.progress, self.time_left = progress, time_left
        self.manifest = DatasetManifest(s3, bucket, self.dataset, root=config.root)
        self.tried_log = TriedLog(s3, bucket, self.dataset, self.label, root=config.root)
        self.accepted: list[ImageRecord] = []
        self.rejections: list[dict] = []
        self.skipped = 0
        self.near_ambiguous = 0  # candidates left out as near-duplicates of another label's image
        self._pending_images: list[ImageRecord] = []
        self._pending_ambiguous: dict[str, set[str]] = defaultdict(set)
        self._pending_tried: list[dict] = []
        self._last_commit = time.monotonic()

    def run_collection(self) -> dict:
        """Collect until the label has `count` images, the source runs dry or the time budget ends."""
        started_at = now_iso()
        index = self.manifest.load()
        had = sum(1 for labels in index.labels_by_sha.values() if self.label in labels)
        wanted = max(0, self.count - had)
        tried = self.tried_log.load() | index.urls_by_label.get(self.label, set())
        claims = _Claims(index, self.label, wanted)
        stopped, error = "enough", None
        try:
            if wanted:
                limit = wanted * self.config.candidates_per_image + len(tried)
                stopped = self._work(
                    self.source.candidates(self.label, self.query, limit), tried, claims, wanted
                )
        except Exception as exc:
            stopped, error = "error", f"{type(exc).__name__}: {exc}"
            raise
        finally:
            self._commit(claims)
            summary = self._summary(had, wanted, stopped, error, started_at)
            self._write_report(summary)
        return summary

    def _work(self, candidates: Iterator[Candidate], tried: set[str], claims: _Claims, wanted: int) -> str:
        """Process candidates on the shared pool, or on a pool of this label's own."""
        if self.pool is not None:
            return self._feed(self.pool, candidates, tried, claims, wanted)
        with WorkerPool(self.config.workers, self.config.decode_workers) as pool:
            return self._feed(pool, candidates, tried, claims, wanted)

    def _feed(
        self, pool: WorkerPool, candidates: Iterator[Candidate], tried: set[str], claims: _Claims, wanted: int
    ) -> str:
        """Submit candidates, keeping a bounded number in flight; returns why it stopped."""
        seen = set(tried)
        in_flight: set[Future] = set()
        max_in_flight = self.config.workers * 2
        stopped = "exhausted"
        try:
            while True:
                if self.time_left is not None and self.time_left() < self.config.stop_margin_s:
                    stopped = "time"
                    break
                if claims.enough or len(in_flight) >= max_in_flight:
                    if not in_flight:
                        stopped = "enough"
                        break
                    in_flight = self._settle(in_flight, claims, wanted, FIRST_COMPLETED)
                    continue
                candidate = next(candidates, None)
                if candidate is None:
                    break
                if candidate.url in seen:
                    self.skipped += candidate.url in tried
                    continue
                seen.add(candidate.url)
                in_flight.add(pool.executor.submit(self._process, candidate, claims, pool.decode_slots))
        finally:
            # Whatever stopped the loop, what is in flight finishes and is recorded.
            self._settle(in_flight, claims, wanted, ALL_COMPLETED)
        return stopped

    def _settle(self, in_flight: set[Future], claims: _Claims, wanted: int, return_when: str) -> set[Future]:
        """Wait for some (or all) in-flight candidates and record their outcomes."""
        done, still = wait(in_flight, return_when=return_when)
        for future in done:
            self._record(future.result())
        overdue = time.monotonic() - self._last_commit >= self.config.commit_every_s
        if len(self._pending_images) >= self.config.commit_every or (overdue and self._pending_images):
            self._commit(claims)
        if self.progress:
            self.progress(Progress(self.label, len(self.accepted), len(self.rejections), wanted))
        return still

    def _process(self, candidate: Candidate, claims: _Claims, decode_slots: threading.Semaphore) -> _Outcome:
        """Fetch, validate, de-duplicate, normalise and upload one candidate (runs on a worker thread)."""
        if claims.enough:  # the label filled up while this candidate waited in the queue: skip the download
            return _Outcome(candidate, reason="surplus")
        try:
            data = self._fetch(candidate)
            with decode_slots:
                img = images.decode(data, max_pixels=self.config.max_pixels, min_side=self.config.min_side)
                sha = images.content_hash(img)
                phash = phash_hex(img)
                verdict = claims.claim(sha, phash)
                if verdict is not None:
                    verdict.candidate = candidate
                    return verdict
                try:
                    jpeg = images.to_jpeg(
                        img, max_side=self.config.max_side, quality=self.config.jpeg_quality
                    )
                except (OSError, ValueError) as exc:
                    claims.release(sha)
                    raise ImageRejected("corrupt", f"cannot encode: {exc}") from exc
            original = {
                "format": images.sniff(data),
                "width": img.width,
                "height": img.height,
                "bytes": len(data),
            }
            del img, data
            try:
                return _Outcome(candidate, record=self._store(candidate, sha, jpeg, original, phash))
            except ImgclfError as exc:  # the upload failed (aws.translated's error)
                claims.release(sha)
                return _Outcome(candidate, reason="upload_failed", message=str(exc), transient=True)
        except DownloadError as exc:
            return _Outcome(candidate, reason=exc.reason, message=exc.message, transient=exc.transient)
        except ImageRejected as exc:
            return _Outcome(candidate, reason=exc.reason, message=exc.message)
        except (ImgclfError, OSError) as exc:  # reading a source object (aws.translated's error) or file
            return _Outcome(candidate, reason="read_failed", message=str(exc), transient=True)
        except Exception as exc:  # a bug must cost one candidate, not the whole run
            logger.exception("unexpected failure processing a candidate", extra={"url": candidate.url})
            return _Outcome(candidate, reason="internal_error", message=repr(exc), transient=True)

    def _fetch(self, candidate: Candidate) -> bytes:
        """The candidate's bytes, from wherever its source said they are."""
        cap = self.config.max_bytes
        if candidate.size is not None and candidate.size > cap:
            raise DownloadError("too_large", f"{candidate.size} bytes is over the {cap} byte limit")
        if candidate.origin == "http":
            fetched = self.downloader.get(candidate.url, stop_if=_not_an_image)
            return fetched.data
        if candidate.origin == "file":
            return _read_file(Path(url2pathname(urlsplit(candidate.url).path)), cap)
        if candidate.origin == "s3":
            bucket, key = keys.parse_s3_uri(candidate.url)
            with aws.translated(f"read {candidate.url}"):
                data = self.s3.get_object(Bucket=bucket, Key=key)["Body"].read(cap + 1)
            if len(data) > cap:
                raise DownloadError("too_large", f"the object is over the {cap} byte limit")
            return data
        raise ValueError(f"unknown candidate origin {candidate.origin!r}")

    def _store(self, candidate: Candidate, sha: str, jpeg: bytes, original: dict, phash: PHash) -> ImageRecord:
        """Upload the normalised JPEG and return its manifest record (the commit decides its near-duplicate
        group)."""
        key = keys.dataset_image_key(self.dataset, self.label, sha, self.config.root)
        with aws.translated(f"upload s3://{self.bucket}/{key}"):
            self.s3.put_object(
                Bucket=self.bucket,
                Key=key,
                Body=jpeg,
                ContentType="image/jpeg",
                Metadata={"sha256": sha, "run": self.run, "source": self.source.name},
            )
        width, height = images.fitted_size(original["width"], original["height"], self.config.max_side)
        return ImageRecord(
            sha256=sha,
            label=self.label,
            key=key,
            source=self.source.name,
            query=self.query,
            url=candidate.url,
            width=width,
            height=height,
            bytes=len(jpeg),
            format="jpeg",
            original=original,
            collected_at=now_iso(),
            run=self.run,
            phash=phash.hash,
            phash_mirror=phash.mirror,
        )

    def _record(self, outcome: _Outcome) -> None:
        """Tally one outcome on the main thread."""
        if outcome.record is not None:
            self._pending_images.append(outcome.record)
            self.accepted.append(outcome.record)
            return
        if outcome.reason == "surplus":
            return
        for sha, labels in outcome.ambiguous.items():
            self._pending_ambiguous[sha] |= labels
        self.near_ambiguous += outcome.near
        self._reject(outcome.candidate.url, outcome.reason, outcome.message, outcome.transient)

    def _reject(self, url: str, reason: str, message: str, transient: bool) -> None:
        self.rejections.append({"url": url, "reason": reason, "message": message, "transient": transient})
        if not transient:  # a transient failure says nothing about the URL: the next run tries it again
            self._pending_tried.append({"url": url, "reason": reason, "run": self.run, "at": now_iso()})

    def _commit(self, claims: _Claims) -> None:
        """Append the images stored since the last commit to the manifest, failed URLs to the tried log."""
        self._last_commit = time.monotonic()
        if self._pending_images or self._pending_ambiguous:
            result = self.manifest.commit(self._pending_images, self._pending_ambiguous, run=self.run)
            lost = {id(record) for record in result.conflicts + result.duplicates + result.near_conflicts}
            final = {record.sha256: record for record in result.appended}  # with the group the commit decided
            self.accepted = [final.get(record.sha256, record) for record in self.accepted if id(record) not in lost]
            for record in result.conflicts:
                # Another label stored the same picture meanwhile: ours is dropped, both marked ambiguous.
                self._delete_quietly(record.key)
                self._reject(
                    record.url, "ambiguous", "another label stored the same image meanwhile", False
                )
            for record in result.near_conflicts:
                # Another label stored a near-duplicate meanwhile: ours is dropped, the others marked ambiguous.
                self._delete_quietly(record.key)
                self.near_ambiguous += 1
                self._reject(
                    record.url, "ambiguous", "another label stored a near-duplicate meanwhile", False
                )
            for record in result.duplicates:
                self._reject(
                    record.url, "duplicate", "a concurrent run of this label stored it first", False
                )
            claims.refresh(result.index)
            self._pending_images, self._pending_ambiguous = [], defaultdict(set)
        if self._pending_tried:
            self.tried_log.add(self._pending_tried)
            self._pending_tried = []

    def _delete_quietly(self, key: str) -> None:
        try:
            with aws.translated(f"delete s3://{self.bucket}/{key}"):
                self.s3.delete_object(Bucket=self.bucket, Key=key)
        except ImgclfError as exc:
            # Harmless when it fails: the object is in no manifest record, so training never reads it.
            logger.warning(
                "could not delete an image left out as ambiguous", extra={"key": key, "error": str(exc)}
            )

    def _summary(self, had: int, wanted: int, stopped: str, error: str | None, started_at: str) -> dict:
        reasons = Counter(r["reason"] for r in self.rejections)
        return {
            "dataset": self.dataset,
            "label": self.label,
            "run": self.run,
            "source": self.source.name,
            "query": self.query,
            "requested": self.count,
            "had": had,
            "wanted": wanted,
            "accepted": len(self.accepted),
            "rejected": sum(reasons.values()),
            "rejected_by_reason": dict(sorted(reasons.items())),
            "skipped_already_tried": self.skipped,
            "near_duplicates": {
                "grouped": sum(1 for record in self.accepted if record.near_duplicate_of),
                "ambiguous": self.near_ambiguous,
            },
            "images": had + len(self.accepted),
            "complete": had + len(self.accepted) >= self.count,
            "stopped": stopped,
            "error": error,
            "started_at": started_at,
            "finished_at": now_iso(),
            "manifest_key": self.manifest.key,
            "report_key": report_key(self.dataset, self.run, self.label, self.config.root),
        }

    def _write_report(self, summary: dict) -> None:
        report = {
            **summary,
            "accepted_images": [
                {"url": r.url, "key": r.key, "sha256": r.sha256}
                | ({"near_duplicate_of": r.near_duplicate_of} if r.near_duplicate_of else {})
                for r in self.accepted
            ],
            "rejections": self.rejections,
        }
        body = _json_bytes(report)
        self.s3.put_object(
            Bucket=self.bucket, Key=summary["report_key"], Body=body, ContentType="application/json"
        )


def collect_label(**kwargs) -> dict:
    """Collect images for one label (see LabelCollection for the arguments); returns the run's summary."""
    return LabelCollection(**kwargs).run_collection()


def collect(
    dataset: str,
    labels: Sequence[str] | None,
    query: str = "{label}",
    per_label: int = 150,
    source: str | Source = "ddg",
    *,
    source_options: dict | None = None,
    settings: Settings | None = None,
    s3=None,
    bucket: str | None = None,
    run: str | None = None,
    workers: int | None = None,
    max_side: int | None = None,
    downloader: Downloader | None = None,
    progress: Callable[[Progress], None] | None = None,
) -> dict:
    """Collect `per_label` images per label into s3://bucket/datasets/{dataset}/ (the CLI's entry)."""
    from imgclf import aws
    from imgclf.settings import get_settings

    settings = settings or get_settings()
    bucket = bucket or settings.data_bucket
    if not bucket:
        raise ValueError("no bucket: set DATA_BUCKET or pass bucket")
    s3 = s3 or aws.client("s3")
    if isinstance(source, str):
        source = make_source(source, source_options, settings=settings, s3=s3, allow_local=True)
    labels = list(labels or [])
    if not labels:
        if not hasattr(source, "labels"):
            raise ValueError(f"the {source.name} source needs --labels")
        labels = source.labels()
    config = CollectConfig.from_settings(settings, workers=workers, max_side=max_side)
    run = run or new_collection_run()
    own_downloader = downloader is None
    downloader = downloader or Downloader(download_policy(settings), max_idle_per_host=config.workers)
    common = {
        "s3": s3,
        "bucket": bucket,
        "dataset": dataset,
        "query": query,
        "count": per_label,
        "source": source,
        "downloader": downloader,
        "config": config,
        "run": run,
        "progress": progress,
    }
    try:
        # Labels run side by side on one worker pool, as the state machine's Map runs them side by side.
        with (
            WorkerPool(config.workers, config.decode_workers) as pool,
            ThreadPoolExecutor(
                max(1, min(config.label_concurrency, len(labels))), thread_name_prefix="label"
            ) as label_threads,
        ):
            futures = [
                label_threads.submit(collect_label, label=label, pool=pool, **common) for label in labels
            ]
            wait(futures)
        summaries = [future.result() for future in futures]  # the first label that failed raises here
    finally:
        if own_downloader:
            downloader.close()
    return {
        "dataset": dataset,
        "run": run,
        "accepted": sum(s["accepted"] for s in summaries),
        "rejected": sum(s["rejected"] for s in summaries),
        "labels": summaries,
        "manifest_key": keys.manifest_key(dataset, config.root),
    }


def report_key(dataset: str, run: str, label: str, root: str = "datasets/") -> str:
    """The report of one label's run: reports/{run}.{label}.json (a hash stands in for a very long label)."""
    name = f"{run}.{label}"
    if len(name) > 100:
        name = f"{run}.{hashlib.sha256(label.encode()).hexdigest()[:12]}"
    return keys.report_key(dataset, name, root)


def _not_an_image(head: bytes) -> bool:
    """Stop a download early when its first bytes are no accepted image format (an HTML page, an SVG...)."""
    return images.sniff(head) is None


def _read_file(path: Path, cap: int) -> bytes:
    size = path.stat().st_size
    if size > cap:
        raise DownloadError("too_large", f"{size} bytes is over the {cap} byte limit")
    return path.read_bytes()


def _json_bytes(value: dict) -> bytes:
    return json.dumps(value, ensure_ascii=False, indent=1).encode()
