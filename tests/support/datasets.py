"""Small labeled image sets in the collector's S3 layout, drawn with the demo's shape generator."""

from __future__ import annotations

import hashlib
import json

from imgclf import keys
from imgclf_local.samples import SHAPES, jpeg_bytes, shape_image


def upload_dataset(s3, bucket: str, dataset: str, labels: list[str], per_label: int, size: int = 96) -> list[str]:
    """Shape pictures under datasets/{dataset}/{label}/ with a manifest, as the collector leaves them."""
    lines, written = [], []
    for index, label in enumerate(labels):
        for seed in range(per_label):
            data = jpeg_bytes(shape_image(SHAPES[index % len(SHAPES)], seed, size))
            sha = hashlib.sha256(data).hexdigest()
            key = keys.dataset_image_key(dataset, label, sha)
            s3.put_object(Bucket=bucket, Key=key, Body=data, ContentType="image/jpeg")
            written.append(key)
            lines.append(json.dumps({"label": label, "source": "test", "query": "", "url": "", "sha256": sha,
                                     "key": key, "width": size, "height": size, "bytes": len(data),
                                     "collected_at": "2026-11-29T00:00:00Z"}))
    s3.put_object(Bucket=bucket, Key=keys.manifest_key(dataset), Body=("\n".join(lines) + "\n").encode())
    return written
