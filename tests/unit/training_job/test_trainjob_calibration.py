"""Temperature scaling, ECE and per-label thresholds on synthetic logits with known answers."""

from __future__ import annotations

import numpy as np
import pytest

from imgclf_trainjob import calibration


def sampled(n: int, true_t: float, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Logits whose labels are drawn from softmax(logits / true_t): T = true_t is the right answer."""
    rng = np.random.default_rng(seed)
    logits = rng.normal(0, 3, size=(n, 3))
    probs = calibration.scaled(logits, true_t)
    labels = np.array([rng.choice(3, p=p) for p in probs])
    return logits, labels


def test_temperature_recovers_the_temperature_the_labels_were_drawn_with():
    logits, labels = sampled(6000, true_t=2.0)

    temperature = calibration.fit_temperature(logits, labels)

    assert temperature == pytest.approx(2.0, rel=0.1)


def test_temperature_scaling_lowers_ece_of_overconfident_probabilities():
    logits, labels = sampled(4000, true_t=2.5, seed=1)
    probs = calibration.scaled(logits, 1.0)

    doc, before, after = calibration.fit(probs, labels, ["a", "b", "c"])

    assert before.ece > 0.1
    assert after.ece < 0.03
    assert doc["validation"]["ece_before"] == before.ece and doc["validation"]["ece_after"] == after.ece
    assert doc["format_version"] == calibration.FORMAT_VERSION


def test_ece_of_a_known_binning():
    # Two images at confidence 0.9 (one right), two at 0.6 (both right): |0.5-0.9|*2/4 + |1-0.6|*2/4 = 0.4.
    probs = np.array([[0.9, 0.1], [0.9, 0.1], [0.4, 0.6], [0.4, 0.6]])
    labels = np.array([0, 1, 1, 1])

    assert calibration.ece(probs, labels) == pytest.approx(0.4)


def test_perfectly_calibrated_confidence_has_no_ece():
    probs = np.array([[0.75, 0.25]] * 4)
    labels = np.array([0, 0, 0, 1])

    assert calibration.ece(probs, labels) == pytest.approx(0.0)


def test_f1_threshold_is_the_point_that_separates_the_classes():
    scores = np.array([0.1, 0.2, 0.3, 0.7, 0.8, 0.9])
    positive = np.array([False, False, False, True, True, True])

    result = calibration.label_threshold(scores, positive, "f1")

    assert result["threshold"] == pytest.approx(0.7)
    assert result["f1"] == pytest.approx(1.0)


def test_precision_mode_takes_the_lowest_threshold_reaching_the_target():
    scores = np.array([0.5, 0.6, 0.65, 0.7, 0.8, 0.9])
    positive = np.array([True, False, True, True, True, True])

    f1 = calibration.label_threshold(scores, positive, "f1")
    strict = calibration.label_threshold(scores, positive, "precision", target_precision=0.95)

    assert f1["threshold"] == pytest.approx(0.5)  # 5/6 precision, full recall: F1 0.91
    assert strict["threshold"] == pytest.approx(0.65)
    assert strict["precision"] == pytest.approx(1.0) and strict["reached"]


def test_precision_mode_falls_back_to_f1_when_the_target_is_out_of_reach():
    scores = np.array([0.9, 0.8, 0.7])
    positive = np.array([False, True, True])

    result = calibration.label_threshold(scores, positive, "precision", target_precision=0.95)

    assert not result["reached"]
    assert result["threshold"] == pytest.approx(calibration.label_threshold(scores, positive, "f1")["threshold"])


def test_verdicts_answer_only_where_the_top_label_reaches_its_threshold():
    probs = np.array([[0.9, 0.1], [0.55, 0.45], [0.2, 0.8]])
    per_label = {"a": {"threshold": 0.6}, "b": {"threshold": 0.7}}

    assert calibration.verdicts(probs, ["a", "b"], per_label).tolist() == [True, False, True]


def test_fit_records_coverage_and_selective_accuracy():
    logits, labels = sampled(2000, true_t=1.0, seed=3)

    doc, _, _ = calibration.fit(calibration.scaled(logits, 1.0), labels, ["a", "b", "c"],
                                mode="precision", target_precision=0.9)

    validation = doc["validation"]
    assert 0 < validation["coverage"] <= 1
    assert validation["selective_accuracy"] >= validation["accuracy"]
    assert doc["threshold_mode"] == "precision" and doc["target_precision"] == 0.9
    assert set(doc["thresholds"]) == {"a", "b", "c"}


def test_an_unknown_threshold_mode_is_refused():
    with pytest.raises(ValueError, match="threshold mode"):
        calibration.label_threshold(np.array([0.5]), np.array([True]), "recall")
