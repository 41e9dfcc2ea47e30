"""audit.json: likely label errors, outliers and near-duplicates over the whole dataset, not only the validation fifth.

Every image needs probabilities from a model that did not learn its label. ``probe`` (the default) takes every
image's features from the pretrained backbone before fine-tuning, which has seen none of this dataset's labels,
and cross-fits a logistic regression on them (scikit-learn's ``cross_val_predict``, ``audit_folds`` folds), so
each image's probabilities come from a probe that did not train on it. (A run without pretrained weights uses the
fine-tuned network's features instead, which have seen the labels; audit.json says which.) cleanlab ranks the
label issues from those out-of-sample probabilities (confident learning, Northcutt et al. 2021) and scores each
image's label quality; the suggested label is the probe's top label. Images the run's out-of-distribution
detector would call out of distribution are outliers: candidates for deletion rather than relabelling.
Near-duplicate groups come from the dataset plan (neardup.py), found before the split.

Measured on ants-bees with 24 of 243 training labels flipped: the fine-tuned network's own (in-sample)
probabilities put 8 of them in the 48 lowest-quality images; the probe on fine-tuned features 23 (cleanlab
flagged 16-21, 11-17 of them right); the probe on pretrained features 23 (cleanlab flagged 29, 22 of them right).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

AUDIT_JSON = "audit.json"
FORMAT_VERSION = 1
MODES = ("off", "probe")
LABEL_ERROR, OUTLIER, NEAR_DUPLICATE = "label_error", "outlier", "near_duplicate"


def l2(features: np.ndarray) -> np.ndarray:
    features = np.asarray(features, dtype=np.float64)
    return features / np.maximum(np.linalg.norm(features, axis=1, keepdims=True), 1e-12)


def out_of_sample_probabilities(features: np.ndarray, labels: np.ndarray, n_classes: int, folds: int = 5,
                                seed: int = 0) -> np.ndarray:
    """Each image's class probabilities from a logistic-regression probe fitted on the other folds."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import StratifiedKFold, cross_val_predict

    labels = np.asarray(labels, dtype=int)
    smallest = int(np.bincount(labels, minlength=n_classes).min())
    folds = max(2, min(folds, smallest))
    probe = LogisticRegression(C=1.0, max_iter=2000)
    return cross_val_predict(probe, l2(features), labels, method="predict_proba",
                             cv=StratifiedKFold(folds, shuffle=True, random_state=seed))


@dataclass(frozen=True)
class LabelIssues:
    """cleanlab's verdict on every image: flagged or not, its label quality (low: likely wrong) and a suggestion."""

    flagged: np.ndarray  # bool [N]
    quality: np.ndarray  # [N], in [0, 1]
    suggested: np.ndarray  # int [N]


def label_issues(labels: np.ndarray, pred_probs: np.ndarray) -> LabelIssues:
    """Confident learning's label issues and self-confidence scores from out-of-sample probabilities."""
    from cleanlab.filter import find_label_issues
    from cleanlab.rank import get_label_quality_scores

    labels = np.asarray(labels, dtype=int)
    flagged = find_label_issues(labels, pred_probs, filter_by="prune_by_noise_rate")
    quality = get_label_quality_scores(labels, pred_probs, method="self_confidence")
    return LabelIssues(flagged=np.asarray(flagged, dtype=bool), quality=np.asarray(quality),
                       suggested=np.asarray(pred_probs).argmax(axis=1))


def backbone_features(body, plan, img_size: int, mean, std, batch: int = 64) -> np.ndarray:
    """The pretrained backbone's average-pooled features of every image (train, then valid), before fine-tuning.

    The images go through model.json's recipe (the validation resize and centre crop), so the probe sees what the
    classifier would see, normalised as the backbone's weights expect.
    """
    import torch

    from imgclf_trainjob import preprocess

    samples = [*plan.train, *plan.valid]
    device = next(body.parameters()).device
    shift = torch.tensor(mean, dtype=torch.float32, device=device).view(1, -1, 1, 1)
    scale = torch.tensor(std, dtype=torch.float32, device=device).view(1, -1, 1, 1)
    was_training = body.training
    body.eval()
    out = []
    try:
        with torch.no_grad():
            for start in range(0, len(samples), batch):
                images = preprocess.preprocess_files([plan.root / s.rel_path for s in samples[start:start + batch]],
                                                     img_size)
                x = (torch.from_numpy(images).to(device) - shift) / scale
                out.append(body(x).float().mean(dim=(2, 3)).cpu().numpy())
    finally:
        body.train(was_training)
    return np.concatenate(out) if out else np.zeros((0, 0))


def build(rel_paths: Sequence[str], labels: np.ndarray, classes: Sequence[str], splits: Sequence[str],
          pred_probs: np.ndarray, issues: LabelIssues, groups: list[list[int]], outlier: np.ndarray,
          ood_distance: np.ndarray | None, s3: tuple[str, str] | None = None, features: str = "pretrained") -> dict:
    """audit.json: the ranked findings and the summary that metrics.json carries."""
    labels = np.asarray(labels, dtype=int)
    group_of = {i: g for g, members in enumerate(groups) for i in members}
    findings = []

    def finding(i: int, kind: str, score: float, **extra) -> dict:
        item = {"path": rel_paths[i], "kind": kind, "label": classes[labels[i]], "split": splits[i],
                "score": round(float(score), 6),
                "probabilities": {c: round(float(p), 4) for c, p in zip(classes, pred_probs[i], strict=True)}}
        if s3:  # as top_losses.json: (bucket, dataset prefix)
            key = f"{s3[1]}/{rel_paths[i]}" if s3[1] else rel_paths[i]
            item.update({"s3_key": key, "s3_uri": f"s3://{s3[0]}/{key}"})
        if i in group_of:
            item["group"] = group_of[i]
        return item | extra

    for i in np.flatnonzero(issues.flagged):
        findings.append(finding(int(i), LABEL_ERROR, 1 - issues.quality[i],
                                suggested_label=classes[int(issues.suggested[i])]))
    for i in np.flatnonzero(outlier):
        distance = float(ood_distance[i]) if ood_distance is not None else None
        findings.append(finding(int(i), OUTLIER, 1 - issues.quality[i] if distance is None else distance,
                                ood_distance=distance))
    for g, members in enumerate(groups):
        group_labels = sorted({classes[labels[i]] for i in members})
        for i in members:
            findings.append(finding(i, NEAR_DUPLICATE, len(members), group=g, group_size=len(members),
                                    cross_label=len(group_labels) > 1, group_labels=group_labels,
                                    split_crossing=len({splits[j] for j in members}) > 1))
    order = {LABEL_ERROR: 0, OUTLIER: 1, NEAR_DUPLICATE: 2}
    findings.sort(key=lambda f: (order[f["kind"]], -f["score"], f["path"]))
    noise = {}
    for c, name in enumerate(classes):
        given = labels == c
        noise[name] = round(float((issues.flagged & given).sum() / max(int(given.sum()), 1)), 4)
    summary = {
        "n_images": len(rel_paths),
        "counts": {kind: sum(f["kind"] == kind for f in findings) for kind in order},
        "near_duplicate_groups": len(groups),
        "cross_label_groups": sum(len({labels[i] for i in m}) > 1 for m in groups),
        "estimated_noise_rate": noise,
        "probe_accuracy": round(float((pred_probs.argmax(axis=1) == labels).mean()), 4) if len(labels) else None,
    }
    return {"format_version": FORMAT_VERSION, "classes": list(classes), "features": features, "summary": summary,
            "findings": findings}
