"""An upload a person labeled joins a dataset: the collector's checks, its de-duplication and a manifest record.

The review queue of uploads (imgclf.review) sends the upload's key, the label and who gave it. The image is read
from uploads/, decoded and validated as a collected candidate is, normalised to the dataset's JPEG, stored under
its label and committed to the manifest by the same conditional append, which decides against concurrent writers
whether it is new, a duplicate of an image the label has, or ambiguous (the same or a near-duplicate picture
under another label, which training then leaves out). Its record says where it came from: source "upload", the
upload's key, who labeled it and when.

"None of these" keeps the image as a negative example: stored under the dataset's .negatives/ folder (no label
can name it, and the training job skips hidden folders) and logged in .negatives/negatives.jsonl, not in the
manifest, so the dataset version and what training reads stay as they were until training learns to use them.
"""

from __future__ import annotations

from typing import Any

from imgclf import aws, images, keys
from imgclf.errors import ImageRejected, ImgclfError
from imgclf.jsonl import JsonLinesLog
from imgclf.log import get_logger
from imgclf.manifest import ImageRecord
from imgclf.neardup import phash_hex

from .manifest import DatasetManifest
from .pipeline import CollectConfig

logger = get_logger("collector")
ADDED, DUPLICATE, AMBIGUOUS, REJECTED = "added", "duplicate", "ambiguous", "rejected"
SOURCE = "upload"


def add_upload(s3, bucket: str, *, dataset: str, upload_key: str, label: str | None, by: str, at: str,
               config: CollectConfig, run: str = "review") -> dict[str, Any]:
    """Add one upload to a dataset under a label, or as a negative example when label is None.

    Returns {"status": added | duplicate | ambiguous | rejected, "dataset", "label", "sha256", "key", "message"};
    a rejected image (not decodable, too small...) is an answer, not an error.
    """
    dataset = keys.check_name("dataset", dataset)
    label = keys.check_name("label", label) if label is not None else None
    answer: dict[str, Any] = {"dataset": dataset, "label": label, "upload_key": upload_key}
    try:
        with aws.translated(f"read s3://{bucket}/{upload_key}"):
            data = s3.get_object(Bucket=bucket, Key=upload_key)["Body"].read(config.max_bytes + 1)
        if len(data) > config.max_bytes:
            raise ImageRejected("too_large", f"the upload is over the {config.max_bytes} byte limit")
        img = images.decode(data, max_pixels=config.max_pixels, min_side=config.min_side)
        sha, phash = images.content_hash(img), phash_hex(img)
        jpeg = images.to_jpeg(img, max_side=config.max_side, quality=config.jpeg_quality)
    except ImageRejected as exc:
        return {**answer, "status": REJECTED, "reason": exc.reason, "message": exc.message}
    original = {"format": images.sniff(data), "width": img.width, "height": img.height, "bytes": len(data)}
    width, height = images.fitted_size(img.width, img.height, config.max_side)
    record = ImageRecord(
        sha256=sha, label=label or "", key=None, source=SOURCE, url=keys.s3_uri(bucket, upload_key),
        width=width, height=height, bytes=len(jpeg), format="jpeg", original=original, collected_at=at, run=run,
        phash=phash.hash, phash_mirror=phash.mirror, upload_key=upload_key, labeled_by=by, labeled_at=at,
    )
    if label is None:
        return {**answer, **_add_negative(s3, bucket, dataset, record, jpeg, config.root)}
    return {**answer, **_add_labeled(s3, bucket, dataset, record, jpeg, config.root)}


def _add_labeled(s3, bucket: str, dataset: str, record: ImageRecord, jpeg: bytes, root: str) -> dict[str, Any]:
    """Store the image under its label and commit its record; the commit's verdict is the answer."""
    manifest = DatasetManifest(s3, bucket, dataset, root=root)
    index = manifest.load()
    known = index.labels_by_sha.get(record.sha256, set())
    key = keys.dataset_image_key(dataset, record.label, record.sha256, root)
    if record.label in known:
        # Nothing to store: the dataset has this picture under this label already.
        return {"status": DUPLICATE, "sha256": record.sha256, "key": key,
                "message": f"the dataset has this image under {record.label!r} already"}
    record = ImageRecord(**{**record.to_dict(), "key": key})
    _put(s3, bucket, key, jpeg, record)
    result = manifest.commit([record], {}, run=record.run or "review")
    if result.appended:
        group = result.appended[0].near_duplicate_of
        return {"status": ADDED, "sha256": record.sha256, "key": key,
                "message": "added" + (f" (near-duplicate group of {group[:12]})" if group else "")}
    if result.duplicates:
        return {"status": DUPLICATE, "sha256": record.sha256, "key": key,
                "message": "a concurrent writer added this image under the same label first"}
    _delete_quietly(s3, bucket, key)  # ambiguous: in no image record, so training would never read it anyway
    other = sorted(result.index.labels_by_sha.get(record.sha256, set()) - {record.label})
    what = f"the same image is in the dataset under {other}" if other else \
        "a near-duplicate of it is in the dataset under another label"
    return {"status": AMBIGUOUS, "sha256": record.sha256, "key": None,
            "message": f"{what}: both are marked ambiguous and training leaves them out; review them in the audit"}


def _add_negative(s3, bucket: str, dataset: str, record: ImageRecord, jpeg: bytes, root: str) -> dict[str, Any]:
    """Keep the image as a negative example (once per sha256) and log where it came from."""
    key = keys.negative_image_key(dataset, record.sha256, root)
    log = JsonLinesLog(s3, bucket, keys.negatives_log_key(dataset, root))
    entry = {**{k: v for k, v in record.to_dict().items() if k != "label"}, "key": key, "negative": True}

    def plan(existing: list[dict]) -> list[dict]:
        return [] if any(e.get("sha256") == record.sha256 for e in existing) else [entry]

    _put(s3, bucket, key, jpeg, record)
    _, appended = log.append(plan)
    if not appended:
        return {"status": DUPLICATE, "sha256": record.sha256, "key": key,
                "message": "kept as a negative example already"}
    return {"status": ADDED, "sha256": record.sha256, "key": key, "message": "kept as a negative example"}


def _put(s3, bucket: str, key: str, jpeg: bytes, record: ImageRecord) -> None:
    with aws.translated(f"upload s3://{bucket}/{key}"):
        s3.put_object(Bucket=bucket, Key=key, Body=jpeg, ContentType="image/jpeg",
                      Metadata={"sha256": record.sha256, "source": SOURCE, "run": record.run or "review"})


def _delete_quietly(s3, bucket: str, key: str) -> None:
    try:
        with aws.translated(f"delete s3://{bucket}/{key}"):
            s3.delete_object(Bucket=bucket, Key=key)
    except ImgclfError as exc:
        # Harmless when it stays: no manifest record names it, so training never reads it.
        logger.warning("could not delete an upload left out as ambiguous", extra={"key": key, "error": str(exc)})
