"""model.onnx: the trained network with normalisation and softmax built in, and its parity check.

The graph has two outputs: ``probabilities`` and ``features``, the vector the last linear layer reads (the
penultimate layer of fastai's head). The out-of-distribution detector in calibration.json is fitted on those
features; a network whose last module is not a linear layer is exported with probabilities only.
"""

from __future__ import annotations

import copy
import logging
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import torch
from torch import nn

from imgclf_trainjob.errors import JobFailure

log = logging.getLogger(__name__)

INPUT_NAME = "image"
OUTPUT_NAME = "probabilities"
FEATURES_NAME = "features"
OPSET = 18
PARITY_TOLERANCE = 1e-4


def split_last_linear(model: nn.Module) -> tuple[nn.Module, nn.Linear] | None:
    """The network up to its last linear layer, and that layer; None unless it ends in one.

    fastai's vision_learner builds Sequential(body, Sequential(pool, ..., Linear)), so the split is
    Sequential(body, head[:-1]) and the classifier layer.
    """
    if not isinstance(model, nn.Sequential) or not len(model):
        return None
    last = model[-1]
    if isinstance(last, nn.Linear):
        return nn.Sequential(*model[:-1]), last
    inner = split_last_linear(last)
    if inner is None:
        return None
    return nn.Sequential(*model[:-1], inner[0]), inner[1]


class NormalizedSoftmax(nn.Module):
    """The exported graph: [0,1] RGB NCHW in, ImageNet-style normalisation, the model, softmax (and features) out."""

    def __init__(self, model: nn.Module, mean: Sequence[float], std: Sequence[float], with_features: bool = True):
        super().__init__()
        split = split_last_linear(model) if with_features else None
        self.model = model if split is None else None
        self.trunk, self.classifier = split if split is not None else (None, None)
        # Same shape and arithmetic as fastai's Normalize, so the graph matches the training pipeline.
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32).view(1, -1, 1, 1))
        self.register_buffer("std", torch.tensor(std, dtype=torch.float32).view(1, -1, 1, 1))

    @property
    def has_features(self) -> bool:
        """Whether the graph also outputs the features the last linear layer reads."""
        return self.trunk is not None

    def forward(self, image: torch.Tensor) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        """Class probabilities for a batch of [0,1] images, and their features where the model has them."""
        x = (image - self.mean) / self.std
        if self.trunk is None:
            return torch.softmax(self.model(x), dim=1)
        features = self.trunk(x)
        return torch.softmax(self.classifier(features), dim=1), features


@dataclass(frozen=True)
class ParityResult:
    """How close ONNX Runtime came to fastai on the same inputs."""

    max_abs_diff: float
    n_images: int
    tolerance: float = PARITY_TOLERANCE

    @property
    def ok(self) -> bool:
        """True when every probability agrees within the tolerance."""
        return self.max_abs_diff <= self.tolerance

    def as_dict(self) -> dict:
        """The onnx_parity block of model.json."""
        return {"max_abs_diff": self.max_abs_diff, "n_images": self.n_images,
                "tolerance": self.tolerance, "ok": self.ok}


def export_onnx(model: nn.Module, mean: Sequence[float], std: Sequence[float], img_size: int,
                path: Path) -> Path:
    """Write the model as one self-contained ONNX file with a dynamic batch axis."""
    graph = NormalizedSoftmax(copy.deepcopy(model).cpu().float().eval(), mean, std).eval()
    if not graph.has_features:
        log.warning("The network does not end in a linear layer: model.onnx has no features output, so the "
                    "model gets no out-of-distribution detector")
    example = torch.rand(2, 3, img_size, img_size)
    path.parent.mkdir(parents=True, exist_ok=True)
    outputs = [OUTPUT_NAME, FEATURES_NAME] if graph.has_features else [OUTPUT_NAME]
    _torch_export(graph, example, path, outputs)
    check_single_file(path)
    return path


def _torch_export(graph: nn.Module, example: torch.Tensor, path: Path, outputs: list[str]) -> None:
    """Export with the TorchScript exporter, or with the torch.export one where that is unavailable."""
    names = {"input_names": [INPUT_NAME], "output_names": outputs, "opset_version": OPSET}
    try:
        with warnings.catch_warnings():
            # Deprecated, but it handles fastai heads and timm's TF "same" padding in one traced graph.
            warnings.simplefilter("ignore")
            torch.onnx.export(graph, (example,), str(path), dynamo=False, **names,
                              dynamic_axes={name: {0: "batch"} for name in (INPUT_NAME, *outputs)})
    except Exception as exc:  # noqa: BLE001 - any exporter failure gets the second exporter's chance
        log.warning("TorchScript ONNX export failed (%s: %s); retrying with torch.export",
                    type(exc).__name__, exc)
        path.unlink(missing_ok=True)
        torch.onnx.export(graph, (example,), str(path), dynamo=True, external_data=False, **names,
                          dynamic_shapes=({0: torch.export.Dim("batch")},))


def check_single_file(path: Path) -> None:
    """Fail unless the ONNX file is valid and keeps all weights inside itself."""
    model = onnx.load(str(path), load_external_data=False)
    onnx.checker.check_model(model)
    external = [t.name for t in model.graph.initializer if t.data_location == onnx.TensorProto.EXTERNAL]
    if external:
        raise JobFailure(f"The ONNX export put {len(external)} tensor(s) in external data; "
                         "it must be one file.")


def onnx_session(path: Path) -> ort.InferenceSession:
    """A CPU ONNX Runtime session for the exported model."""
    options = ort.SessionOptions()
    options.log_severity_level = 3
    return ort.InferenceSession(str(path), sess_options=options, providers=["CPUExecutionProvider"])


def has_features(session: ort.InferenceSession) -> bool:
    """Whether the model outputs its features next to the probabilities."""
    return FEATURES_NAME in [output.name for output in session.get_outputs()]


def onnx_outputs(session: ort.InferenceSession, images: np.ndarray,
                 batch_size: int = 32) -> tuple[np.ndarray, np.ndarray | None]:
    """Probabilities and features (None where the model has none) for [N,3,H,W] float32 [0,1] images."""
    names = [OUTPUT_NAME, FEATURES_NAME] if has_features(session) else [OUTPUT_NAME]
    batches = [session.run(names, {INPUT_NAME: images[i : i + batch_size].astype(np.float32)})
               for i in range(0, len(images), batch_size)]
    probabilities = np.concatenate([batch[0] for batch in batches])
    features = np.concatenate([batch[1] for batch in batches]) if len(names) == 2 else None
    return probabilities, features


def onnx_probabilities(session: ort.InferenceSession, images: np.ndarray, batch_size: int = 32) -> np.ndarray:
    """Run ONNX Runtime over [N,3,H,W] float32 [0,1] images in batches."""
    outputs = [
        session.run([OUTPUT_NAME], {INPUT_NAME: images[i : i + batch_size].astype(np.float32)})[0]
        for i in range(0, len(images), batch_size)
    ]
    return np.concatenate(outputs)


def compare(fastai_probs: np.ndarray, onnx_probs: np.ndarray) -> ParityResult:
    """The parity result of two probability matrices for the same images."""
    if fastai_probs.shape != onnx_probs.shape:
        raise JobFailure(f"ONNX output shape {onnx_probs.shape} differs from fastai's {fastai_probs.shape}.")
    diff = float(np.abs(fastai_probs.astype(np.float64) - onnx_probs.astype(np.float64)).max())
    return ParityResult(max_abs_diff=diff, n_images=len(fastai_probs))
