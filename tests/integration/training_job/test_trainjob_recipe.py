"""The training recipes on a real (tiny) run: presizing, label smoothing, early stopping, the best epoch, TTA."""

from __future__ import annotations

import json

import pytest

from tests.support.images import noisy_jpeg

TINY = {"arch": "resnet18", "pretrained": "false", "img_size": "64", "bs": "8", "num_workers": "0", "seed": "5",
        "int8": "false", "audit": "off", "ood": "false", "parity_images": "8", "top_k": "2"}


def tiny_dataset(root):
    """Two labels of noisy coloured squares, 10 each."""
    for label, color in {"red": (200, 40, 40), "blue": (40, 40, 200)}.items():
        (root / label).mkdir(parents=True)
        for i in range(10):
            (root / label / f"{label}-{i}.jpg").write_bytes(noisy_jpeg(color, i, (72, 64), noise=90))


def trained(tmp_path_factory, train_job, hyperparameters: dict) -> tuple[dict, dict]:
    """Run the job on the tiny dataset; its metrics.json and model.json."""
    root = tmp_path_factory.mktemp("recipe")
    tiny_dataset(root / "input" / "data" / "train")
    result = train_job(root, TINY | hyperparameters)
    assert result.returncode == 0, result.stdout + result.stderr
    return (json.loads((root / "output" / "data" / "metrics.json").read_text()),
            json.loads((root / "model" / "model.json").read_text()))


@pytest.fixture(scope="module")
def default_run(tmp_path_factory, train_job):
    # A learning rate this high makes the validation loss climb, so early stopping has something to stop.
    return trained(tmp_path_factory, train_job, {"max_epochs": "6", "patience": "1", "lr": "0.05",
                                                  "presize": "80", "tta": "true"})


@pytest.fixture(scope="module")
def classic_run(tmp_path_factory, train_job):
    return trained(tmp_path_factory, train_job, {"recipe": "classic", "epochs": "2"})


def test_early_stopping_ends_patience_epochs_after_the_best_and_keeps_the_best(default_run):
    metrics, model_json = default_run
    unfrozen = [e for e in metrics["epochs"] if e["phase"] == "unfrozen"]
    best = min(unfrozen, key=lambda e: e["valid_loss"])

    assert len(unfrozen) < 6, "the run should have stopped early"
    assert unfrozen[-1]["epoch"] == best["epoch"] + 1
    assert metrics["best_epoch"] == model_json["metrics"]["best_epoch"] == best["epoch"]
    assert metrics["error_rate"] == pytest.approx(best["error_rate"])


def test_the_recipe_that_ran_is_recorded_with_presizing_and_smoothing(default_run):
    metrics, model_json = default_run

    assert model_json["recipe"] == metrics["recipe"]
    assert metrics["recipe"] | {"presize": 80, "label_smoothing": 0.1, "keep_best": True, "patience": 1} == \
        metrics["recipe"]
    # Presizing changes training only: the documented preprocessing still reproduces the model's input.
    assert model_json["preprocessing_check"]["ok"] and model_json["preprocessing"]["recipe"] == "fastai_rrc_valid"


def test_tta_error_is_reported_next_to_the_exported_models_own(default_run):
    metrics, model_json = default_run

    assert metrics["tta"]["error_rate_plain"] == pytest.approx(metrics["error_rate"])
    assert 0 <= metrics["tta"]["error_rate"] <= 1 and metrics["tta"]["in_model"] is False
    assert model_json["metrics"]["error_rate_tta"] == metrics["tta"]["error_rate"]


def test_classic_recipe_runs_every_epoch_and_keeps_the_last(classic_run):
    metrics, model_json = classic_run
    unfrozen = [e for e in metrics["epochs"] if e["phase"] == "unfrozen"]

    assert len(unfrozen) == 2 and metrics["best_epoch"] == unfrozen[-1]["epoch"]
    assert metrics["error_rate"] == pytest.approx(unfrozen[-1]["error_rate"])
    assert (model_json["recipe"]["name"], model_json["recipe"]["label_smoothing"]) == ("classic", 0.0)
    assert "tta" not in metrics


def test_the_report_says_which_backbone_why_and_its_cost_per_epoch(default_run):
    metrics, _ = default_run
    backbone = metrics["backbone"]

    assert (backbone["arch"], backbone["weights"], backbone["why"]) == ("resnet18", "none", "set by the run's arch")
    assert backbone["parameters"] > 11_000_000 and backbone["seconds_per_epoch"] > 0
