"""Benchmark: finding wrong labels and near-duplicates, against the review list fastai's top_losses gives.

Run from the repository root: ``.venv/bin/python bench/label_errors.py``. Every training is
training_job/train.py with its defaults (EfficientNet-Lite0 from the offline package weights), on ants-bees as
given (train/ and valid/), with a seeded 10% of the training images moved to the other label (valid/ kept clean):

  (a) the baseline: the run with ``audit=off``; its review list is top_losses.json, the validation split's top
      losses (what fastai's ``top_losses`` / ``ClassificationInterpretation`` shows);
  (b) imgclf: the same run with the default audit; its list is audit.json's label errors.

Each list is cut to twice the number of planted errors; recall is the share of planted errors on it, precision
the share of the list that is planted. Then (b)'s suggestions on that list are applied as relabels, the job
retrains on the cleaned data, and its validation error is compared with the noisy run's and with a run on the
clean data. ``audit_cost_ratio`` is (b)'s wall time over (a)'s.

Near-duplicates: 100 copies of flowers photos (25 each resized to half, JPEG quality 40, cropped by 10%,
mirrored) are added to the flowers set and grouped by the same code the job runs before its split
(imgclf_trainjob.neardup). ``near_dup_recall`` is the share of copies grouped with their photo;
``near_dup_false_groups`` counts groups that join a copy to anything else, plus groups among the set's own photos
that an independent check does not confirm as one photograph (the correlation of 64 x 64 grey thumbnails, either
way round, below 0.8). The last line is one JSON object with the figures.
"""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO_ROOT = Path(__file__).resolve().parents[1]
DATASETS = (REPO_ROOT / ".." / "shared" / "datasets").resolve()
TRAIN_SCRIPT = REPO_ROOT / "training_job" / "train.py"
sys.path.insert(0, str(REPO_ROOT / "training_job"))  # the job's own near-duplicate code

NOISE = 0.10
SEED = 15
N_COPIES = 100
COPY_KINDS = ("resize", "jpeg40", "crop10", "mirror")


def noisy_dataset(root: Path) -> list[str]:
    """ants-bees linked under root with a seeded tenth of train/ under the other label; the moved paths."""
    source = DATASETS / "ants-bees"
    classes = sorted(p.name for p in (source / "train").iterdir() if p.is_dir())
    train = sorted((source / "train").glob("*/*.jpg"))
    moved = set(random.Random(SEED).sample(range(len(train)), round(NOISE * len(train))))  # nosec B311
    planted = []
    for i, path in enumerate(train):
        label = path.parent.name
        if i in moved:
            label = classes[(classes.index(label) + 1) % len(classes)]
            planted.append(f"train/{label}/{path.name}")
        _link(path, root / "train" / label / path.name)
    for path in sorted((source / "valid").glob("*/*.jpg")):
        _link(path, root / "valid" / path.parent.name / path.name)
    return planted


def _link(target: Path, link: Path) -> None:
    link.parent.mkdir(parents=True, exist_ok=True)
    link.symlink_to(target.resolve())


def train(data: Path, work: Path, *extra: str) -> tuple[float, Path]:
    """Run train.py on data; its wall time and its output data folder."""
    command = [sys.executable, str(TRAIN_SCRIPT), "--train", str(data), "--model-dir", str(work / "model"),
               "--output-data-dir", str(work / "output"), "--arch", "tf_efficientnet_lite0", "--weights",
               "efficientnet-lite0-package", "--num-workers", "0", "--int8", "false",
               # The settings its recorded figures were taken with (the job's defaults before its recipe).
               "--recipe", "classic", "--freeze-bn-stats", "true", "--img-size", "224", *extra]
    started = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True, env=os.environ.copy(), check=False)
    if done.returncode != 0:
        sys.exit(f"train.py {' '.join(extra)} failed ({done.returncode}):\n{(done.stdout + done.stderr)[-4000:]}")
    return time.perf_counter() - started, work / "output"


def error_rate(output: Path) -> float:
    return json.loads((output / "metrics.json").read_text())["error_rate"]


def scored(listed: list[str], planted: list[str]) -> tuple[float, float]:
    hits = len(set(listed) & set(planted))
    return hits / len(planted), (hits / len(listed) if listed else 0.0)


def cleaned(noisy: Path, root: Path, suggestions: dict[str, str]) -> None:
    """A copy of the noisy dataset (links) with the suggested relabels applied."""
    for link in sorted(noisy.glob("*/*/*.jpg")):
        rel = link.relative_to(noisy).as_posix()
        split, label, name = rel.split("/")
        _link(link.resolve(), root / split / suggestions.get(rel, label) / name)


def near_duplicates(work: Path) -> dict:
    from PIL import Image, ImageOps

    from imgclf_trainjob import neardup

    photos = sorted((DATASETS / "flowers").glob("*/*.jpg"))
    rng = random.Random(SEED)  # nosec B311
    sources = rng.sample(range(len(photos)), N_COPIES)
    names = [p.relative_to(DATASETS / "flowers").as_posix() for p in photos]
    copies: dict[int, int] = {}  # copy index -> photo index
    for n, i in enumerate(sources):
        image = Image.open(photos[i]).convert("RGB")
        kind = COPY_KINDS[n % len(COPY_KINDS)]
        w, h = image.size
        quality = 90
        if kind == "resize":
            image = image.resize((max(32, w // 2), max(32, h // 2)), Image.BILINEAR)
        elif kind == "jpeg40":
            quality = 40
        elif kind == "crop10":
            dx, dy = round(w * 0.05), round(h * 0.05)
            image = image.crop((dx, dy, w - dx, h - dy))
        else:
            image = ImageOps.mirror(image)
        target = work / "copies" / f"{kind}-{n:03d}.jpg"
        target.parent.mkdir(parents=True, exist_ok=True)
        image.save(target, "JPEG", quality=quality)
        copies[len(names)] = i
        names.append(str(target))
    started = time.perf_counter()
    paths = [DATASETS / "flowers" / n if not n.startswith("/") else Path(n) for n in names]
    hashes = neardup.hash_files(Path("/"), [str(p.resolve()).lstrip("/") for p in paths])
    groups = neardup.groups(hashes)
    seconds = time.perf_counter() - started
    group_of = {i: g for g, members in enumerate(groups) for i in members}
    found = sum(group_of.get(c, -1) == group_of.get(i, -2) for c, i in copies.items())
    false_with_copies = sum(
        1 for members in groups
        if any(c in copies for c in members)
        and any(m not in copies and m not in {copies[c] for c in members if c in copies} for m in members))
    own = [members for members in groups if not any(m in copies for m in members)]
    unconfirmed = [members for members in own
                   if min(_thumb_correlation(paths[members[0]], paths[j]) for j in members[1:]) < 0.8]
    return {"near_dup_recall": found / len(copies), "near_dup_false_groups": false_with_copies + len(unconfirmed),
            "near_dup_groups": len(groups), "near_dup_own_groups": len(own), "near_dup_seconds": seconds,
            "near_dup_images": len(paths)}


def _thumb_correlation(a: Path, b: Path) -> float:
    from PIL import Image

    def thumb(path: Path) -> np.ndarray:
        pixels = np.asarray(Image.open(path).convert("L").resize((64, 64), Image.BILINEAR), dtype=np.float64)
        return (pixels - pixels.mean()) / (pixels.std() + 1e-9)

    x, y = thumb(a), thumb(b)
    return max(float((x * y).mean()), float((x * y[:, ::-1]).mean()))


def main() -> None:
    if not (DATASETS / "ants-bees").is_dir() or not (DATASETS / "flowers").is_dir():
        sys.exit(f"the shared data sets are missing under {DATASETS}")
    with tempfile.TemporaryDirectory(prefix="imgclf-label-errors-") as tmp:
        work = Path(tmp)
        noisy = work / "noisy"
        planted = noisy_dataset(noisy)
        n_list = 2 * len(planted)
        print(f"ants-bees with {len(planted)} of its training labels moved; lists cut to {n_list}", flush=True)

        print("(a) train.py audit=off on the noisy data...", flush=True)
        plain_s, plain_out = train(noisy, work / "a", "--audit", "off")
        top = json.loads((plain_out / "top_losses.json").read_text())
        recall_baseline, precision_baseline = scored([e["path"] for e in top][:n_list], planted)

        print("(b) train.py with the default audit on the noisy data...", flush=True)
        audit_s, audit_out = train(noisy, work / "b")
        findings = json.loads((audit_out / "audit.json").read_text())["findings"]
        errors = [f for f in findings if f["kind"] == "label_error"][:n_list]
        recall, precision = scored([f["path"] for f in errors], planted)
        error_noisy = error_rate(audit_out)

        print("retraining on the data cleaned by (b)'s suggestions...", flush=True)
        clean_root = work / "cleaned"
        cleaned(noisy, clean_root, {f["path"]: f["suggested_label"] for f in errors})
        _, cleaned_out = train(clean_root, work / "c", "--audit", "off")
        print("training on the clean data...", flush=True)
        _, clean_out = train(DATASETS / "ants-bees", work / "d", "--audit", "off")
        error_after, error_clean = error_rate(cleaned_out), error_rate(clean_out)

        print("near-duplicates on flowers...", flush=True)
        dups = near_duplicates(work)

    print(f"{'':34s}{'recall':>8s}{'precision':>11s}")
    print(f"{'(a) validation top losses':34s}{recall_baseline:8.3f}{precision_baseline:11.3f}")
    print(f"{'(b) imgclf audit, label errors':34s}{recall:8.3f}{precision:11.3f}   ({len(errors)} listed)")
    print(f"training wall time: {plain_s:.0f} s without the audit, {audit_s:.0f} s with it "
          f"({audit_s / plain_s:.2f}x)")
    print(f"validation error: noisy {error_noisy:.4f}, after applying (b)'s suggestions {error_after:.4f}, "
          f"clean {error_clean:.4f}")
    print(f"near-duplicates: {dups['near_dup_recall']:.3f} of {N_COPIES} copies grouped with their photo; "
          f"{dups['near_dup_groups']} groups in {dups['near_dup_images']} images, {dups['near_dup_own_groups']} "
          f"among the set's own photos; {dups['near_dup_false_groups']} false; {dups['near_dup_seconds']:.1f} s")
    print(json.dumps({
        "planted": len(planted), "recall_baseline": round(recall_baseline, 4), "recall": round(recall, 4),
        "precision": round(precision, 4), "audit_cost_ratio": round(audit_s / plain_s, 4),
        "error_noisy": round(error_noisy, 4), "error_after_cleaning": round(error_after, 4),
        "error_clean": round(error_clean, 4), "near_dup_recall": round(dups["near_dup_recall"], 4),
        "near_dup_false_groups": dups["near_dup_false_groups"], "near_dup_own_groups": dups["near_dup_own_groups"],
        "listed": len(errors), "precision_baseline": round(precision_baseline, 4),
    }))


if __name__ == "__main__":
    main()
