"""Pictures for tests: generated photos and JPEG bytes, crafted files, and the shared real photo sets."""

from __future__ import annotations

import io
import random
import struct
import zlib
from pathlib import Path

import numpy as np
from PIL import Image

from . import REPO_ROOT

DATASETS_DIR = (REPO_ROOT / ".." / "shared" / "datasets").resolve()
ANTS_BEES = DATASETS_DIR / "ants-bees"
ANTS_BEES_CLASSES = ("ants", "bees")


def synthetic_photo(rng: np.random.Generator, colour: tuple[int, int, int],
                    size: tuple[int, int]) -> Image.Image:
    """A noisy picture dominated by one colour, with a few rectangles so it is not flat."""
    width, height = size
    pixels = np.clip(np.array(colour) + rng.normal(0, 40, (height, width, 3)), 0, 255).astype(np.uint8)
    for _ in range(3):
        x, y = rng.integers(0, width // 2), rng.integers(0, height // 2)
        pixels[y:y + height // 3, x:x + width // 3] = rng.integers(0, 255, 3)
    return Image.fromarray(pixels)


def jpeg_bytes(img: Image.Image, **save_options) -> bytes:
    """The image as a quality-90 JPEG."""
    buffer = io.BytesIO()
    img.save(buffer, format="JPEG", quality=90, **save_options)
    return buffer.getvalue()


def noisy_jpeg(colour: tuple[int, int, int], seed: int, size: tuple[int, int] = (64, 64),
               noise: float = 30) -> bytes:
    """A noisy solid-colour JPEG, different for every seed."""
    rng = np.random.default_rng(seed)
    pixels = np.clip(np.array(colour) + rng.normal(0, noise, (size[1], size[0], 3)), 0, 255).astype(np.uint8)
    return jpeg_bytes(Image.fromarray(pixels))


def photo(seed: int, size: tuple[int, int] = (160, 120), fmt: str = "JPEG") -> bytes:
    """The same picture for the same seed, a different one for every other seed: seeded noise, tinted."""
    noise = Image.frombytes("RGB", size, random.Random(seed).randbytes(size[0] * size[1] * 3))
    tint = Image.new("RGB", size, ((seed * 67) % 256, (seed * 131) % 256, (seed * 29) % 256))
    buffer = io.BytesIO()
    Image.blend(noise, tint, 0.5).save(buffer, fmt)
    return buffer.getvalue()


def png_declaring(width: int, height: int) -> bytes:
    """A tiny PNG whose header claims width x height: a decompression bomb as the header shows it."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IEND", b"")


def real_photos(split: str = "valid", per_class: int | None = None) -> list[Path]:
    """Photos of the shared ants-bees set (empty where it is absent), interleaved by class."""
    folders = [sorted((ANTS_BEES / split / label).glob("*.jpg")) for label in ANTS_BEES_CLASSES]
    found = [path for pair in zip(*folders, strict=False) for path in pair]
    return found[: 2 * per_class] if per_class else found
