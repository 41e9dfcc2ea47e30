"""Small labeled image sets made in the tests, and their upload in the collector's S3 layout."""

from __future__ import annotations

import hashlib
import io
import json
import random
from pathlib import Path

from PIL import Image, ImageDraw

from imgclf import keys

# Distinct colour and shape per class, so a model learns them in one epoch at 64 px.
_STYLES = [((220, 40, 40), "ellipse"), ((40, 90, 220), "rectangle"), ((40, 170, 60), "polygon")]


def synthetic_image(label_index: int, seed: int, size: int = 96) -> Image.Image:
    """One image of a class: its shape in its colour on a noisy background."""
    rng = random.Random(seed)
    colour, shape = _STYLES[label_index % len(_STYLES)]
    image = Image.new("RGB", (size, size), tuple(rng.randint(150, 255) for _ in range(3)))
    draw = ImageDraw.Draw(image)
    a, b = rng.randint(5, size // 4), rng.randint(size // 2, size - 5)
    if shape == "ellipse":
        draw.ellipse((a, a, b, b), fill=colour)
    elif shape == "rectangle":
        draw.rectangle((a, a, b, b), fill=colour)
    else:
        draw.polygon([(a, b), ((a + b) // 2, a), (b, b)], fill=colour)
    return image


def jpeg_bytes(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", quality=90)
    return buffer.getvalue()


def write_folder_dataset(root: Path, labels: list[str], per_label: int, size: int = 96) -> Path:
    """A folder-per-label tree of synthetic JPEGs."""
    for index, label in enumerate(labels):
        folder = root / label
        folder.mkdir(parents=True, exist_ok=True)
        for i in range(per_label):
            (folder / f"{label}-{i}.jpg").write_bytes(jpeg_bytes(synthetic_image(index, seed=index * 1000 + i,
                                                                                 size=size)))
    return root


def upload_dataset(s3, bucket: str, dataset: str, labels: list[str], per_label: int, size: int = 96) -> list[str]:
    """Synthetic images under datasets/{dataset}/{label}/ with a manifest, as the collector leaves them."""
    lines, written = [], []
    for index, label in enumerate(labels):
        for i in range(per_label):
            data = jpeg_bytes(synthetic_image(index, seed=index * 1000 + i, size=size))
            sha = hashlib.sha256(data).hexdigest()
            key = keys.dataset_image_key(dataset, label, sha)
            s3.put_object(Bucket=bucket, Key=key, Body=data, ContentType="image/jpeg")
            written.append(key)
            lines.append(json.dumps({"label": label, "source": "test", "query": "", "url": "", "sha256": sha,
                                     "key": key, "width": size, "height": size, "bytes": len(data),
                                     "collected_at": "2026-11-29T00:00:00Z"}))
    s3.put_object(Bucket=bucket, Key=keys.manifest_key(dataset), Body=("\n".join(lines) + "\n").encode())
    return written
