"""Two ways to run the same model behind one interface: the exported ONNX graph, or the fastai learner itself.

``onnx`` needs onnxruntime, Pillow and numpy only; nothing on its path imports torch. It runs model.onnx (fp32)
or, where the training job shipped one, model.int8.onnx (int8). ``fastai`` loads export.pkl with CPU torch,
imported only when that backend is built, so an image without torch can import this module.
"""

from __future__ import annotations

import os
import threading
import warnings
from pathlib import Path
from typing import Any, NamedTuple, Protocol, Sequence

import numpy as np
from PIL import Image

from .metadata import MetadataError, ModelMetadata

BACKENDS = ("onnx", "fastai")
PRECISIONS = ("fp32", "int8")
ONNX_INPUT, ONNX_OUTPUT, ONNX_FEATURES = "image", "probabilities", "features"
# The weights file of each backend and precision; the training job ships model.int8.onnx only when it passed.
MODEL_FILES = {("onnx", "fp32"): "model.onnx", ("onnx", "int8"): "model.int8.onnx", ("fastai", "fp32"): "export.pkl"}
# Lambda grants one vCPU's worth of time per 1,769 MB of memory, whatever number of CPUs the process sees.
LAMBDA_MB_PER_VCPU = 1769


def required_artifacts(backend: str, precision: str = "fp32") -> tuple[str, str]:
    """What a backend reads at a precision, model.json first: every one is verified before any is loaded."""
    try:
        return "model.json", MODEL_FILES[(backend, precision)]
    except KeyError:
        raise ValueError(f"the {backend} backend has no {precision} model") from None


class Outputs(NamedTuple):
    """A batch's probabilities [N, n_classes] and the features the last linear layer read [N, D] (or None)."""

    probabilities: np.ndarray
    features: np.ndarray | None


class Backend(Protocol):
    """Turns images into class probabilities, in the class order of model.json, and their features."""

    name: str
    classes: tuple[str, ...]
    precision: str  # "fp32" or "int8": what answered, recorded with every prediction

    def prepare(self, image: Image.Image) -> Any:
        """Per-image work that can run in a worker thread while other images download."""

    def outputs(self, prepared: Sequence[Any]) -> Outputs:
        """Probabilities and features for a batch of prepared images."""

    def predict(self, prepared: Sequence[Any]) -> np.ndarray:
        """Probabilities [N, n_classes] for a batch of prepared images."""


def available_cpus() -> int:
    """CPUs this process may run on: what Lambda grants for the configured memory."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def default_threads(environ=os.environ) -> int:
    """onnxruntime's intra-op threads: Lambda's vCPU share at the configured memory, else every CPU granted.

    Lambda shows the process 2 CPUs up to 3008 MB but throttles it to memory / 1769 MB of CPU time, so threads
    beyond that share spin against the quota: n threads at a share s run min(1, s / n) of the time. A second
    thread pays when 2 CPUs make the work more than 2 / s times faster than 1: not at 2048 MB (s 1.16 needs 1.72x),
    at 3008 MB (s 1.7) above 1.18x; the handler measured 1.55x (docs/benchmarks.md, memory table). round(share)
    takes the second thread from a share of 1.5 on.
    """
    cpus = available_cpus()
    memory = environ.get("AWS_LAMBDA_FUNCTION_MEMORY_SIZE")
    if not memory:
        return cpus
    try:
        share = int(memory) / LAMBDA_MB_PER_VCPU
    except ValueError:
        return cpus
    return max(1, min(cpus, round(share)))


class OnnxBackend:
    """onnxruntime on CPU, fed by preprocess.Recipe; the graph normalises and applies softmax itself."""

    name = "onnx"

    def __init__(self, model_path: Path, metadata: ModelMetadata, *, threads: int | None = None,
                 precision: str = "fp32"):
        import onnxruntime as ort

        if precision not in PRECISIONS:
            raise ValueError(f"unknown precision {precision!r}; expected one of {PRECISIONS}")
        self.precision = precision
        self.metadata = metadata
        self.classes = metadata.classes
        self.recipe = metadata.recipe
        self.session = ort.InferenceSession(
            str(model_path), sess_options=session_options(threads), providers=["CPUExecutionProvider"]
        )
        inputs = [i.name for i in self.session.get_inputs()]
        outputs = [o.name for o in self.session.get_outputs()]
        if inputs != [ONNX_INPUT] or ONNX_OUTPUT not in outputs:
            raise MetadataError(f"model.onnx has inputs {inputs} and outputs {outputs}; "
                                f"expected input {ONNX_INPUT!r} and output {ONNX_OUTPUT!r}")
        # A model exported before the detector existed has no features output: it answers without one.
        self._outputs = [ONNX_OUTPUT, ONNX_FEATURES] if ONNX_FEATURES in outputs else [ONNX_OUTPUT]

    def prepare(self, image: Image.Image) -> np.ndarray:
        return self.recipe.to_array(image)

    def outputs(self, prepared: Sequence[np.ndarray]) -> Outputs:
        batch = np.stack(prepared)
        results = self.session.run(self._outputs, {ONNX_INPUT: batch})
        features = results[1] if len(results) == 2 else None
        return Outputs(_checked(results[0], len(batch), self.classes), features)

    def predict(self, prepared: Sequence[np.ndarray]) -> np.ndarray:
        return self.forward(np.stack(prepared))

    def forward(self, batch: np.ndarray) -> np.ndarray:
        """The bare forward pass on an already preprocessed float32 NCHW batch: probabilities only."""
        (probabilities,) = self.session.run([ONNX_OUTPUT], {ONNX_INPUT: batch})
        return _checked(probabilities, len(batch), self.classes)


def session_options(threads: int | None = None):
    """onnxruntime options for one model per Lambda environment: the vCPU share's threads, full optimisation."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    # ORT_ENABLE_ALL for both precisions: the int8 graph needs at least the extended level to fuse its
    # quantize/dequantize pairs into integer kernels (0.74 s per batch of 10 at the basic level, 0.14 s at all).
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.intra_op_num_threads = threads or default_threads()
    # One graph runs at a time; parallel branches (none in a CNN) would only compete for the same CPUs.
    options.inter_op_num_threads = 1
    # No spinning: after a batch the pool's threads would spin on the CPUs that the next batch's decoding needs.
    # Spinning made the forward pass alone about 12% faster on 2 vCPUs, but the handler as a whole (decode,
    # preprocess, infer) 5% slower at fp32 and 16% at int8; with one thread (up to 2048 MB) it makes no difference.
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    options.log_severity_level = 3
    return options


class FastaiBackend:
    """The exported fastai learner on CPU torch: fastai's own transforms, so it is the reference."""

    name = "fastai"
    precision = "fp32"

    def __init__(self, pkl_path: Path, metadata: ModelMetadata, *, threads: int | None = None):
        import torch
        from fastai.learner import load_learner

        torch.set_num_threads(threads or available_cpus())
        self.metadata = metadata
        with warnings.catch_warnings():
            # load_learner warns that pickle can run code: the store verified this file's sha256 first.
            warnings.simplefilter("ignore", UserWarning)
            self.learn = load_learner(pkl_path, cpu=True)
        vocab = tuple(str(c) for c in self.learn.dls.vocab)
        if vocab != metadata.classes:
            raise MetadataError(f"export.pkl's classes {vocab} differ from model.json's {metadata.classes}")
        self.classes = metadata.classes
        self._lock = threading.Lock()  # a Learner keeps per-call state: one prediction at a time
        # The features model.onnx outputs are what the last linear layer reads: a hook on that layer gets them.
        last = list(self.learn.model.modules())[-1]
        self._classifier_layer = last if isinstance(last, torch.nn.Linear) else None

    def prepare(self, image: Image.Image) -> Image.Image:
        return image  # fastai's own item transforms run inside predict

    def outputs(self, prepared: Sequence[Image.Image]) -> Outputs:
        captured: list[np.ndarray] = []
        with self._lock, self.learn.no_logging():
            hook = None
            if self._classifier_layer is not None:
                hook = self._classifier_layer.register_forward_hook(
                    lambda _module, inputs, _output: captured.append(inputs[0].detach().float().cpu().numpy()))
            try:
                dl = self.learn.dls.test_dl(list(prepared), num_workers=0)
                probabilities, _ = self.learn.get_preds(dl=dl)
            finally:
                if hook is not None:
                    hook.remove()
        features = np.concatenate(captured) if captured else None
        return Outputs(_checked(probabilities.numpy(), len(prepared), self.classes), features)

    def predict(self, prepared: Sequence[Image.Image]) -> np.ndarray:
        return self.outputs(prepared).probabilities


def load_backend(name: str, model_dir: Path, metadata: ModelMetadata, *,
                 threads: int | None = None, precision: str = "fp32") -> Backend:
    """Build the named backend at a precision from verified artifacts in model_dir."""
    model_dir = Path(model_dir)
    if name == "onnx":
        return OnnxBackend(model_dir / required_artifacts(name, precision)[1], metadata, threads=threads,
                           precision=precision)
    if name == "fastai":
        if precision != "fp32":
            raise ValueError("the fastai backend runs export.pkl in fp32 only")
        return FastaiBackend(model_dir / "export.pkl", metadata, threads=threads)
    raise ValueError(f"unknown inference backend {name!r}; expected one of {BACKENDS}")


def _checked(probabilities: np.ndarray, n: int, classes: tuple[str, ...]) -> np.ndarray:
    """Refuse output that does not line up with the batch and model.json's classes."""
    if probabilities.shape != (n, len(classes)):
        raise MetadataError(f"model output has shape {probabilities.shape}, expected {(n, len(classes))}")
    return probabilities.astype(np.float32, copy=False)
