"""calibration.json: temperature scaling, ECE, per-label thresholds and an out-of-distribution detector.

Temperature scaling (Guo et al. 2017) divides the logits by one scalar T fitted by NLL on validation logits;
scipy's bounded scalar minimiser finds T and scikit-learn's precision_recall_curve gives the thresholds. The
graph ends in a softmax, so log(probabilities) stand in for the logits: softmax ignores the constant between them.
The inference side (imgclf.inference.calibration) reads the artifact and applies it to every backend's output.

The out-of-distribution detector is a class-conditional Gaussian with one shared covariance (Lee et al. 2018) on
the L2-normalised features that the last linear layer reads, fitted on the training images: an image's score is
its Mahalanobis distance to the nearest label's mean. scikit-learn's Ledoit-Wolf estimator shrinks the covariance,
which stays invertible with fewer images than feature dimensions. The threshold keeps ``ood_keep`` (95%) of the
validation images. Chosen by measurement over the pooled body features, PCA-reduced variants and cosine kNN
(docs/classifier.md, "Out of distribution"); it also needs no training features at inference time.
"""

from __future__ import annotations

import base64
from dataclasses import dataclass

import numpy as np
from scipy.optimize import minimize_scalar
from scipy.special import log_softmax, softmax
from sklearn.covariance import LedoitWolf
from sklearn.metrics import precision_recall_curve

CALIBRATION_JSON = "calibration.json"
# 2 added the out-of-distribution detector ("ood"); the inference side reads 1 and 2.
FORMAT_VERSION = 2
OOD_METHOD = "mahalanobis_shared_l2"
ECE_BINS = 15
THRESHOLD_MODES = ("f1", "precision")
_LOG_T_BOUNDS = (-3.0, 3.0)  # T in [0.05, 20]
_EPS = 1e-12


def logits_of(probabilities: np.ndarray) -> np.ndarray:
    """Logits up to a per-row constant, from probabilities (what a softmax-ending graph gives)."""
    return np.log(np.clip(np.asarray(probabilities, dtype=np.float64), _EPS, 1.0))


def nll(logits: np.ndarray, labels: np.ndarray, temperature: float = 1.0) -> float:
    """Mean negative log-likelihood of the labels under softmax(logits / T)."""
    log_p = log_softmax(np.asarray(logits, dtype=np.float64) / temperature, axis=1)
    return float(-log_p[np.arange(len(labels)), labels].mean())


def fit_temperature(logits: np.ndarray, labels: np.ndarray) -> float:
    """The temperature that minimises validation NLL (searched over log T, so T stays positive)."""
    result = minimize_scalar(lambda log_t: nll(logits, labels, float(np.exp(log_t))), bounds=_LOG_T_BOUNDS,
                             method="bounded", options={"xatol": 1e-5})
    return float(np.exp(result.x))


def scaled(logits: np.ndarray, temperature: float) -> np.ndarray:
    """Calibrated probabilities: softmax(logits / T)."""
    return softmax(np.asarray(logits, dtype=np.float64) / temperature, axis=1)


@dataclass(frozen=True)
class Reliability:
    """Per-bin mean confidence, accuracy and count of top-1 predictions, and the resulting ECE."""

    edges: np.ndarray
    confidence: np.ndarray
    accuracy: np.ndarray
    counts: np.ndarray
    ece: float


def reliability(probabilities: np.ndarray, labels: np.ndarray, bins: int = ECE_BINS) -> Reliability:
    """Expected calibration error over equal-width confidence bins (the top-1 form of Guo et al.)."""
    probabilities = np.asarray(probabilities, dtype=np.float64)
    confidence = probabilities.max(axis=1)
    correct = (probabilities.argmax(axis=1) == labels).astype(np.float64)
    edges = np.linspace(0.0, 1.0, bins + 1)
    # Bins are (lo, hi]; a confidence of exactly 0 cannot happen for a top-1 probability.
    index = np.clip(np.searchsorted(edges, confidence, side="left") - 1, 0, bins - 1)
    counts = np.bincount(index, minlength=bins)
    conf_sum = np.bincount(index, weights=confidence, minlength=bins)
    acc_sum = np.bincount(index, weights=correct, minlength=bins)
    filled = counts > 0
    mean_conf = np.where(filled, conf_sum / np.maximum(counts, 1), np.nan)
    mean_acc = np.where(filled, acc_sum / np.maximum(counts, 1), np.nan)
    ece = float(np.abs(acc_sum - conf_sum).sum() / max(len(labels), 1))
    return Reliability(edges, mean_conf, mean_acc, counts, ece)


def ece(probabilities: np.ndarray, labels: np.ndarray, bins: int = ECE_BINS) -> float:
    """Expected calibration error, 15 equal-width bins by default."""
    return reliability(probabilities, labels, bins).ece


def label_threshold(scores: np.ndarray, positive: np.ndarray, mode: str = "f1",
                    target_precision: float = 0.95) -> dict:
    """One label's threshold on its calibrated probability, one-vs-rest.

    f1: the F1-optimal point (Rekognition's "assumed threshold"). precision: the lowest threshold whose
    precision reaches the target; where none does, the F1-optimal point, with reached=false.
    """
    if mode not in THRESHOLD_MODES:
        raise ValueError(f"unknown threshold mode {mode!r}; expected one of {THRESHOLD_MODES}")
    if not positive.any():
        return {"threshold": 1.0, "precision": None, "recall": 0.0, "f1": 0.0, "reached": False}
    precision, recall, thresholds = precision_recall_curve(positive.astype(int), scores)
    precision, recall = precision[:-1], recall[:-1]  # the last point has no threshold
    f1 = 2 * precision * recall / np.maximum(precision + recall, _EPS)
    best = int(np.argmax(f1))
    reached = True
    if mode == "precision":
        passing = np.flatnonzero(precision >= target_precision)
        if len(passing):
            best = int(passing[0])  # thresholds ascend: the first passing one is the lowest
        else:
            reached = False
    return {"threshold": float(thresholds[best]), "precision": float(precision[best]),
            "recall": float(recall[best]), "f1": float(f1[best]), "reached": reached}


def thresholds(probabilities: np.ndarray, labels: np.ndarray, classes: list[str], mode: str = "f1",
               target_precision: float = 0.95) -> dict[str, dict]:
    """Each label's threshold on its calibrated probability."""
    return {name: label_threshold(probabilities[:, i], labels == i, mode, target_precision)
            for i, name in enumerate(classes)}


def verdicts(probabilities: np.ndarray, classes: list[str], per_label: dict[str, dict]) -> np.ndarray:
    """True where the top label's probability reaches that label's threshold (answered with a label)."""
    top = probabilities.argmax(axis=1)
    limits = np.array([per_label[name]["threshold"] for name in classes])
    return probabilities[np.arange(len(top)), top] >= limits[top]


def encode_array(array: np.ndarray) -> dict:
    """A float32 array as JSON: shape and little-endian bytes in base64 (a list of 262,144 floats is ~5 MB)."""
    data = np.ascontiguousarray(array, dtype="<f4")
    return {"dtype": "float32", "shape": list(data.shape), "base64": base64.b64encode(data.tobytes()).decode()}


def l2_normalised(features: np.ndarray) -> np.ndarray:
    """Each row scaled to unit length (a zero row stays zero)."""
    features = np.asarray(features, dtype=np.float64)
    return features / np.maximum(np.linalg.norm(features, axis=1, keepdims=True), _EPS)


@dataclass(frozen=True)
class OodDetector:
    """Shared-covariance Mahalanobis distance to the nearest class mean, with whitening folded into one matrix.

    distance(x)**2 = min_c (x - mu_c)^T P (x - mu_c) = min_c ||x W - mu_c W||**2 where P = W W^T (Cholesky).
    """

    whitening: np.ndarray  # [D, D]
    centres: np.ndarray  # [C, D]: the class means times the whitening matrix

    def distances(self, features: np.ndarray) -> np.ndarray:
        """Each row's Mahalanobis distance to the nearest class mean."""
        z = l2_normalised(features) @ self.whitening
        squared = ((z[:, None, :] - self.centres[None, :, :]) ** 2).sum(axis=2)
        return np.sqrt(squared.min(axis=1))


def fit_detector(features: np.ndarray, labels: np.ndarray, n_classes: int) -> OodDetector:
    """Class means and a Ledoit-Wolf shared covariance of the L2-normalised training features."""
    x = l2_normalised(features)
    labels = np.asarray(labels, dtype=int)
    means = np.stack([x[labels == c].mean(axis=0) for c in range(n_classes)])
    precision = LedoitWolf().fit(x - means[labels]).precision_
    whitening = np.linalg.cholesky((precision + precision.T) / 2)
    return OodDetector(whitening=whitening, centres=means @ whitening)


def fit_ood(train_features: np.ndarray, train_labels: np.ndarray, valid_features: np.ndarray,
            classes: list[str], keep: float = 0.95) -> tuple[dict, np.ndarray, OodDetector]:
    """calibration.json's ood block (the detector, the distance that keeps `keep` of the validation images),
    which validation images it keeps, and the detector itself."""
    detector = fit_detector(train_features, train_labels, len(classes))
    valid = detector.distances(valid_features)
    train = detector.distances(train_features)
    threshold = float(np.quantile(valid, keep, method="higher"))
    return {
        "method": OOD_METHOD,
        "features": "penultimate",
        "dim": int(detector.whitening.shape[0]),
        "keep": keep,
        "threshold": threshold,
        "whitening": encode_array(detector.whitening),
        "centres": encode_array(detector.centres),
        "fit": {"n_train": int(len(train_features)), "n_valid": int(len(valid_features)),
                "valid_kept": float((valid <= threshold).mean()) if len(valid) else None,
                "train_kept": float((train <= threshold).mean()) if len(train) else None,
                "valid_distance_median": float(np.median(valid)) if len(valid) else None},
    }, valid <= threshold, detector


def fit(probabilities: np.ndarray, labels: np.ndarray, classes: list[str], *, mode: str = "f1",
        target_precision: float = 0.95, ood: dict | None = None,
        in_distribution: np.ndarray | None = None) -> tuple[dict, Reliability, Reliability]:
    """Fit everything on the validation split: calibration.json's content and the before/after reliability.

    ood is fit_ood's block (None: no detector) and in_distribution which validation images it keeps; coverage
    counts an image as answered when it is both kept and above its label's threshold.
    """
    logits = logits_of(probabilities)
    labels = np.asarray(labels, dtype=int)
    temperature = fit_temperature(logits, labels)
    calibrated = scaled(logits, temperature)
    before, after = reliability(scaled(logits, 1.0), labels), reliability(calibrated, labels)
    per_label = thresholds(calibrated, labels, classes, mode, target_precision)
    answered = verdicts(calibrated, classes, per_label)
    if in_distribution is not None:
        answered = answered & in_distribution
    correct = calibrated.argmax(axis=1) == labels
    doc = {
        "format_version": FORMAT_VERSION,
        "classes": list(classes),
        "temperature": temperature,
        "threshold_mode": mode,
        "target_precision": target_precision if mode == "precision" else None,
        "thresholds": per_label,
        "ood": ood,
        "validation": {
            "n_images": int(len(labels)),
            "ece_bins": ECE_BINS,
            "ece_before": before.ece,
            "ece_after": after.ece,
            "nll_before": nll(logits, labels),
            "nll_after": nll(logits, labels, temperature),
            "accuracy": float(correct.mean()) if len(labels) else None,
            "coverage": float(answered.mean()) if len(labels) else None,
            "selective_accuracy": float(correct[answered].mean()) if answered.any() else None,
        },
    }
    return doc, before, after
