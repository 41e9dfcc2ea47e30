"""The fastai side of a run: DataLoaders, the vision learner with offline weights, and training."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from pathlib import Path

import timm
import torch
import torchvision
from fastai.callback.core import Callback, TrainEvalCallback
from fastai.callback.progress import ProgressCallback
from fastai.callback.schedule import fine_tune  # noqa: F401 - importing it adds fine_tune/lr_find to Learner
from fastai.data.block import CategoryBlock, DataBlock
from fastai.data.core import DataLoaders
from fastai.data.transforms import IndexSplitter, Normalize, parent_label
from fastai.learner import Learner, Recorder
from fastai.metrics import accuracy, error_rate
from fastai.torch_core import default_device, set_seed
from fastai.vision.augment import RandomResizedCrop, aug_transforms
from fastai.vision.core import imagenet_stats
from fastai.vision.data import ImageBlock
from fastai.vision.learner import vision_learner
from torch import nn

from imgclf_trainjob.config import Hyperparameters
from imgclf_trainjob.dataset import DatasetPlan
from imgclf_trainjob.errors import JobFailure
from imgclf_trainjob.weights import load_body_weights

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ArchSpec:
    """A model architecture: what to hand vision_learner and the normalisation its weights expect."""

    name: str
    arch: object
    is_timm: bool
    mean: tuple[float, ...]
    std: tuple[float, ...]


def resolve_arch(name: str) -> ArchSpec:
    """Find an arch by name: torchvision classification models first, then timm."""
    if name in torchvision.models.list_models(module=torchvision.models):
        return ArchSpec(name, getattr(torchvision.models, name), False, *map(tuple, imagenet_stats))
    if timm.is_model(name):
        # fastai normalises timm models with their own pretrained config (e.g. 0.5/0.5 for TF ports).
        cfg = timm.models.get_pretrained_cfg(name)
        mean = tuple(getattr(cfg, "mean", None) or imagenet_stats[0])
        std = tuple(getattr(cfg, "std", None) or imagenet_stats[1])
        return ArchSpec(name, name, True, mean, std)
    raise JobFailure(
        f"Unknown arch {name!r}: use a torchvision classification model (e.g. resnet18, resnet34) "
        "or a timm model name (e.g. tf_efficientnet_lite0)."
    )


def build_dataloaders(plan: DatasetPlan, hp: Hyperparameters, arch: ArchSpec,
                      device: torch.device | None = None) -> DataLoaders:
    """The train/valid DataLoaders for a plan, with fastai built-ins only so export.pkl loads anywhere."""
    items = [plan.root / s.rel_path for s in (*plan.train, *plan.valid)]
    valid_idx = list(range(len(plan.train), len(items)))
    batch_tfms = [*aug_transforms()] if hp.aug else []
    batch_tfms.append(Normalize.from_stats(list(arch.mean), list(arch.std)))
    block = DataBlock(
        blocks=(ImageBlock, CategoryBlock),
        get_y=parent_label if plan.labels_match_folders else _label_lookup(plan, items),
        splitter=IndexSplitter(valid_idx),
        item_tfms=RandomResizedCrop(hp.img_size, min_scale=hp.min_scale),
        batch_tfms=batch_tfms,
    )
    extra = {} if hp.num_workers is None else {"num_workers": hp.num_workers}
    return block.dataloaders(items, bs=hp.bs, device=device or default_device(), **extra)


def _label_lookup(plan: DatasetPlan, items: list[Path]):
    """A picklable get_y for relabelled files: a dict's bound __getitem__ (no local function)."""
    labels = [s.label for s in (*plan.train, *plan.valid)]
    return dict(zip(items, labels, strict=True)).__getitem__


def build_learner(dls: DataLoaders, arch: ArchSpec, hp: Hyperparameters, weights: Path | None,
                  workdir: Path) -> tuple[Learner, str]:
    """The vision learner and where its starting weights came from ("file:...", "library", "none")."""
    # Library pretraining only when no file is given: a file is loaded below, offline.
    library_pretrained = hp.pretrained and weights is None
    try:
        learn = vision_learner(dls, arch.arch, normalize=False, pretrained=library_pretrained,
                               metrics=[error_rate, accuracy], path=workdir)
    except Exception as exc:
        if not library_pretrained:
            raise
        raise JobFailure(
            f"Cannot get pretrained ImageNet weights for {arch.name} ({type(exc).__name__}: {exc}). The job "
            "has no internet: bake the weights into the image, pass weights=<file or channel>, or set "
            "pretrained=false."
        ) from exc
    # The job logs its own epoch lines; fastprogress bars only clutter CloudWatch.
    learn.remove_cb(ProgressCallback)
    if weights is not None:
        load_body_weights(learn.model[0], weights)
        learn.freeze()
        return learn, f"file:{weights.name}"
    return learn, "library" if library_pretrained else "none"


@dataclass
class TrainHistory:
    """What training recorded: one row per epoch, the smoothed batch losses and the learning rate used."""

    epochs: list[dict] = field(default_factory=list)
    batch_losses: list[float] = field(default_factory=list)
    lr: float = 0.0
    lr_find: dict | None = None


class FreezeBodyBnStats(Callback):
    """Keeps the pretrained body's BatchNorm running statistics fixed while training (affine params train)."""

    # After TrainEvalCallback, which puts the whole model in train mode at the start of each epoch.
    order = TrainEvalCallback.order + 1

    def before_train(self):
        """Put the body's BatchNorm layers in eval mode, so batches normalise with the ImageNet averages."""
        for module in self.learn.model[0].modules():
            if isinstance(module, nn.modules.batchnorm._BatchNorm):
                module.eval()


class EpochStats(Callback):
    """Records each epoch's losses, metrics and wall time, after the Recorder has logged them."""

    order = Recorder.order + 1

    def __init__(self, history: TrainHistory):
        self.history = history

    def before_epoch(self):
        """Start the epoch's clock."""
        self._start = time.perf_counter()

    def after_epoch(self):
        """Store the epoch's row and log it in a form CloudWatch metric filters can read."""
        wall = time.perf_counter() - self._start
        names = list(self.recorder.metric_names[1:len(self.recorder.values[-1]) + 1])
        row = {"epoch": len(self.history.epochs) + 1, "phase": self._phase()}
        row.update({name: _as_float(v) for name, v in zip(names, self.recorder.values[-1], strict=True)})
        row["wall_s"] = round(wall, 3)
        self.history.epochs.append(row)
        log.info("epoch=%d %s", row["epoch"], " ".join(f"{k}={v}" for k, v in row.items() if k != "epoch"))

    def after_fit(self):
        """Keep the fit's smoothed training losses (the Recorder resets them on every fit)."""
        self.history.batch_losses += [_as_float(v) for v in self.recorder.losses]

    def _phase(self) -> str:
        """Whether the body was frozen in this epoch."""
        return "frozen" if getattr(self.opt, "frozen_idx", 0) > 0 else "unfrozen"


def _as_float(value) -> float:
    """A metric as a plain float."""
    return float(value.item() if hasattr(value, "item") else value)


def find_lr(learn: Learner) -> dict:
    """Run fastai's lr_find on the (frozen) learner and return its suggestion."""
    suggestion = learn.lr_find(show_plot=False)
    return {"valley": float(suggestion.valley)}


def train(learn: Learner, hp: Hyperparameters, pretrained: bool) -> TrainHistory:
    """Fine-tune: freeze_epochs on the head, then epochs on everything (fastai's fine_tune schedule)."""
    set_seed(hp.seed)
    history = TrainHistory()
    cbs = [EpochStats(history)]
    # Small fine-tuning batches give noisy BatchNorm statistics; averaging them into the ImageNet ones
    # degrades the pretrained features (ants-bees, EfficientNet-Lite0: 4% -> 10% linear-probe error).
    if hp.freeze_bn_stats if hp.freeze_bn_stats is not None else pretrained:
        cbs.append(FreezeBodyBnStats())
    use_fp16 = _use_fp16(hp.fp16)
    if use_fp16:
        learn.to_fp16()
    with learn.no_logging():
        if hp.lr == "find":
            history.lr_find = find_lr(learn)
            history.lr = history.lr_find["valley"]
        else:
            history.lr = float(hp.lr)
        # freeze_epochs=0 skips the frozen phase: fastai's fit_one_cycle(0) runs no epoch.
        learn.fine_tune(hp.epochs, base_lr=history.lr, freeze_epochs=hp.freeze_epochs, cbs=cbs)
    if use_fp16:
        learn.to_fp32()
    return history


def _use_fp16(requested: bool | None) -> bool:
    """Mixed precision: on by default with CUDA, never without it."""
    if not torch.cuda.is_available():
        if requested:
            log.warning("fp16 requested but CUDA is not available: training in float32")
        return False
    return requested is not False
