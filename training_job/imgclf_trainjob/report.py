"""The run's report: validation metrics, confusion matrix, top losses and learning curve."""

from __future__ import annotations

import json
import math
import time
from dataclasses import dataclass
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # training containers have no display

import matplotlib.pyplot as plt  # noqa: E402 - must follow the backend choice
import numpy as np  # noqa: E402
from fastai.learner import Learner  # noqa: E402
from matplotlib.ticker import MaxNLocator  # noqa: E402
from PIL import Image  # noqa: E402

from imgclf_trainjob.learner import TrainHistory  # noqa: E402

MAX_PLOTTED = 16


@dataclass
class Evaluation:
    """Predictions on the validation set, row i being the i-th validation image."""

    classes: list[str]
    rel_paths: list[str]
    probs: np.ndarray
    targets: np.ndarray
    losses: np.ndarray

    @property
    def preds(self) -> np.ndarray:
        """The predicted class index of each image."""
        return self.probs.argmax(axis=1)


def evaluate(learn: Learner, root: Path) -> Evaluation:
    """Predict the whole validation set with fastai (probabilities, targets, per-image losses)."""
    probs, targets, losses = learn.get_preds(dl=learn.dls.valid, with_loss=True)
    rel_paths = [Path(item).relative_to(root).as_posix() for item in learn.dls.valid.items]
    return Evaluation(list(learn.dls.vocab), rel_paths, probs.float().numpy(),
                      targets.numpy().astype(int), losses.float().numpy())


def evaluate_tta(learn: Learner, ev: Evaluation) -> dict:
    """The validation error with fastai's test-time augmentation (4 augmented passes blended with the plain
    one), next to the plain error that the exported model has."""
    start = time.perf_counter()
    probs, targets = learn.tta(dl=learn.dls.valid)
    preds = probs.float().numpy().argmax(axis=1)
    return {"error_rate": float((preds != targets.numpy()).mean()), "error_rate_plain": float(
        (ev.preds != ev.targets).mean()), "seconds": round(time.perf_counter() - start, 3),
        "in_model": False}


def confusion_counts(ev: Evaluation) -> np.ndarray:
    """Counts with rows = actual class and columns = predicted class, in vocab order."""
    counts = np.zeros((len(ev.classes), len(ev.classes)), dtype=int)
    np.add.at(counts, (ev.targets, ev.preds), 1)
    return counts


def per_class_scores(counts: np.ndarray, classes: list[str]) -> dict:
    """Precision, recall and support per class (null precision when the class was never predicted)."""
    scores = {}
    for i, label in enumerate(classes):
        predicted, actual, hits = counts[:, i].sum(), counts[i, :].sum(), counts[i, i]
        scores[label] = {
            "precision": float(hits / predicted) if predicted else None,
            "recall": float(hits / actual) if actual else None,
            "support": int(actual),
        }
    return scores


def build_metrics(ev: Evaluation, history: TrainHistory, n_train: int) -> dict:
    """The content of metrics.json."""
    counts = confusion_counts(ev)
    n_valid = len(ev.targets)
    error = float((ev.preds != ev.targets).mean()) if n_valid else math.nan
    return {
        "classes": ev.classes,
        "n_train": n_train,
        "n_valid": n_valid,
        "error_rate": error,
        "accuracy": 1.0 - error,
        "valid_loss": float(ev.losses.mean()),
        "epochs": history.epochs,
        "train_loss_per_epoch": [e.get("train_loss") for e in history.epochs],
        "valid_loss_per_epoch": [e.get("valid_loss") for e in history.epochs],
        "epoch_wall_s": [e["wall_s"] for e in history.epochs],
        "lr": history.lr,
        "lr_find": history.lr_find,
        "best_epoch": history.best_epoch,
        "train_seconds": history.seconds,
        "per_class": per_class_scores(counts, ev.classes),
        "confusion_matrix": {"classes": ev.classes, "rows": "actual", "columns": "predicted",
                             "counts": counts.tolist()},
    }


def s3_location(dataset_uri: str | None, env_prefix: str | None) -> tuple[str, str] | None:
    """(bucket, key prefix) of the dataset when it is known to come from S3."""
    for uri in (dataset_uri, env_prefix):
        if uri and uri.startswith("s3://"):
            bucket, _, key = uri[len("s3://"):].partition("/")
            if bucket:
                return bucket, key.strip("/")
    return None


def _entry(ev: Evaluation, i: int, kind: str, s3: tuple[str, str] | None) -> dict:
    """One top_losses.json row."""
    pred, actual = int(ev.preds[i]), int(ev.targets[i])
    entry = {
        "path": ev.rel_paths[i],
        "actual": ev.classes[actual],
        "predicted": ev.classes[pred],
        "probability": float(ev.probs[i, pred]),
        "actual_probability": float(ev.probs[i, actual]),
        "loss": float(ev.losses[i]),
        "kind": kind,
    }
    if s3:
        key = f"{s3[1]}/{ev.rel_paths[i]}" if s3[1] else ev.rel_paths[i]
        entry.update({"s3_key": key, "s3_uri": f"s3://{s3[0]}/{key}"})
    return entry


def top_losses(ev: Evaluation, k: int, s3: tuple[str, str] | None = None) -> list[dict]:
    """The k most confidently wrong images (by loss), then the k least confident of the rest."""
    wrong = [i for i in np.argsort(-ev.losses, kind="stable") if ev.preds[i] != ev.targets[i]][:k]
    listed = set(wrong)
    confidence = ev.probs.max(axis=1)
    uncertain = [i for i in np.argsort(confidence, kind="stable") if i not in listed][:k]
    return ([_entry(ev, int(i), "wrong", s3) for i in wrong]
            + [_entry(ev, int(i), "uncertain", s3) for i in uncertain])


def plot_confusion_matrix(counts: np.ndarray, classes: list[str], path: Path) -> None:
    """Save the confusion matrix as an annotated heat map."""
    size = max(4.0, 0.6 * len(classes) + 2)
    fig, ax = plt.subplots(figsize=(size, size), layout="constrained")
    ax.imshow(counts, cmap="Blues")
    ax.set(xticks=range(len(classes)), yticks=range(len(classes)), xlabel="Predicted", ylabel="Actual",
           title="Confusion matrix (validation)")
    ax.set_xticklabels(classes, rotation=45, ha="right")
    ax.set_yticklabels(classes)
    threshold = counts.max() / 2 if counts.size else 0
    for (row, col), value in np.ndenumerate(counts):
        color = "white" if value > threshold else "black"
        ax.text(col, row, str(value), ha="center", va="center", color=color)
    _save(fig, path)


def plot_learning_curve(history: TrainHistory, path: Path) -> None:
    """Save the smoothed training loss per batch with validation loss and error rate per epoch."""
    fig, (loss_ax, err_ax) = plt.subplots(1, 2, figsize=(11, 4), layout="constrained")
    n_epochs = len(history.epochs)
    loss_ax.plot(range(1, len(history.batch_losses) + 1), history.batch_losses, label="train (smoothed)")
    if n_epochs:
        per_epoch = len(history.batch_losses) / n_epochs
        ends = [per_epoch * (i + 1) for i in range(n_epochs)]
        loss_ax.plot(ends, [e.get("valid_loss") for e in history.epochs], "o-", label="valid")
        err_ax.plot(range(1, n_epochs + 1), [e.get("error_rate") for e in history.epochs], "o-")
    loss_ax.set(xlabel="batch", ylabel="loss", title="Loss")
    loss_ax.legend()
    err_ax.set(xlabel="epoch", ylabel="error rate", title="Validation error rate")
    err_ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    _save(fig, path)


def plot_top_losses(entries: list[dict], root: Path, path: Path) -> None:
    """Save a grid of the top-loss images titled predicted/actual/probability/loss."""
    shown = entries[:MAX_PLOTTED]
    cols = max(1, min(4, len(shown)))
    rows = max(1, math.ceil(len(shown) / cols))
    fig, axes = plt.subplots(rows, cols, figsize=(3.2 * cols, 3.4 * rows), squeeze=False,
                             layout="constrained")
    for ax in axes.flat:
        ax.axis("off")
    for ax, entry in zip(axes.flat, shown, strict=False):
        with Image.open(root / entry["path"]) as image:
            image.draft("RGB", (256, 256))
            ax.imshow(image.convert("RGB"))
        ax.set_title(f"{entry['kind']}: {entry['predicted']}/{entry['actual']}\n"
                     f"p={entry['probability']:.2f} loss={entry['loss']:.2f}", fontsize=9)
    if not shown:
        axes[0, 0].text(0.5, 0.5, "no validation images", ha="center")
    fig.suptitle("Top losses (predicted/actual)")
    _save(fig, path)


def plot_reliability(before, after, path: Path) -> None:
    """The reliability diagram: accuracy against confidence per bin, before and after temperature scaling."""
    fig, ax = plt.subplots(figsize=(5, 5), layout="constrained")
    centres = (before.edges[:-1] + before.edges[1:]) / 2
    width = before.edges[1] - before.edges[0]
    ax.bar(centres, np.nan_to_num(after.accuracy), width=width * 0.9, alpha=0.5, edgecolor="black",
           label=f"calibrated (ECE {after.ece:.3f})")
    ax.plot(before.confidence, before.accuracy, "o--", color="tab:red", label=f"raw softmax (ECE {before.ece:.3f})")
    ax.plot([0, 1], [0, 1], ":", color="grey", label="perfect calibration")
    ax.set(xlim=(0, 1), ylim=(0, 1), xlabel="confidence (top-1 probability)", ylabel="accuracy",
           title="Reliability on the validation split")
    ax.legend(loc="upper left")
    _save(fig, path)


def _save(fig, path: Path) -> None:
    """Write a figure as PNG and free it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)


def json_safe(data):
    """The data with NaN and infinities (a diverged loss) as null, which strict JSON allows."""
    if isinstance(data, float):
        return data if math.isfinite(data) else None
    if isinstance(data, dict):
        return {k: json_safe(v) for k, v in data.items()}
    if isinstance(data, list | tuple):
        return [json_safe(v) for v in data]
    return data


def write_json(path: Path, data) -> None:
    """Write JSON (UTF-8, labels kept readable) atomically."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    text = json.dumps(json_safe(data), indent=2, ensure_ascii=False, allow_nan=False)
    tmp.write_text(text + "\n", encoding="utf-8")
    tmp.replace(path)
