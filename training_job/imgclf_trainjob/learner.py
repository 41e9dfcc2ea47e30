"""The fastai side of a run: DataLoaders, the vision learner with offline weights, and training."""

from __future__ import annotations

import logging
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import timm
import torch
import torchvision
from fastai.callback.core import Callback, TrainEvalCallback
from fastai.callback.progress import ProgressCallback
from fastai.callback.schedule import fine_tune  # noqa: F401 - importing it adds fine_tune/lr_find to Learner
from fastai.callback.tracker import EarlyStoppingCallback, SaveModelCallback
from fastai.data.block import CategoryBlock, DataBlock
from fastai.data.core import DataLoaders
from fastai.data.transforms import IndexSplitter, Normalize, parent_label
from fastai.learner import Learner, Recorder
from fastai.losses import CrossEntropyLossFlat, LabelSmoothingCrossEntropyFlat
from fastai.metrics import accuracy, error_rate
from fastai.torch_core import default_device, set_seed
from fastai.vision.augment import RandomResizedCrop, Resize, ResizeMethod, aug_transforms
from fastai.vision.core import imagenet_stats
from fastai.vision.data import ImageBlock
from fastai.vision.learner import vision_learner
from torch import nn

from imgclf_trainjob.config import DEFAULT_ARCH, Hyperparameters
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


DEFAULT_LR = 2e-3  # fastai's fine_tune default, and the fallback when the lr finder is not trusted
# The lr finder's valley is trusted only inside this range; outside it the curve was too short or too flat.
LR_FIND_RANGE = (1e-4, 3e-2)
LR_FIND_ITERATIONS = 40


@dataclass(frozen=True)
class Recipe:
    """How a run trains, resolved from the recipe name and any hyperparameter set explicitly."""

    name: str
    bs: int
    min_scale: float
    presize: int | None  # item resize before the batch augmentation; None: RandomResizedCrop per item
    label_smoothing: float
    lr: float | str  # a number or "find"
    epochs: int  # unfrozen epochs at most
    patience: int | None  # early stopping on the validation loss; None: every epoch runs
    keep_best: bool  # restore the epoch with the lowest validation loss
    tta: bool  # also evaluate with test-time augmentation
    freeze_bn_stats: bool

    def as_dict(self) -> dict:
        """The recipe as JSON-ready values, for metrics.json and model.json."""
        return asdict(self)


# What each recipe chooses for the hyperparameters left unset. "classic" is the original exercise:
# RandomResizedCrop(min_scale=0.5) + aug_transforms, cross-entropy, fine_tune(3) at 2e-3, the last epoch.
_RECIPE_DEFAULTS = {
    "classic": {"bs": 64, "min_scale": 0.5, "presize": None, "label_smoothing": 0.0, "lr": DEFAULT_LR,
                "keep_best": False, "tta": False},
    "imgclf": {"bs": 32, "min_scale": 0.75, "presize": None, "label_smoothing": 0.1, "lr": DEFAULT_LR,
               "keep_best": True, "tta": False},
}
CLASSIC_EPOCHS = 3


def resolve_recipe(hp: Hyperparameters, pretrained: bool, n_train: int | None = None) -> Recipe:
    """The recipe's choices, with every hyperparameter the run sets explicitly taking precedence."""
    defaults = _RECIPE_DEFAULTS[hp.recipe]

    def pick(name: str):
        value = getattr(hp, name)
        return defaults[name] if value is None else value

    bs = pick("bs")
    if n_train is not None and bs > n_train:
        # fastai drops the last incomplete training batch: a batch larger than the data would train nothing.
        log.warning("bs=%d is more than the %d training images: training with bs=%d", bs, n_train, n_train)
        bs = max(1, n_train)
    presize = pick("presize")
    auto_epochs = hp.epochs is None and hp.recipe != "classic"
    return Recipe(
        name=hp.recipe,
        bs=bs,
        min_scale=pick("min_scale"),
        presize=presize or None,
        label_smoothing=pick("label_smoothing"),
        lr=pick("lr"),
        epochs=hp.max_epochs if auto_epochs else (hp.epochs or CLASSIC_EPOCHS),
        patience=hp.patience if auto_epochs else None,
        keep_best=pick("keep_best"),
        tta=pick("tta"),
        # The original exercise lets BatchNorm statistics move; the default keeps the pretrained ones.
        freeze_bn_stats=(hp.freeze_bn_stats if hp.freeze_bn_stats is not None
                         else pretrained and hp.recipe != "classic"),
    )


def build_dataloaders(plan: DatasetPlan, hp: Hyperparameters, arch: ArchSpec, recipe: Recipe,
                      device: torch.device | None = None) -> DataLoaders:
    """The train/valid DataLoaders for a plan, with fastai built-ins only so export.pkl loads anywhere."""
    items = [plan.root / s.rel_path for s in (*plan.train, *plan.valid)]
    valid_idx = list(range(len(plan.train), len(items)))
    item_tfms, batch_tfms = _transforms(hp, recipe)
    batch_tfms.append(Normalize.from_stats(list(arch.mean), list(arch.std)))
    block = DataBlock(
        blocks=(ImageBlock, CategoryBlock),
        get_y=parent_label if plan.labels_match_folders else _label_lookup(plan, items),
        splitter=IndexSplitter(valid_idx),
        item_tfms=item_tfms,
        batch_tfms=batch_tfms,
    )
    extra = {} if hp.num_workers is None else {"num_workers": hp.num_workers}
    return block.dataloaders(items, bs=recipe.bs, device=device or default_device(), **extra)


def _transforms(hp: Hyperparameters, recipe: Recipe) -> tuple[list, list]:
    """Item and batch transforms. Validation always gets RandomResizedCrop's center crop (model.json's recipe)."""
    if not (recipe.presize and hp.aug):
        return ([RandomResizedCrop(hp.img_size, min_scale=recipe.min_scale)],
                [*aug_transforms()] if hp.aug else [])
    # Presizing: training items are only resized (squished, as validation is), and one batch transform on the
    # larger image does the random crop, flip, rotation, zoom and warp: a single interpolation instead of two.
    # The split_idx attributes keep both transforms fastai built-ins, so export.pkl loads without this module.
    train_resize = Resize(recipe.presize, method=ResizeMethod.Squish)
    train_resize.split_idx = 0
    valid_crop = RandomResizedCrop(hp.img_size, min_scale=recipe.min_scale)
    valid_crop.split_idx = 1
    return [train_resize, valid_crop], [*aug_transforms(size=hp.img_size, min_scale=recipe.min_scale)]


def _label_lookup(plan: DatasetPlan, items: list[Path]):
    """A picklable get_y for relabelled files: a dict's bound __getitem__ (no local function)."""
    labels = [s.label for s in (*plan.train, *plan.valid)]
    return dict(zip(items, labels, strict=True)).__getitem__


def build_learner(dls: DataLoaders, arch: ArchSpec, hp: Hyperparameters, recipe: Recipe, weights: Path | None,
                  workdir: Path) -> tuple[Learner, str]:
    """The vision learner and where its starting weights came from ("file:...", "library", "none")."""
    # Library pretraining only when no file is given: a file is loaded below, offline.
    library_pretrained = hp.pretrained and weights is None
    try:
        learn = vision_learner(dls, arch.arch, normalize=False, pretrained=library_pretrained,
                               metrics=[error_rate, accuracy], path=workdir, loss_func=loss_function(recipe))
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
    best_epoch: int | None = None
    seconds: float = 0.0  # the lr finder and both phases


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


def backbone_summary(learn: Learner, hp: Hyperparameters, weights_source: str, history: TrainHistory) -> dict:
    """Which backbone trained, why, what it weighs and what an epoch of it cost, for the report."""
    unfrozen = [e["wall_s"] for e in history.epochs if e["phase"] == "unfrozen"]
    why = ("the default: its ImageNet weights ship with the job, and it had the best error for its time in the "
           "recipe measurements (docs/training.md)") if hp.arch == DEFAULT_ARCH else "set by the run's arch"
    return {"arch": hp.arch, "why": why, "weights": weights_source,
            "parameters": sum(p.numel() for p in learn.model.parameters()),
            "seconds_per_epoch": round(sum(unfrozen) / len(unfrozen), 3) if unfrozen else None,
            "device": str(next(learn.model.parameters()).device)}


def loss_function(recipe: Recipe):
    """Cross-entropy, label-smoothed when the recipe says so (both fastai built-ins, kept in export.pkl)."""
    if recipe.label_smoothing:
        return LabelSmoothingCrossEntropyFlat(eps=recipe.label_smoothing)
    return CrossEntropyLossFlat()


def find_lr(learn: Learner) -> dict:
    """Run fastai's lr finder on the (frozen) learner: its suggestion and whether it is trusted."""
    suggestion = learn.lr_find(show_plot=False, num_it=LR_FIND_ITERATIONS)
    valley = float(suggestion.valley)
    low, high = LR_FIND_RANGE
    return {"valley": valley, "trusted": low <= valley <= high, "range": list(LR_FIND_RANGE),
            "iterations": LR_FIND_ITERATIONS}


def train(learn: Learner, hp: Hyperparameters, recipe: Recipe) -> TrainHistory:
    """Fine-tune as fastai's fine_tune does (head first, then everything at half the rate with discriminative
    rates), with the recipe's early stopping and best-epoch restore on the unfrozen phase."""
    set_seed(hp.seed)
    start = time.perf_counter()
    history = TrainHistory()
    cbs = [EpochStats(history)]
    # Small fine-tuning batches give noisy BatchNorm statistics; averaging them into the ImageNet ones
    # degrades the pretrained features (ants-bees, EfficientNet-Lite0: 4% -> 10% linear-probe error).
    if recipe.freeze_bn_stats:
        cbs.append(FreezeBodyBnStats())
    unfrozen_cbs = []
    if recipe.keep_best:
        unfrozen_cbs.append(SaveModelCallback(monitor="valid_loss", fname="best-epoch", with_opt=False))
    if recipe.patience:
        unfrozen_cbs.append(EarlyStoppingCallback(monitor="valid_loss", patience=recipe.patience))
    use_fp16 = _use_fp16(hp.fp16)
    if use_fp16:
        learn.to_fp16()
    with learn.no_logging():
        history.lr = DEFAULT_LR if recipe.lr == "find" else float(recipe.lr)
        if recipe.lr == "find":
            history.lr_find = find_lr(learn)
            if history.lr_find["trusted"]:
                history.lr = history.lr_find["valley"]
            else:
                log.warning("lr finder suggested %.2e, outside %s: training at %.0e", history.lr_find["valley"],
                            LR_FIND_RANGE, DEFAULT_LR)
        # The same two phases as fastai's fine_tune (which cannot give callbacks to one phase only).
        learn.freeze()
        if hp.freeze_epochs:
            learn.fit_one_cycle(hp.freeze_epochs, slice(history.lr), pct_start=0.99, cbs=cbs)
        base_lr = history.lr / 2
        learn.unfreeze()
        learn.fit_one_cycle(recipe.epochs, slice(base_lr / 100, base_lr), pct_start=0.3, div=5.0,
                            cbs=cbs + unfrozen_cbs)
    history.best_epoch = _best_epoch(history, recipe)
    history.seconds = round(time.perf_counter() - start, 3)
    if use_fp16:
        learn.to_fp32()
    return history


def _best_epoch(history: TrainHistory, recipe: Recipe) -> int | None:
    """The (1-based, all phases) epoch whose weights the model keeps: the lowest validation loss when the recipe
    keeps the best, else the last."""
    unfrozen = [e for e in history.epochs if e["phase"] == "unfrozen"]
    if not unfrozen:
        return None
    if not recipe.keep_best:
        return unfrozen[-1]["epoch"]
    return min(unfrozen, key=lambda e: e["valid_loss"])["epoch"]


def _use_fp16(requested: bool | None) -> bool:
    """Mixed precision: on by default with CUDA, never without it."""
    if not torch.cuda.is_available():
        if requested:
            log.warning("fp16 requested but CUDA is not available: training in float32")
        return False
    return requested is not False
