"""model.int8.onnx: model.onnx statically quantized to int8, and the check against fp32 that decides whether it ships.

onnxruntime's ``quantize_static`` does the quantization (QDQ format, int8 weights per output channel, uint8
activations whose ranges are the min/max seen on training images). Two things around it make it work on the
models this job trains:

* timm's TF-ported models (``tf_efficientnet_lite0``) pad "same" from each input's size at run time, so
  model.onnx computes its pads with Shape/Gather/Ceil arithmetic. Quantized, that arithmetic gives wrong
  pads; left in float, every padded convolution becomes a float island (dequantize, pad, quantize). The input
  size is fixed by the ONNX contract, so the arithmetic that does not depend on the batch size is folded into
  constants first: the pads then fuse into the convolutions and the graph is int8 end to end.
* The stem convolution and the softmax stay float: the stem sees the raw image, where a uint8 activation
  costs the most accuracy, and the probabilities keep their float resolution.
"""

from __future__ import annotations

import logging
import tempfile
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
from onnx import helper, numpy_helper
from onnxruntime.quantization import (
    CalibrationDataReader,
    CalibrationMethod,
    QuantFormat,
    QuantType,
    quantize_static,
)
from onnxruntime.quantization.shape_inference import quant_pre_process

log = logging.getLogger(__name__)

MODEL_INT8 = "model.int8.onnx"
CALIBRATION_BATCH = 10
# What the calibration and the float parts of the graph are, recorded in model.json's int8 block.
METHOD = {"format": "QDQ", "weights": "int8, per channel", "activations": "uint8",
          "calibration": "min/max", "reduce_range": False, "float_nodes": "stem convolution, softmax"}
_SHAPE_OPS = {"Shape", "Size", "Constant"}


@dataclass(frozen=True)
class Int8Check:
    """How the int8 model answered the validation images next to the fp32 one."""

    n_images: int
    top1_agreement: float
    fp32_accuracy: float
    int8_accuracy: float
    max_prob_diff: float

    @property
    def accuracy_drop(self) -> float:
        """fp32 accuracy minus int8 accuracy, as a fraction (0.005 = half a percentage point)."""
        return self.fp32_accuracy - self.int8_accuracy

    def as_dict(self) -> dict:
        return {**asdict(self), "accuracy_drop": self.accuracy_drop}


@dataclass(frozen=True)
class Int8Decision:
    """Whether model.int8.onnx ships with the run, and why."""

    shipped: bool
    reason: str
    check: Int8Check | None = None
    min_agreement: float | None = None
    max_accuracy_drop: float | None = None

    def as_dict(self) -> dict:
        """model.json's int8 block."""
        block = {"shipped": self.shipped, "reason": self.reason, "artifact": MODEL_INT8 if self.shipped else None,
                 "method": METHOD}
        if self.check is not None:
            block["check"] = self.check.as_dict()
            block["thresholds"] = {"min_agreement": self.min_agreement, "max_accuracy_drop": self.max_accuracy_drop}
        return block


def compare(fp32_probs: np.ndarray, int8_probs: np.ndarray, labels: np.ndarray) -> Int8Check:
    """Top-1 agreement and both accuracies of two probability matrices for the same labelled images."""
    fp32_top, int8_top = fp32_probs.argmax(axis=1), int8_probs.argmax(axis=1)
    return Int8Check(
        n_images=len(labels),
        top1_agreement=float(np.mean(fp32_top == int8_top)),
        fp32_accuracy=float(np.mean(fp32_top == labels)),
        int8_accuracy=float(np.mean(int8_top == labels)),
        max_prob_diff=float(np.abs(fp32_probs.astype(np.float64) - int8_probs).max()),
    )


def decide(check: Int8Check, *, min_agreement: float, max_accuracy_drop: float) -> Int8Decision:
    """Ship the int8 model only when it agrees with fp32 often enough and loses at most the allowed accuracy."""
    problems = []
    if check.top1_agreement < min_agreement:
        problems.append(f"top-1 agreement with fp32 {check.top1_agreement:.4f} is below int8_min_agreement "
                        f"{min_agreement}")
    # A hair of tolerance: 0.935 - 0.930 is not exactly 0.005 in binary floating point.
    if check.accuracy_drop > max_accuracy_drop + 1e-9:
        problems.append(f"accuracy drops {check.accuracy_drop * 100:.2f} points (fp32 {check.fp32_accuracy:.4f}, "
                        f"int8 {check.int8_accuracy:.4f}), more than int8_max_accuracy_drop "
                        f"{max_accuracy_drop * 100:.2f}")
    thresholds = {"min_agreement": min_agreement, "max_accuracy_drop": max_accuracy_drop}
    if problems:
        reason = f"not shipped: {'; '.join(problems)} on {check.n_images} validation images"
        return Int8Decision(False, reason, check, **thresholds)
    reason = (f"shipped: top-1 agreement {check.top1_agreement:.4f} (at least {min_agreement}), accuracy drop "
              f"{check.accuracy_drop * 100:.2f} points (at most {max_accuracy_drop * 100:.2f}) on "
              f"{check.n_images} validation images")
    return Int8Decision(True, reason, check, **thresholds)


class ArrayReader(CalibrationDataReader):
    """Calibration batches of preprocessed images for quantize_static."""

    def __init__(self, images: np.ndarray, input_name: str, batch_size: int = CALIBRATION_BATCH):
        # Equal batches only: onnxruntime's histogram calibrators (percentile, entropy) stack every batch's
        # activations into one array, and a short last batch breaks that.
        batch_size = max(size for size in range(1, batch_size + 1) if len(images) % size == 0)
        self._batches = [{input_name: images[i:i + batch_size]} for i in range(0, len(images), batch_size)]
        self._next = 0

    def get_next(self) -> dict | None:
        if self._next >= len(self._batches):
            return None
        self._next += 1
        return self._batches[self._next - 1]

    def rewind(self) -> None:
        self._next = 0


def quantize(fp32_path: Path, int8_path: Path, calibration: np.ndarray, *, input_name: str = "image") -> Path:
    """Write the int8 model of fp32_path, calibrated on calibration ([N,3,H,W] float32 in [0,1])."""
    img_size = calibration.shape[-1]
    with tempfile.TemporaryDirectory(prefix="imgclf-int8-") as work:
        folded = Path(work) / "folded.onnx"
        onnx.save(fold_static_shapes(onnx.load(str(fp32_path)), input_name, img_size), str(folded))
        prepared = Path(work) / "prepared.onnx"
        # onnxruntime's recommended preparation: shape inference and the basic graph fusions (Pad into Conv).
        quant_pre_process(str(folded), str(prepared), skip_symbolic_shape=True)
        graph = onnx.load(str(prepared)).graph
        quantize_static(
            str(prepared), str(int8_path), ArrayReader(calibration, input_name),
            quant_format=QuantFormat.QDQ, per_channel=True, reduce_range=False,
            activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
            # Min/max kept every ants-bees validation answer on four calibration sets; percentile moved 0-2 of them.
            calibrate_method=CalibrationMethod.MinMax, nodes_to_exclude=float_nodes(graph),
        )
    return int8_path


def float_nodes(graph: onnx.GraphProto) -> list[str]:
    """The nodes quantize_static must leave alone: shape arithmetic, the stem convolution and the softmax."""
    names = shape_arithmetic(graph)[1]
    convs = [node.name for node in graph.node if node.op_type == "Conv"]
    return names + convs[:1] + [node.name for node in graph.node if node.op_type == "Softmax"]


def shape_arithmetic(graph: onnx.GraphProto) -> tuple[set[str], list[str]]:
    """The tensors computed from shapes and constants alone, and the nodes that compute them."""
    static = {init.name for init in graph.initializer}
    nodes = []
    for node in graph.node:  # ONNX graphs are topologically sorted
        if node.op_type in _SHAPE_OPS or (node.input and all(name in static or not name for name in node.input)):
            static.update(node.output)
            nodes.append(node.name)
    return static, nodes


def fold_static_shapes(model: onnx.ModelProto, input_name: str, img_size: int) -> onnx.ModelProto:
    """A copy of model whose shape arithmetic, where it is the same for every batch size, is constants."""
    model = onnx.ModelProto.FromString(model.SerializeToString())
    graph = model.graph
    static, static_nodes = shape_arithmetic(graph)
    initializers = {init.name for init in graph.initializer}
    computed = set(static_nodes)
    # The computed tensors that data-carrying nodes consume: pads, reshape targets, slice bounds.
    boundary = sorted({name for node in graph.node if node.name not in computed for name in node.input
                       if name in static and name not in initializers})
    types = {info.name: info.type.tensor_type.elem_type
             for info in onnx.shape_inference.infer_shapes(model).graph.value_info}
    boundary = [name for name in boundary if types.get(name)]  # untyped ones stay as they are
    if not boundary:
        return model
    values = [_evaluate(model, boundary, types, input_name, img_size, batch) for batch in (1, 2)]
    fold = [name for name in boundary if np.array_equal(values[0][name], values[1][name])]
    graph.initializer.extend(numpy_helper.from_array(values[0][name], name) for name in fold)
    folded = set(fold)
    kept = [node for node in graph.node if not folded.intersection(node.output)]
    # Drop what nothing reads any more, from the outputs back.
    while True:
        used = {name for node in kept for name in node.input} | {out.name for out in graph.output}
        still = [node for node in kept if used.intersection(node.output)]
        if len(still) == len(kept):
            break
        kept = still
    del graph.node[:]
    graph.node.extend(kept)
    used = {name for node in kept for name in node.input}
    live = [init for init in graph.initializer if init.name in used]
    del graph.initializer[:]
    graph.initializer.extend(live)
    onnx.checker.check_model(model)
    return model


def _evaluate(model: onnx.ModelProto, names: Sequence[str], types: dict[str, int], input_name: str,
              img_size: int, batch: int) -> dict[str, np.ndarray]:
    """The values of intermediate tensors for a zero input of the given batch size."""
    probe = onnx.ModelProto.FromString(model.SerializeToString())
    for name in names:
        probe.graph.output.append(helper.make_tensor_value_info(name, types[name], None))
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    options.log_severity_level = 3
    session = ort.InferenceSession(probe.SerializeToString(), options, providers=["CPUExecutionProvider"])
    image = np.zeros((batch, 3, img_size, img_size), dtype=np.float32)
    return dict(zip(names, session.run(list(names), {input_name: image}), strict=True))
