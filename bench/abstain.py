"""Benchmark: does the classifier know when not to answer?

Run from the repository root: ``.venv/bin/python bench/abstain.py [--model DIR]``. One model is trained with
training_job/train.py on ants-bees (train/valid as given; EfficientNet-Lite0 from the offline package weights,
the job's default recipe otherwise), unless --model names the model dir of an earlier run. Then

  in-distribution (ID):      the 153 photos of ants-bees/valid;
  out-of-distribution (OOD): flowers from the shared data sets (60 of each of the five kinds) and 100 drawn shapes
                             (circles, squares, triangles), 400 images that are neither ants nor bees;

every image goes through the same decode, and two scores rank how unlike the training data it is:

  (a) the baseline fastai gives: 1 - maximum softmax probability of the uncalibrated learner (export.pkl,
      ``learn.get_preds``), the number a fastai user has to go on;
  (b) imgclf: the out-of-distribution score the classifier serves (the training job's detector on model.onnx's
      features, through imgclf.inference exactly as the classifier loads it).

Printed: AUROC and FPR at 95% TPR (the share of OOD images still taken for ants or bees when 95% of ID images
are kept) for both, per OOD kind; ECE (15 bins) of the ID probabilities before (fastai's softmax) and after
(imgclf's temperature-scaled) calibration; coverage and selective accuracy of the shipped verdicts on ID (share
answered with a label, accuracy on those) and how many OOD images the shipped verdicts answer "unknown"; the
int8 model's verdict agreement where the job shipped one; and classify_overhead, the detector's cost on the
classifier's per-image work (decode, preprocess, forward pass, calibration, verdict) measured batch by batch
in turn with and without it (fetch and write, which the detector does not touch, left out, so the figure is an
upper bound on the handler's). The last line is one JSON object with the headline numbers.
"""

from __future__ import annotations

import argparse
import dataclasses
import io
import json
import os
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np

REPO_ROOT = Path(__file__).resolve().parents[1]
DATASETS = (REPO_ROOT / ".." / "shared" / "datasets").resolve()
TRAIN_SCRIPT = REPO_ROOT / "training_job" / "train.py"
sys.path.insert(0, str(REPO_ROOT / "training_job"))  # the job's own ECE, so both sides are measured alike

FLOWERS_PER_KIND = 60
SHAPES = 100
BATCH = 10
ROUNDS = 3
KEEP = 0.95


def train(workdir: Path) -> Path:
    """Train the bench's model with train.py on ants-bees as given; return its model dir."""
    model_dir = workdir / "model"
    command = [sys.executable, str(TRAIN_SCRIPT), "--train", str(DATASETS / "ants-bees"), "--model-dir",
               str(model_dir), "--output-data-dir", str(workdir / "output"), "--arch", "tf_efficientnet_lite0",
               "--weights", "efficientnet-lite0-package", "--num-workers", "0",
               # The settings its recorded figures were taken with (the job's defaults before its recipe).
               "--recipe", "classic", "--freeze-bn-stats", "true", "--img-size", "224"]
    print("training tf_efficientnet_lite0 on ants-bees (train/valid as given, 3+1 epochs)...",
          flush=True)
    started = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True, env=os.environ.copy(), check=False)
    if done.returncode != 0:
        sys.exit(f"train.py failed ({done.returncode}):\n{(done.stdout + done.stderr)[-4000:]}")
    print(f"trained in {time.perf_counter() - started:.0f} s", flush=True)
    return model_dir


def jpeg(image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", quality=90)
    return buffer.getvalue()


def image_sets() -> tuple[list[bytes], np.ndarray, dict[str, list[bytes]], list[str]]:
    """ID photos and their labels (folder names), the OOD images by kind, and the ID classes."""
    from imgclf_local.samples import SHAPES as SHAPE_KINDS
    from imgclf_local.samples import shape_image

    valid = DATASETS / "ants-bees" / "valid"
    classes = sorted(p.name for p in valid.iterdir() if p.is_dir())
    id_paths = sorted(p for c in classes for p in (valid / c).glob("*.jpg"))
    flower_kinds = sorted(p for p in (DATASETS / "flowers").iterdir() if p.is_dir())
    flowers = [p for kind in flower_kinds for p in sorted(kind.glob("*.jpg"))[:FLOWERS_PER_KIND]]
    if not id_paths or not flowers:
        sys.exit(f"the shared data sets are missing under {DATASETS}")
    shapes = [jpeg(shape_image(SHAPE_KINDS[i % len(SHAPE_KINDS)], 1000 + i, 224)) for i in range(SHAPES)]
    labels = np.array([classes.index(p.parent.name) for p in id_paths])
    return ([p.read_bytes() for p in id_paths], labels,
            {"flowers": [p.read_bytes() for p in flowers], "shapes": shapes}, classes)


def decoded(blobs: list[bytes]) -> list:
    from imgclf import images

    return [images.decode(blob, max_pixels=40_000_000) for blob in blobs]


def fastai_probabilities(model_dir: Path, pictures: list) -> np.ndarray:
    """(a) the exported learner's own softmax, uncalibrated."""
    from fastai.learner import load_learner

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        learn = load_learner(model_dir / "export.pkl", cpu=True)
        with learn.no_logging():
            probabilities, _ = learn.get_preds(dl=learn.dls.test_dl(pictures, num_workers=0))
    return probabilities.numpy()


def imgclf_model(model_dir: Path, precision: str = "fp32"):
    """(b) the model as the classifier loads it: model.json, the ONNX backend and calibration.json."""
    from imgclf.inference import Calibration, LoadedModel, ModelMetadata, load_backend

    metadata = ModelMetadata.load(model_dir / "model.json")
    backend = load_backend("onnx", model_dir, metadata, precision=precision)
    calibration = Calibration.load(model_dir / "calibration.json", metadata.classes)
    return LoadedModel(version=model_dir.name, backend=backend, metadata=metadata, calibration=calibration)


def predictions(model, pictures: list) -> list:
    prepared = [model.prepare(p) for p in pictures]
    return [p for i in range(0, len(prepared), BATCH) for p in model.predict(prepared[i:i + BATCH])]


def auroc_and_fpr(id_scores: np.ndarray, ood_scores: np.ndarray) -> tuple[float, float]:
    """AUROC with OOD as the positive class (higher score: more unusual), and the share of OOD images scored at
    or below the score that keeps KEEP of the ID images (FPR at 95% TPR, ID being what is kept)."""
    from sklearn.metrics import roc_auc_score

    truth = np.r_[np.zeros(len(id_scores)), np.ones(len(ood_scores))]
    auroc = roc_auc_score(truth, np.r_[id_scores, ood_scores])
    cut = np.quantile(id_scores, KEEP, method="higher")
    return float(auroc), float((ood_scores <= cut).mean())


def overhead(model, blobs: list[bytes]) -> dict:
    """Seconds per image of the classifier's per-image work with the detector and without, batch by batch in turn."""
    from imgclf.inference.backends import ONNX_OUTPUT

    plain = dataclasses.replace(model, calibration=dataclasses.replace(model.calibration, ood=None))
    # Without the detector the forward pass need not hand back the features either.
    plain_backend = model.backend.__class__.__new__(model.backend.__class__)
    plain_backend.__dict__.update(model.backend.__dict__, _outputs=[ONNX_OUTPUT])
    plain = dataclasses.replace(plain, backend=plain_backend)
    runs = {"with": model, "without": plain}
    seconds = dict.fromkeys(runs, 0.0)
    batches = [blobs[i:i + BATCH] for i in range(0, len(blobs), BATCH)]
    for n, batch in enumerate(batches * ROUNDS):
        order = list(runs.items()) if n % 2 else list(runs.items())[::-1]  # neither always goes first
        for name, run in order:
            started = time.perf_counter()
            run.predict([run.prepare(p) for p in decoded(batch)])
            if n:  # the first batch warms up
                seconds[name] += time.perf_counter() - started
    images = sum(len(b) for b in batches) * ROUNDS - len(batches[0])
    with_s, without_s = seconds["with"] / images, seconds["without"] / images
    # The detector's own arithmetic, alone: whiten, distance to each centre, on a batch's features.
    features = model.backend.outputs([model.prepare(p) for p in decoded(batches[0])]).features
    started, repeats = time.perf_counter(), 200
    for _ in range(repeats):
        model.calibration.ood.scores(features)
    detector_s = (time.perf_counter() - started) / repeats / len(features)
    return {"with_ms": 1000 * with_s, "without_ms": 1000 * without_s, "overhead": with_s / without_s - 1,
            "detector_ms": 1000 * detector_s}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", type=Path, help="the model dir of an earlier train.py run (default: train one)")
    args = parser.parse_args()
    from imgclf_trainjob.calibration import ece

    id_blobs, id_labels, ood_blobs, classes = image_sets()
    print(f"ID: {len(id_blobs)} ants-bees/valid photos; OOD: "
          + ", ".join(f"{len(v)} {k}" for k, v in ood_blobs.items()), flush=True)
    with tempfile.TemporaryDirectory(prefix="imgclf-abstain-") as tmp:
        model_dir = args.model or train(Path(tmp))
        model = imgclf_model(model_dir)
        if tuple(classes) != model.classes:
            sys.exit(f"the model's classes {model.classes} are not ants-bees' {classes}")
        if model.calibration.ood is None:
            sys.exit("the model has no out-of-distribution detector (trained before it existed?)")
        id_pictures = decoded(id_blobs)
        ood_pictures = {kind: decoded(blobs) for kind, blobs in ood_blobs.items()}
        all_ood = [p for pictures in ood_pictures.values() for p in pictures]

        base_id = fastai_probabilities(model_dir, id_pictures)
        base_ood = fastai_probabilities(model_dir, all_ood)
        ours_id = predictions(model, id_pictures)
        ours_ood = predictions(model, all_ood)

        kinds = np.concatenate([[kind] * len(p) for kind, p in ood_pictures.items()])
        msp_id, msp_ood = 1 - base_id.max(axis=1), 1 - base_ood.max(axis=1)
        score_id = np.array([p.ood_score for p in ours_id])
        score_ood = np.array([p.ood_score for p in ours_ood])
        auroc_msp, fpr_msp = auroc_and_fpr(msp_id, msp_ood)
        auroc, fpr = auroc_and_fpr(score_id, score_ood)
        print(f"{'':28s}{'AUROC':>8s}{'FPR@95TPR':>11s}")
        print(f"{'(a) fastai max softmax':28s}{auroc_msp:8.3f}{fpr_msp:11.3f}")
        print(f"{'(b) imgclf detector':28s}{auroc:8.3f}{fpr:11.3f}")
        for kind in ood_pictures:
            a = auroc_and_fpr(msp_id, msp_ood[kinds == kind])
            b = auroc_and_fpr(score_id, score_ood[kinds == kind])
            print(f"  {kind:26s}(a) {a[0]:.3f} / {a[1]:.3f}   (b) {b[0]:.3f} / {b[1]:.3f}")

        calibrated_id = np.array([[p.probabilities[c] for c in classes] for p in ours_id])
        ece_before, ece_after = ece(base_id, id_labels), ece(calibrated_id, id_labels)
        answered = np.array([p.verdict == "label" for p in ours_id])
        correct = np.array([classes.index(p.label) for p in ours_id]) == id_labels
        coverage = float(answered.mean())
        selective_accuracy = float(correct[answered].mean()) if answered.any() else None
        ood_unknown = {kind: float(np.mean([p.verdict == "unknown" for p, k in zip(ours_ood, kinds, strict=True)
                                            if k == kind])) for kind in ood_pictures}
        reasons = {r: sum(p.unknown_reason == r for p in ours_ood) for r in ("out_of_distribution", "low_confidence")}
        print(f"temperature {model.calibration.temperature:.3f}: ECE on ID {ece_before:.4f} (fastai softmax) -> "
              f"{ece_after:.4f} (imgclf calibrated)")
        print(f"shipped verdicts on ID: coverage {coverage:.3f}, selective accuracy {selective_accuracy:.3f} "
              f"(accuracy on all {float(correct.mean()):.3f})")
        print("shipped verdicts on OOD, share answered unknown: "
              + ", ".join(f"{k} {v:.3f}" for k, v in ood_unknown.items()) + f"; reasons {reasons}")
        print(f"fastai answers every OOD image with ants or bees; at max softmax >= 0.5 that is "
              f"{float((base_ood.max(axis=1) >= 0.5).mean()):.3f} of them")

        int8_agreement = None
        if (model_dir / "model.int8.onnx").is_file():
            int8 = imgclf_model(model_dir, "int8")
            pairs = list(zip(predictions(int8, id_pictures + all_ood), ours_id + ours_ood, strict=True))
            int8_agreement = float(np.mean([a.verdict == b.verdict and a.unknown_reason == b.unknown_reason
                                            for a, b in pairs]))
            print(f"int8 model: same verdict and reason as fp32 on {int8_agreement:.3f} of the {len(pairs)} images")

        timing = overhead(model, id_blobs + [b for blobs in ood_blobs.values() for b in blobs][:100])
        print(f"per-image classifier work: {timing['with_ms']:.2f} ms with the detector, {timing['without_ms']:.2f} ms "
              f"without ({100 * timing['overhead']:+.1f}%); the detector's arithmetic alone "
              f"{timing['detector_ms']:.3f} ms per image")

    print(json.dumps({
        "auroc_msp": round(auroc_msp, 4), "auroc": round(auroc, 4),
        "fpr_at_95tpr_msp": round(fpr_msp, 4), "fpr_at_95tpr": round(fpr, 4),
        "ece_before": round(ece_before, 4), "ece_after": round(ece_after, 4),
        "coverage": round(coverage, 4),
        "selective_accuracy": None if selective_accuracy is None else round(selective_accuracy, 4),
        "classify_overhead": round(timing["overhead"], 4),
        "detector_ms_per_image": round(timing["detector_ms"], 4),
        "ood_unknown_share": {k: round(v, 4) for k, v in ood_unknown.items()},
        "int8_verdict_agreement": None if int8_agreement is None else round(int8_agreement, 4),
        "n_id": len(id_blobs), "n_ood": len(all_ood),
    }))


if __name__ == "__main__":
    main()
