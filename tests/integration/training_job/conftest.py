"""Fixtures for the training job's integration tests: one real (tiny) SageMaker-style run, shared."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from imgclf.manifest import AmbiguousRecord, EditRecord, ImageRecord, to_line
from tests.support.images import noisy_jpeg
from tests.support.models import TRAIN_SCRIPT, sagemaker_env

# Labels chosen to exercise spaces and non-ASCII names end to end.
LABELS = {"red apple": (200, 40, 40), "blåbær": (40, 40, 200), "grüne Äpfel": (40, 180, 40)}
PER_LABEL = 8
S3_PREFIX = "s3://imgclf-data/datasets/fruit"


@dataclass(frozen=True)
class TrainedRun:
    """A finished job: its SageMaker folders, dataset and what the test dataset deliberately contains."""

    root: Path
    dataset: Path
    model_dir: Path
    output_data_dir: Path
    failure_file: Path
    returncode: int
    log: str
    ambiguous: str
    deleted: str
    corrupt: str

    def json(self, folder: Path, name: str):
        """Read one of the run's JSON outputs."""
        return json.loads((folder / name).read_text(encoding="utf-8"))


def build_dataset(root: Path) -> tuple[str, str, str]:
    """Collector-layout dataset with a manifest; returns the ambiguous, the deleted and the corrupt file."""
    manifest = []
    for index, (label, color) in enumerate(LABELS.items()):
        folder = root / label
        folder.mkdir(parents=True)
        for i in range(PER_LABEL):
            seed = index * 100 + i
            # Heights vary a little: the job must cope with pictures of different shapes.
            data = noisy_jpeg(color, seed, (64, 64 + (seed % 5) * 4), noise=35)
            sha = hashlib.sha256(data).hexdigest()
            (folder / f"{label}-{sha[:12]}.jpg").write_bytes(data)
            manifest.append(ImageRecord(sha, label, key=f"datasets/fruit/{label}/{label}-{sha[:12]}.jpg",
                                        source="test", query=label, url=f"https://example.test/{i}", width=64,
                                        height=64, bytes=len(data), format="jpeg",
                                        collected_at="2024-01-01T00:00:00.000+00:00"))
    (root / "empty label").mkdir()
    ambiguous, deleted = manifest[0], manifest[1]
    manifest.append(AmbiguousRecord(ambiguous.sha256, (ambiguous.label, "blåbær")))
    # Deleted by the cleaning loop, its file still in the channel: the manifest alone leaves it out.
    manifest.append(EditRecord("delete", deleted.sha256, deleted.key, deleted.label, by="tester",
                               at="2024-01-02T00:00:00.000+00:00"))
    corrupt = "blåbær/blåbær-000000000000.jpg"
    (root / corrupt).write_bytes(b"\xff\xd8\xff\xe0 truncated")
    (root / "manifest.jsonl").write_text("".join(to_line(r) + "\n" for r in manifest), encoding="utf-8")
    return ambiguous.key.removeprefix("datasets/fruit/"), deleted.key.removeprefix("datasets/fruit/"), corrupt


def job_env(root: Path, hyperparameters: dict) -> dict:
    """Environment for a job whose /opt/ml tree lives under root; hyperparameters go to the JSON file."""
    config = root / "input" / "config"
    config.mkdir(parents=True, exist_ok=True)
    (config / "hyperparameters.json").write_text(json.dumps({k: str(v) for k, v in hyperparameters.items()}))
    return {**os.environ, **sagemaker_env(root), "PYTHONWARNINGS": "ignore"}


def run_train(root: Path, hyperparameters: dict, *argv: str,
              timeout: int = 600) -> subprocess.CompletedProcess:
    """Run train.py in a fresh process, from an unrelated working directory, like the container does."""
    return subprocess.run([sys.executable, str(TRAIN_SCRIPT), *argv], env=job_env(root, hyperparameters),
                          cwd=root, capture_output=True, text=True, timeout=timeout)


@pytest.fixture(scope="session")
def trained_run(tmp_path_factory) -> TrainedRun:
    """One tiny resnet18 run (no pretrained weights, 64 px, 1 epoch) that many tests inspect."""
    root = tmp_path_factory.mktemp("sm")
    dataset = root / "input" / "data" / "train"
    ambiguous, deleted, corrupt = build_dataset(dataset)
    hyperparameters = {"arch": "resnet18", "pretrained": "false", "epochs": "1", "freeze_epochs": "1",
                       "img_size": "64", "bs": "8", "num_workers": "0", "seed": "3", "run_id": "test-run-1",
                       "dataset_uri": S3_PREFIX + "/", "top_k": "4", "lr": "0.01"}
    # The CLI overrides the file: this epochs value is the one that must win.
    result = run_train(root, hyperparameters, "--epochs", "1")
    return TrainedRun(root=root, dataset=dataset, model_dir=root / "model",
                      output_data_dir=root / "output" / "data",
                      failure_file=root / "output" / "failure", returncode=result.returncode,
                      log=result.stdout + result.stderr, ambiguous=ambiguous, deleted=deleted, corrupt=corrupt)


@pytest.fixture(scope="session")
def train_job():
    """run_train as a fixture: train_job(root, hyperparameters, *argv) -> CompletedProcess."""
    return run_train
