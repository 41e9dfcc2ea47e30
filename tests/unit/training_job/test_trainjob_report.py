"""The training job's report: confusion counts, per-class scores and the top-losses selection."""

from __future__ import annotations

import numpy as np
import pytest

from imgclf_trainjob import report
from imgclf_trainjob.learner import TrainHistory


@pytest.fixture
def evaluation():
    """Four validation images over three classes: one wrong with high confidence, one barely right."""
    probs = np.array([[0.9, 0.05, 0.05], [0.1, 0.8, 0.1], [0.45, 0.1, 0.45], [0.2, 0.7, 0.1]])
    targets = np.array([0, 1, 2, 0])
    losses = -np.log(probs[np.arange(4), targets])
    paths = ["a/1.jpg", "b/2.jpg", "c/3.jpg", "a/4.jpg"]
    return report.Evaluation(["a", "b", "c"], paths, probs, targets, losses)


def test_confusion_counts_and_scores(evaluation):
    counts = report.confusion_counts(evaluation)
    assert counts.tolist() == [[1, 1, 0], [0, 1, 0], [1, 0, 0]]
    scores = report.per_class_scores(counts, evaluation.classes)
    assert scores["a"] == {"precision": 0.5, "recall": 0.5, "support": 2}
    assert scores["c"] == {"precision": None, "recall": 0.0, "support": 1}


def test_top_losses_lists_wrong_first_then_uncertain(evaluation):
    rows = report.top_losses(evaluation, k=2, s3=("bucket", "datasets/x"))
    assert [(r["path"], r["kind"]) for r in rows] == [
        ("a/4.jpg", "wrong"), ("c/3.jpg", "wrong"), ("b/2.jpg", "uncertain"), ("a/1.jpg", "uncertain")]
    assert rows[0]["predicted"] == "b" and rows[0]["actual"] == "a"
    assert rows[0]["probability"] == pytest.approx(0.7) and rows[0]["loss"] == pytest.approx(-np.log(0.2))
    assert rows[0]["s3_key"] == "datasets/x/a/4.jpg" and rows[0]["s3_uri"] == "s3://bucket/datasets/x/a/4.jpg"
    assert "s3_key" not in report.top_losses(evaluation, k=1)[0]


def test_s3_location_prefers_the_hyperparameter():
    assert report.s3_location("s3://b/datasets/pets/", "s3://other/x") == ("b", "datasets/pets")
    assert report.s3_location("/local/path", "s3://other/x/") == ("other", "x")
    assert report.s3_location(None, None) is None


def test_metrics_and_plots(evaluation, tmp_path):
    epoch = {"epoch": 1, "phase": "unfrozen", "train_loss": 1.0, "valid_loss": float("nan"),
             "error_rate": 0.5, "accuracy": 0.5, "wall_s": 1.5}
    history = TrainHistory(epochs=[epoch], batch_losses=[1.2, 1.1, 1.0], lr=0.002)
    metrics = report.build_metrics(evaluation, history, n_train=10)
    assert metrics["error_rate"] == 0.5 and metrics["n_valid"] == 4 and metrics["epoch_wall_s"] == [1.5]
    report.write_json(tmp_path / "metrics.json", metrics)
    assert '"valid_loss": null' in (tmp_path / "metrics.json").read_text()
    report.plot_learning_curve(history, tmp_path / "curve.png")
    report.plot_confusion_matrix(report.confusion_counts(evaluation), evaluation.classes, tmp_path / "cm.png")
    assert (tmp_path / "curve.png").stat().st_size > 0 and (tmp_path / "cm.png").stat().st_size > 0
