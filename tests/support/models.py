"""Small trained models for tests and benchmarks, and their publication where the classifier finds them.

Both come from training_job/train.py itself, so the stack serves exactly what a real training run produces. The
tiny model (resnet18 from scratch, one epoch, 64 px) learns from a dozen ants and bees photos of the shared data
sets, or from generated pictures where those are absent: fast, and enough wherever any answer will do. The photo
model (EfficientNet-Lite0 from its offline weights, one epoch, 224 px, all of ants-bees) is for tests that need a
model that knows what it has seen, such as its out-of-distribution verdicts.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np

from imgclf import aws
from imgclf.registry import ModelRegistry
from imgclf.settings import get_settings
from imgclf_local.stack import LocalStack

from . import REPO_ROOT
from .images import ANTS_BEES_CLASSES, real_photos, synthetic_photo

TRAIN_SCRIPT = REPO_ROOT / "training_job" / "train.py"
CLASSES = ANTS_BEES_CLASSES
PUBLISHED = ("model.json", "model.onnx", "calibration.json")
MODEL_VERSION = "20261129-000000-tiny"
TRAIN_ARGS = ("--arch", "resnet18", "--pretrained", "false", "--epochs", "1", "--freeze-epochs", "0",
              "--bs", "8", "--parity-images", "4", "--top-k", "4", "--num-workers", "0",
              # Whether a tiny model's int8 passes its check varies; the int8 tests quantize it themselves.
              "--int8", "false")
PHOTO_TRAIN_ARGS = ("--arch", "tf_efficientnet_lite0", "--weights", "efficientnet-lite0-package", "--epochs", "1",
                    "--freeze-epochs", "0", "--img-size", "224", "--bs", "32", "--parity-images", "8", "--top-k", "4",
                    "--num-workers", "0", "--int8", "false", "--tta", "false")


def training_data(root: Path, per_class: int = 12) -> Path:
    """A label-per-folder dataset: real photos when available, otherwise generated pictures of two colours."""
    real = real_photos("train", per_class)
    for label in CLASSES:
        (root / label).mkdir(parents=True, exist_ok=True)
    if real:
        for path in real:
            shutil.copy(path, root / path.parent.name / path.name)
        return root
    rng = np.random.default_rng(7)
    for label, colour in zip(CLASSES, ((170, 60, 40), (60, 60, 170)), strict=True):
        for i in range(per_class):
            size = tuple(int(v) for v in rng.integers(70, 150, 2))
            synthetic_photo(rng, colour, size).save(root / label / f"{label}-{i:03d}.jpg", quality=90)
    return root


def sagemaker_env(root: Path) -> dict[str, str]:
    """SageMaker's folder variables for a job whose /opt/ml tree lives under root."""
    return {
        "SM_INPUT_CONFIG_DIR": str(root / "input" / "config"),
        "SM_INPUT_DIR": str(root / "input"),
        "SM_CHANNEL_TRAIN": str(root / "input" / "data" / "train"),
        "SM_MODEL_DIR": str(root / "model"),
        "SM_OUTPUT_DATA_DIR": str(root / "output" / "data"),
    }


def train_tiny_model(workdir: Path, img_size: int = 64) -> Path:
    """The model folder of a tiny training run in workdir, trained on first use and reused after."""
    folders = sagemaker_env(workdir)
    channel = Path(folders["SM_CHANNEL_TRAIN"])
    if not channel.is_dir():
        training_data(channel)
    # One thread each: the machine is shared, and a 64 px resnet18 does not need more.
    return _train(workdir, [*TRAIN_ARGS, "--img-size", str(img_size), "--run-id", "tiny"],
                  {"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"})


def train_photo_model(workdir: Path, ants_bees: Path) -> Path:
    """A model that has seen real photos: EfficientNet-Lite0 (offline package weights) fine-tuned for one epoch on
    ants-bees as given, the smallest run whose out-of-distribution detector tells photos of ants and bees from
    drawings (about 40 s on 2 CPUs)."""
    channel = Path(sagemaker_env(workdir)["SM_CHANNEL_TRAIN"])
    if not channel.exists():
        channel.parent.mkdir(parents=True, exist_ok=True)
        channel.symlink_to(ants_bees.resolve(), target_is_directory=True)
    return _train(workdir, [*PHOTO_TRAIN_ARGS, "--run-id", "photo"], {})


def _train(workdir: Path, args: list[str], env: dict[str, str]) -> Path:
    """Run train.py in SageMaker's folder layout under workdir, unless it already left a model there."""
    folders = sagemaker_env(workdir)
    model_dir = Path(folders["SM_MODEL_DIR"])
    if all((model_dir / name).is_file() for name in PUBLISHED):
        return model_dir
    completed = subprocess.run([sys.executable, str(TRAIN_SCRIPT), *args], env={**os.environ, **folders, **env},
                               capture_output=True, text=True, timeout=900, check=False)
    if completed.returncode != 0:
        raise RuntimeError(f"train.py {' '.join(args)} failed:\n{completed.stdout[-3000:]}\n"
                           f"{completed.stderr[-3000:]}")
    return model_dir


def artifact_sha256(model_dir: Path, names: Iterable[str] | None = None) -> dict[str, str]:
    """The sha256 of the model's artifacts (all of them by default), as the registry records them."""
    paths = [model_dir / name for name in names] if names is not None else sorted(model_dir.iterdir())
    return {path.name: hashlib.sha256(path.read_bytes()).hexdigest() for path in paths}


def publish_model(model_dir: Path, version: str, *, names: Iterable[str] = PUBLISHED,
                  artifacts: dict[str, str] | None = None, body_of: dict[str, bytes] | None = None,
                  promote: bool = True) -> str:
    """Upload a model's artifacts under the models prefix, register them with their sha256, promote.

    Goes where the functions' settings point: moto in-process or a local stack alike. `artifacts` replaces the
    checksums the registry records and `body_of` what is uploaded, for tests of a store that must refuse them.
    """
    settings = get_settings()
    s3 = aws.client("s3")
    names = tuple(names)
    for name in names:
        body = (body_of or {}).get(name) or (model_dir / name).read_bytes()
        s3.put_object(Bucket=settings.data_bucket, Key=f"{settings.models_prefix}{version}/{name}", Body=body)
    model_json = json.loads((model_dir / "model.json").read_text())
    registry = ModelRegistry(settings.models_table)
    registry.register(version, artifacts=artifacts or artifact_sha256(model_dir, names),
                      metrics=model_json.get("metrics", {}), classes=model_json["classes"])
    if promote:
        registry.promote(version, force=True, by="tests")
    return version


@contextmanager
def stack_with_model(model_dir: Path, cache_dir: Path, version: str = MODEL_VERSION) -> Iterator[LocalStack]:
    """The embedded stack serving the API, with a model uploaded, registered and promoted."""
    # A private model cache: the store prunes every other version it finds in its folder.
    with LocalStack(extra_environment={"MODEL_CACHE_DIR": str(cache_dir)}) as stack:
        publish_model(model_dir, version)
        yield stack


def unsure_model(model_dir: Path, dest: Path) -> Path:
    """A copy of a model whose calibration no label ever reaches: every verdict is unknown (the review queue's
    first reason), whatever the image."""
    dest.mkdir(parents=True, exist_ok=True)
    for name in PUBLISHED:
        shutil.copy2(model_dir / name, dest / name)
    calibration = json.loads((dest / "calibration.json").read_text())
    for threshold in calibration["thresholds"].values():
        threshold["threshold"] = 1.01
    (dest / "calibration.json").write_text(json.dumps(calibration))
    return dest
