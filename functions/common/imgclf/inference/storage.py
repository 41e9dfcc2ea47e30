"""S3 reads for inference: bounded object reads and verified downloads, failing with the project's errors."""

from __future__ import annotations

import hashlib
import os
import threading
import time
from pathlib import Path

from .. import aws
from ..errors import ImageRejected, IntegrityError

_CHUNK = 1024 * 1024


def read_object(s3, bucket: str, key: str, *, max_bytes: int, version_id: str | None = None) -> bytes:
    """An object's bytes, refused as too_large from its Content-Length before the body is read."""
    kwargs = {"Bucket": bucket, "Key": key, **({"VersionId": version_id} if version_id else {})}
    with aws.translated(f"get s3://{bucket}/{key}"):
        response = s3.get_object(**kwargs)
        body = response["Body"]
        try:
            if response.get("ContentLength", 0) > max_bytes:
                size = response["ContentLength"]
                raise ImageRejected("too_large", f"{size} bytes is over the {max_bytes} byte limit")
            return body.read()
        finally:
            body.close()


def download(s3, bucket: str, key: str, dest: Path, *, sha256: str | None) -> float:
    """Stream an object to dest, which appears only if its sha256 is the expected one (else IntegrityError).

    sha256=None skips the check, for a file whose checksum nobody recorded. Returns the seconds spent hashing,
    so that a cold start's breakdown can tell the checksum from the transfer.
    """
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    partial = dest.with_name(f".{dest.name}.{os.getpid()}.{threading.get_ident()}.partial")
    digest = hashlib.sha256()
    hashing = 0.0
    try:
        with aws.translated(f"get s3://{bucket}/{key}"):
            body = s3.get_object(Bucket=bucket, Key=key)["Body"]
            with partial.open("wb") as out:
                for chunk in body.iter_chunks(_CHUNK):
                    started = time.perf_counter()
                    digest.update(chunk)
                    hashing += time.perf_counter() - started
                    out.write(chunk)
        if sha256 is not None and digest.hexdigest() != sha256.lower():
            actual = digest.hexdigest()
            raise IntegrityError(f"s3://{bucket}/{key} has sha256 {actual}, the registry says {sha256}")
        os.replace(partial, dest)
    finally:
        partial.unlink(missing_ok=True)
    return hashing


def file_sha256(path: Path) -> str:
    """The sha256 of a local file, read in chunks."""
    digest = hashlib.sha256()
    with Path(path).open("rb") as src:
        for chunk in iter(lambda: src.read(_CHUNK), b""):
            digest.update(chunk)
    return digest.hexdigest()
