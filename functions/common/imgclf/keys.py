"""The S3 key layout of the data bucket: the only place that spells a key."""

from __future__ import annotations

import re
import unicodedata
from urllib.parse import unquote_plus

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".gif", ".webp", ".bmp")
MODEL_ARTIFACTS = ("model.onnx", "model.int8.onnx", "model.json", "export.pkl")

_NAME = re.compile(r"^[\w][\w .\-]{0,99}$", re.UNICODE)


def check_name(kind: str, name: str) -> str:
    """Return a dataset, label or run name in NFC form, refusing what cannot be a single key segment."""
    name = unicodedata.normalize("NFC", name.strip())
    if not _NAME.match(name) or name in {".", ".."}:
        raise ValueError(
            f"invalid {kind} {name!r}: use letters, digits, spaces, '.', '_' or '-' (at most 100, no '/')"
        )
    return name


def dataset_prefix(dataset: str, root: str = "datasets/") -> str:
    return f"{root}{check_name('dataset', dataset)}/"


def dataset_image_key(dataset: str, label: str, sha256: str, root: str = "datasets/") -> str:
    """Where a collected image lives: its label names the folder and prefixes the file name."""
    label = check_name("label", label)
    return f"{dataset_prefix(dataset, root)}{label}/{label}-{sha256[:12]}.jpg"


# "None of these" answers of the review: kept beside the labels, in a folder no label can name (a label never starts
# with '.') and the training job skips (hidden folders), with their own log instead of manifest records.
NEGATIVES_FOLDER = ".negatives"


def negative_image_key(dataset: str, sha256: str, root: str = "datasets/") -> str:
    """Where an upload a person marked "none of these" is kept as a negative example."""
    return f"{dataset_prefix(dataset, root)}{NEGATIVES_FOLDER}/negative-{sha256[:12]}.jpg"


def negatives_log_key(dataset: str, root: str = "datasets/") -> str:
    return f"{dataset_prefix(dataset, root)}{NEGATIVES_FOLDER}/negatives.jsonl"


def manifest_key(dataset: str, root: str = "datasets/") -> str:
    return f"{dataset_prefix(dataset, root)}manifest.jsonl"


def report_key(dataset: str, run: str, root: str = "datasets/") -> str:
    return f"{dataset_prefix(dataset, root)}reports/{run}.json"


def model_prefix(version: str, root: str = "models/") -> str:
    return f"{root}{check_name('model version', version)}/"


def model_key(version: str, artifact: str, root: str = "models/") -> str:
    return f"{model_prefix(version, root)}{artifact}"


def s3_uri(bucket: str, key: str) -> str:
    return f"s3://{bucket}/{key}"


def parse_s3_uri(uri: str) -> tuple[str, str]:
    """Split s3://bucket/key into its parts."""
    if not uri.startswith("s3://"):
        raise ValueError(f"not an s3:// URI: {uri!r}")
    bucket, _, key = uri[5:].partition("/")
    if not bucket or not key:
        raise ValueError(f"an s3 URI needs a bucket and a key: {uri!r}")
    return bucket, key


def decode_event_key(key: str) -> str:
    """S3 notifications URL-encode keys (spaces as '+'): return the real key."""
    return unquote_plus(key)


def is_image_key(key: str) -> bool:
    return key.lower().endswith(IMAGE_SUFFIXES)
