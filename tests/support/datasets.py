"""Small labeled image sets in the collector's S3 layout: drawn with the demo's shape generator, or real photos."""

from __future__ import annotations

import hashlib
import io
import json
from collections.abc import Iterable
from pathlib import Path

from PIL import Image

from imgclf import keys
from imgclf_local.samples import SHAPES, jpeg_bytes, shape_image


def upload_dataset(s3, bucket: str, dataset: str, labels: list[str], per_label: int, size: int = 96) -> list[str]:
    """Shape pictures under datasets/{dataset}/{label}/ with a manifest, as the collector leaves them."""
    pictures = ((label, jpeg_bytes(shape_image(SHAPES[index % len(SHAPES)], seed, size)))
                for index, label in enumerate(labels) for seed in range(per_label))
    return upload_images(s3, bucket, dataset, pictures)


def upload_photos(s3, bucket: str, dataset: str, photos: Iterable[tuple[str, Path]]) -> list[str]:
    """Photo files, each under the label given with it, with a manifest, as the collector leaves them."""
    return upload_images(s3, bucket, dataset, ((label, path.read_bytes()) for label, path in photos))


def upload_images(s3, bucket: str, dataset: str, images: Iterable[tuple[str, bytes]]) -> list[str]:
    """JPEG bytes stored under datasets/{dataset}/{label}/{label}-{sha256[:12]}.jpg, and the manifest's records."""
    lines, written = [], []
    for label, data in images:
        sha = hashlib.sha256(data).hexdigest()
        key = keys.dataset_image_key(dataset, label, sha)
        s3.put_object(Bucket=bucket, Key=key, Body=data, ContentType="image/jpeg")
        written.append(key)
        with Image.open(io.BytesIO(data)) as image:
            width, height = image.size
        lines.append(json.dumps({"label": label, "source": "test", "query": "", "url": "", "sha256": sha,
                                 "key": key, "width": width, "height": height, "bytes": len(data),
                                 "collected_at": "2026-11-29T00:00:00Z"}))
    s3.put_object(Bucket=bucket, Key=keys.manifest_key(dataset), Body=("\n".join(lines) + "\n").encode())
    return written
