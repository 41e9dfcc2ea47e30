"""S3 reads for inference: error translation, bounded object reads and verified downloads."""

from __future__ import annotations

import hashlib
import os
import threading
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from botocore.exceptions import BotoCoreError, ClientError

from ..errors import ImageRejected, IntegrityError, NotFound, TransientError

_CHUNK = 1024 * 1024
_MISSING = {"NoSuchKey", "NoSuchVersion", "NoSuchBucket", "404", "NotFound"}
_TRANSIENT = {"SlowDown", "Throttling", "ThrottlingException", "RequestTimeout", "RequestTimeTooSkewed",
              "InternalError", "ServiceUnavailable", "503", "500"}


@contextmanager
def s3_errors(what: str) -> Iterator[None]:
    """Turn botocore errors of S3 calls into NotFound, TransientError or the original error."""
    try:
        yield
    except ClientError as exc:
        code = str(exc.response.get("Error", {}).get("Code", ""))
        status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0)
        if code in _MISSING:
            raise NotFound(f"{what}: {code}") from exc
        if code in _TRANSIENT or status >= 500:
            raise TransientError(f"{what}: {code or status}") from exc
        raise
    except BotoCoreError as exc:  # connection errors, read timeouts, a body cut short
        raise TransientError(f"{what}: {exc}") from exc


def read_object(s3, bucket: str, key: str, *, max_bytes: int, version_id: str | None = None) -> bytes:
    """An object's bytes, refused as too_large from its Content-Length before the body is read."""
    kwargs = {"Bucket": bucket, "Key": key, **({"VersionId": version_id} if version_id else {})}
    with s3_errors(f"get s3://{bucket}/{key}"):
        response = s3.get_object(**kwargs)
        body = response["Body"]
        try:
            if response.get("ContentLength", 0) > max_bytes:
                size = response["ContentLength"]
                raise ImageRejected("too_large", f"{size} bytes is over the {max_bytes} byte limit")
            return body.read()
        finally:
            body.close()


def download(s3, bucket: str, key: str, dest: Path, *, sha256: str | None) -> None:
    """Stream an object to dest, which appears only if its sha256 is the expected one (else IntegrityError).

    sha256=None skips the check, for a file whose checksum nobody recorded.
    """
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    partial = dest.with_name(f".{dest.name}.{os.getpid()}.{threading.get_ident()}.partial")
    digest = hashlib.sha256()
    try:
        with s3_errors(f"get s3://{bucket}/{key}"):
            body = s3.get_object(Bucket=bucket, Key=key)["Body"]
            with partial.open("wb") as out:
                for chunk in body.iter_chunks(_CHUNK):
                    digest.update(chunk)
                    out.write(chunk)
        if sha256 is not None and digest.hexdigest() != sha256.lower():
            actual = digest.hexdigest()
            raise IntegrityError(f"s3://{bucket}/{key} has sha256 {actual}, the registry says {sha256}")
        os.replace(partial, dest)
    finally:
        partial.unlink(missing_ok=True)


def file_sha256(path: Path) -> str:
    """The sha256 of a local file, read in chunks."""
    digest = hashlib.sha256()
    with Path(path).open("rb") as src:
        for chunk in iter(lambda: src.read(_CHUNK), b""):
            digest.update(chunk)
    return digest.hexdigest()
