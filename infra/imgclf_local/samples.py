"""A labeled image set drawn on the fly: the demo's offline default, and the tests' small data."""

from __future__ import annotations

import io
import random
from pathlib import Path

from PIL import Image, ImageDraw, ImageFilter

# Each class is a shape; colours, sizes, positions, rotation and background vary within a class, so a model
# must learn the shape rather than a colour, and the task is neither trivial nor hopeless.
SHAPES = ("circle", "square", "triangle")


def _background(rng: random.Random, size: int) -> Image.Image:
    top = tuple(rng.randint(120, 255) for _ in range(3))
    bottom = tuple(rng.randint(60, 200) for _ in range(3))
    image = Image.new("RGB", (size, size))
    draw = ImageDraw.Draw(image)
    for y in range(size):
        t = y / max(1, size - 1)
        draw.line([(0, y), (size, y)], fill=tuple(int(a + (b - a) * t) for a, b in zip(top, bottom, strict=True)))
    return image


def shape_image(shape: str, seed: int, size: int = 128) -> Image.Image:
    """One picture of a shape with random colour, scale, position, rotation, background and blur."""
    rng = random.Random(f"{shape}-{seed}")
    image = _background(rng, size)
    layer = Image.new("RGBA", (size, size), (0, 0, 0, 0))
    draw = ImageDraw.Draw(layer)
    colour = tuple(rng.randint(0, 200) for _ in range(3)) + (255,)
    extent = rng.uniform(0.3, 0.7) * size
    cx, cy = rng.uniform(extent / 2, size - extent / 2), rng.uniform(extent / 2, size - extent / 2)
    box = (cx - extent / 2, cy - extent / 2, cx + extent / 2, cy + extent / 2)
    if shape == "circle":
        draw.ellipse(box, fill=colour)
    elif shape == "square":
        draw.rectangle(box, fill=colour)
    elif shape == "triangle":
        draw.polygon([(box[0], box[3]), (cx, box[1]), (box[2], box[3])], fill=colour)
    else:
        raise ValueError(f"unknown shape {shape!r}")
    layer = layer.rotate(rng.uniform(-30, 30), resample=Image.BICUBIC, center=(cx, cy))
    image.paste(layer, (0, 0), layer)
    return image.filter(ImageFilter.GaussianBlur(rng.uniform(0, 1.2)))


def jpeg_bytes(image: Image.Image, quality: int = 90) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", quality=quality)
    return buffer.getvalue()


def write_shapes(root: Path, per_label: int, *, labels: tuple[str, ...] = SHAPES, size: int = 128,
                 first_seed: int = 0) -> Path:
    """A folder-per-label tree of shape pictures, e.g. root/circle/circle-0007.jpg."""
    for label in labels:
        folder = root / label
        folder.mkdir(parents=True, exist_ok=True)
        for seed in range(first_seed, first_seed + per_label):
            (folder / f"{label}-{seed:04d}.jpg").write_bytes(jpeg_bytes(shape_image(label, seed, size)))
    return root
