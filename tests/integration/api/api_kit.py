"""A tiny trained model for the API's integration and browser tests and its benchmark: trained once, promoted.

The model comes from training_job/train.py itself (resnet18 from scratch, one epoch, 64 px) on a dozen ants
and bees photos from the shared data sets, or on generated pictures where those are absent, so the stack
serves exactly what a real training run produces.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
from PIL import Image

from imgclf.registry import ModelRegistry
from imgclf.settings import get_settings
from imgclf_local.stack import LocalStack

REPO_ROOT = Path(__file__).resolve().parents[3]
TRAIN_SCRIPT = REPO_ROOT / "training_job" / "train.py"
DATASETS_DIR = (REPO_ROOT / ".." / "shared" / "datasets").resolve()
ANTS_BEES = DATASETS_DIR / "ants-bees"
CLASSES = ("ants", "bees")
PUBLISHED = ("model.json", "model.onnx")
MODEL_VERSION = "20261129-000000-tiny"
TRAIN_ARGS = ("--arch", "resnet18", "--pretrained", "false", "--epochs", "1", "--freeze-epochs", "0",
              "--bs", "8", "--parity-images", "4", "--top-k", "4", "--num-workers", "0")


def photos(split: str = "valid", per_class: int | None = None) -> list[Path]:
    """Real photos of the shared ants-bees set (empty where it is absent), interleaved by class."""
    folders = [sorted((ANTS_BEES / split / label).glob("*.jpg")) for label in CLASSES]
    found = [path for pair in zip(*folders, strict=False) for path in pair]
    return found[: 2 * per_class] if per_class else found


def training_data(root: Path, per_class: int = 12) -> Path:
    """A label-per-folder dataset: real photos when available, otherwise noisy pictures of two colours."""
    real = photos("train", per_class)
    for label in CLASSES:
        (root / label).mkdir(parents=True, exist_ok=True)
    if real:
        for path in real:
            shutil.copy(path, root / path.parent.name / path.name)
        return root
    rng = np.random.default_rng(7)
    for label, colour in zip(CLASSES, ((170, 60, 40), (60, 60, 170)), strict=True):
        for i in range(per_class):
            pixels = np.clip(np.array(colour) + rng.normal(0, 40, (96, 96, 3)), 0, 255).astype(np.uint8)
            Image.fromarray(pixels).save(root / label / f"{label}-{i:03d}.jpg", quality=90)
    return root


def tiny_model(workdir: Path, img_size: int = 64) -> Path:
    """The model folder of a tiny training run in workdir, trained on first use and reused after."""
    model_dir = workdir / "model"
    if all((model_dir / name).is_file() for name in PUBLISHED):
        return model_dir
    data = training_data(workdir / "data")
    # One thread each: the machine is shared, and a 64 px resnet18 does not need more.
    env = {**os.environ, "SM_CHANNEL_TRAIN": str(data), "SM_MODEL_DIR": str(model_dir),
           "SM_OUTPUT_DATA_DIR": str(workdir / "output"), "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    completed = subprocess.run([sys.executable, str(TRAIN_SCRIPT), *TRAIN_ARGS, "--img-size", str(img_size),
                                "--run-id", "api-tiny"],
                               env=env, capture_output=True, text=True, timeout=600, check=False)
    if completed.returncode != 0:
        raise RuntimeError(f"training the tiny model failed:\n{completed.stdout[-3000:]}\n{completed.stderr[-3000:]}")
    return model_dir


def publish(s3, registry, bucket: str, model_dir: Path, version: str, models_prefix: str = "models/"):
    """Upload model.json and model.onnx to models/{version}/, register them with their sha256 and promote."""
    artifacts = {}
    for name in PUBLISHED:
        body = (model_dir / name).read_bytes()
        s3.put_object(Bucket=bucket, Key=f"{models_prefix}{version}/{name}", Body=body)
        artifacts[name] = hashlib.sha256(body).hexdigest()
    model_json = json.loads((model_dir / "model.json").read_text())
    registry.register(version, artifacts=artifacts, metrics=model_json.get("metrics", {}),
                      classes=model_json["classes"], dataset="ants-bees", run_id=version)
    return registry.promote(version, force=True, by="tests")


@contextmanager
def stack_with_model(model_dir: Path, cache_dir: Path, version: str = MODEL_VERSION) -> Iterator[LocalStack]:
    """The embedded stack serving the API, with a model uploaded, registered and promoted."""
    # A private model cache: the store prunes every other version it finds in its folder.
    with LocalStack(extra_environment={"MODEL_CACHE_DIR": str(cache_dir)}) as stack:
        settings = get_settings()
        publish(stack.client("s3"), ModelRegistry(settings.models_table), settings.data_bucket, model_dir, version,
                settings.models_prefix)
        yield stack
