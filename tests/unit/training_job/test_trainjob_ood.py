"""The out-of-distribution detector: fitted by the training job, read and applied by the inference side."""

from __future__ import annotations

import json

import numpy as np
import pytest

from imgclf.inference.calibration import Calibration, OodDetector
from imgclf_trainjob import calibration
from imgclf_trainjob.config import Hyperparameters
from imgclf_trainjob.job import ood_detector


def clusters(rng: np.random.Generator, n: int, centres: np.ndarray, spread: float = 0.05) -> tuple:
    """n points around each centre, and their labels."""
    points = np.concatenate([c + spread * rng.standard_normal((n, centres.shape[1])) for c in centres])
    return points, np.repeat(np.arange(len(centres)), n)


@pytest.fixture
def fitted():
    rng = np.random.default_rng(0)
    centres = np.array([[1.0, 0, 0, 0], [0, 1.0, 0, 0]])
    train, labels = clusters(rng, 200, centres)
    valid, _ = clusters(rng, 50, centres)
    block, kept, _ = calibration.fit_ood(train, labels, valid, ["a", "b"], keep=0.9)
    return block, kept, centres, rng


def test_the_threshold_keeps_the_asked_share_of_validation_images(fitted):
    block, kept, _, _ = fitted
    assert block["method"] == calibration.OOD_METHOD and block["dim"] == 4 and block["keep"] == 0.9
    assert 0.9 <= kept.mean() <= 0.92  # at least the share asked for, one image more at most
    assert block["fit"]["valid_kept"] == pytest.approx(kept.mean())


def test_a_class_mean_scores_zero_and_an_unseen_direction_is_out(fitted):
    # GIVEN the detector as the inference side reads it from calibration.json
    block, _, centres, rng = fitted
    detector = OodDetector.from_dict(json.loads(json.dumps(block)), 2)

    # THEN each class's own centre is as in-distribution as can be, and points in a direction no class has are out
    assert (detector.scores(centres) < 0.2).all()
    unseen, _ = clusters(rng, 20, np.array([[0, 0, 1.0, 0], [0, 0, 0, 1.0]]))
    assert (detector.scores(unseen) > 1).all()
    seen, _ = clusters(rng, 100, centres)
    assert (detector.scores(seen) <= 1).mean() > 0.8


def test_the_features_scale_does_not_matter(fitted):
    # Features are L2-normalised first: a brighter copy of an image must not look more unusual.
    block, _, centres, _ = fitted
    detector = OodDetector.from_dict(block, 2)
    x = centres + np.array([[0.01, 0.02, -0.01, 0.0]])
    assert detector.scores(x * 7) == pytest.approx(detector.scores(x), rel=1e-9)


def test_inference_and_training_compute_the_same_distance(fitted):
    block, _, _, rng = fitted
    train_side = calibration.fit_detector(*clusters(np.random.default_rng(0), 200, np.eye(4)[:2]), 2)
    points = rng.standard_normal((5, 4))
    inference = OodDetector.from_dict(block, 2)
    assert inference.scores(points) * inference.threshold == pytest.approx(train_side.distances(points), rel=1e-5)


def test_fewer_images_than_feature_dimensions_still_fit():
    # Ledoit-Wolf shrinkage keeps the covariance invertible: 512-dim features, 30 training images.
    rng = np.random.default_rng(1)
    train, labels = rng.standard_normal((30, 512)), np.repeat([0, 1, 2], 10)
    block, kept, _ = calibration.fit_ood(train, labels, rng.standard_normal((20, 512)), ["a", "b", "c"])
    assert np.isfinite(block["threshold"]) and 0 < kept.mean() <= 1


def test_a_features_width_other_than_the_detectors_is_refused(fitted):
    block, _, _, _ = fitted
    detector = Calibration.from_dict({"format_version": 2, "classes": ["a", "b"], "temperature": 1.0,
                                      "thresholds": {"a": {"threshold": 0.5}, "b": {"threshold": 0.5}},
                                      "ood": block}, ("a", "b"))
    with pytest.raises(Exception, match="features"):
        detector.ood_scores(np.zeros((1, 5)), 1)


@pytest.mark.parametrize("hp, features, reason", [
    (Hyperparameters(ood=False), np.zeros((2, 4)), "off: the ood hyperparameter is false"),
    (Hyperparameters(), None, "none: model.onnx has no features output"),
])
def test_the_job_ships_no_detector_when_off_or_without_features_and_says_why(hp, features, reason):
    fit = ood_detector(valid_features=features, train_out=None, plan=None, hp=hp, classes=["a", "b"])
    assert (fit.block, fit.valid_kept, fit.reason) == (None, None, reason)
