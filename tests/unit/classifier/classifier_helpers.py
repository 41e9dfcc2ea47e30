"""Helpers of the classifier tests: generated photos, a tiny trained model, event builders, a fake clock."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
from pathlib import Path
from urllib.parse import quote_plus

import numpy as np
from PIL import Image

REPO_ROOT = Path(__file__).resolve().parents[3]
TRAIN_SCRIPT = REPO_ROOT / "training_job" / "train.py"
EVENTS_DIR = REPO_ROOT / "tests" / "events"
IMG_SIZE = 64
CLASSES = ("ants", "bees")


class FakeClock:
    """A monotonic clock that moves only when a test says so."""

    def __init__(self, start: float = 1000.0):
        self.now = start

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


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
    buffer = io.BytesIO()
    img.save(buffer, format="JPEG", quality=90, **save_options)
    return buffer.getvalue()


def s3_record(obj: dict, *, event_name: str = "ObjectCreated:Put") -> dict:
    """One S3 notification record shaped like tests/events/s3_put.json, for the given object fields."""
    record = json.loads((EVENTS_DIR / "s3_put.json").read_text())["Records"][0]
    record["eventName"] = event_name
    record["s3"]["bucket"]["name"] = obj["bucket"]
    record["s3"]["bucket"]["arn"] = f"arn:aws:s3:::{obj['bucket']}"
    record["s3"]["object"] = {
        "key": quote_plus(obj["key"], safe="/"), "size": obj["size"], "eTag": obj["eTag"],
        **{k: obj[k] for k in ("versionId", "sequencer") if obj.get(k)},
    }
    return record


def sqs_record(body: dict | str, message_id: str) -> dict:
    """One SQS record shaped like tests/events/sqs_s3_put.json carrying the given body."""
    record = json.loads((EVENTS_DIR / "sqs_s3_put.json").read_text())["Records"][0]
    record["messageId"] = message_id
    record["body"] = body if isinstance(body, str) else json.dumps(body)
    return record


def train_tiny_model(root: Path) -> Path:
    """Train a resnet18 from scratch for one epoch with training_job/train.py; return its model dir."""
    rng = np.random.default_rng(7)
    for label, colour in zip(CLASSES, ((170, 60, 40), (60, 60, 170)), strict=True):
        folder = root / "data" / label
        folder.mkdir(parents=True)
        for i in range(16):
            size = tuple(int(v) for v in rng.integers(70, 150, 2))
            synthetic_photo(rng, colour, size).save(folder / f"{label}-{i}.jpg", quality=90)
    env = {**os.environ, "SM_CHANNEL_TRAIN": str(root / "data"), "SM_MODEL_DIR": str(root / "model"),
           "SM_OUTPUT_DATA_DIR": str(root / "output")}
    args = ["--arch", "resnet18", "--pretrained", "false", "--epochs", "1", "--freeze-epochs", "0",
            "--img_size", str(IMG_SIZE), "--bs", "8", "--num-workers", "0", "--parity-images", "8"]
    done = subprocess.run([sys.executable, str(TRAIN_SCRIPT), *args], env=env, capture_output=True, text=True,
                          timeout=900)
    if done.returncode != 0:
        raise RuntimeError(f"train.py failed:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}")
    return root / "model"
