"""model.onnx's contract: one file, `image` in, `probabilities` and `features` out, dynamic batch, normalisation
inside."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
import torch
from torch import nn

from imgclf_trainjob import onnx_export
from imgclf_trainjob.errors import JobFailure

MEAN, STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)


def tiny_model() -> nn.Module:
    """A small classifier with the layers fastai heads use (pooling, batch norm, linear)."""
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(3, 8, 3, stride=2), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
                         nn.BatchNorm1d(8), nn.Linear(8, 3)).eval()


def reference(model: nn.Module, images: np.ndarray) -> np.ndarray:
    """What the ONNX graph must compute: normalise, run, softmax."""
    x = torch.from_numpy(images)
    x = (x - torch.tensor(MEAN).view(1, 3, 1, 1)) / torch.tensor(STD).view(1, 3, 1, 1)
    with torch.no_grad():
        return torch.softmax(model(x), dim=1).numpy()


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """A tiny model exported once."""
    path = tmp_path_factory.mktemp("onnx") / "model.onnx"
    model = tiny_model()
    onnx_export.export_onnx(model, MEAN, STD, 32, path)
    return model, path


def test_interface_names_opset_and_dynamic_batch(exported):
    _, path = exported
    graph = onnx.load(str(path))
    assert [i.name for i in graph.graph.input] == ["image"]
    assert [o.name for o in graph.graph.output] == ["probabilities", "features"]
    assert graph.graph.input[0].type.tensor_type.elem_type == onnx.TensorProto.FLOAT
    dims = graph.graph.input[0].type.tensor_type.shape.dim
    assert dims[0].dim_param and [d.dim_value for d in dims[1:]] == [3, 32, 32]
    assert max(o.version for o in graph.opset_import if o.domain in ("", "ai.onnx")) >= 17
    assert list(path.parent.iterdir()) == [path]


@pytest.mark.parametrize("batch", [1, 5])
def test_probabilities_match_torch(exported, batch):
    model, path = exported
    images = np.random.default_rng(batch).random((batch, 3, 32, 32), dtype=np.float32)
    probs = onnx_export.onnx_probabilities(onnx_export.onnx_session(path), images)
    assert probs.shape == (batch, 3)
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, atol=1e-5)
    result = onnx_export.compare(reference(model, images), probs)
    assert result.ok and result.max_abs_diff < 1e-5


@pytest.mark.parametrize("batch", [1, 4])
def test_features_are_what_the_last_linear_layer_reads(exported, batch):
    # GIVEN the exported tiny model and its torch original
    model, path = exported
    images = np.random.default_rng(10 + batch).random((batch, 3, 32, 32), dtype=np.float32)

    # WHEN ONNX Runtime runs it
    probs, features = onnx_export.onnx_outputs(onnx_export.onnx_session(path), images)

    # THEN the features are the input of the classifier layer, and the probabilities its softmax
    x = (torch.from_numpy(images) - torch.tensor(MEAN).view(1, 3, 1, 1)) / torch.tensor(STD).view(1, 3, 1, 1)
    with torch.no_grad():
        expected = model[:-1](x).numpy()
    assert features.shape == (batch, 8)
    np.testing.assert_allclose(features, expected, atol=1e-5)
    assert onnx_export.compare(reference(model, images), probs).ok


def test_a_fastai_shaped_model_is_split_before_its_last_linear_layer():
    # GIVEN body and head as fastai's vision_learner nests them
    body = nn.Sequential(nn.Conv2d(3, 4, 3), nn.AdaptiveAvgPool2d(1), nn.Flatten())
    head = nn.Sequential(nn.BatchNorm1d(4), nn.Linear(4, 6), nn.ReLU(), nn.Linear(6, 2))
    trunk, classifier = onnx_export.split_last_linear(nn.Sequential(body, head))

    # THEN the classifier is the head's last layer and the trunk everything before it
    assert classifier is head[-1]
    assert isinstance(trunk[-1], nn.Sequential) and list(trunk[-1]) == list(head[:-1])
    assert onnx_export.split_last_linear(nn.Sequential(nn.Linear(2, 2), nn.Softmax(dim=1))) is None


def test_a_model_without_a_final_linear_layer_is_exported_with_probabilities_only(tmp_path):
    model = nn.Sequential(nn.Conv2d(3, 3, 1), nn.AdaptiveAvgPool2d(1), nn.Flatten()).eval()
    path = onnx_export.export_onnx(model, MEAN, STD, 16, tmp_path / "model.onnx")
    session = onnx_export.onnx_session(path)
    assert [o.name for o in session.get_outputs()] == ["probabilities"]
    probs, features = onnx_export.onnx_outputs(session, np.zeros((2, 3, 16, 16), dtype=np.float32))
    assert probs.shape == (2, 3) and features is None


def test_parity_result_reports_failure():
    result = onnx_export.compare(np.zeros((2, 3)), np.full((2, 3), 1e-3))
    assert not result.ok
    expected = {"max_abs_diff": pytest.approx(1e-3), "n_images": 2, "tolerance": 1e-4, "ok": False}
    assert result.as_dict() == expected
    with pytest.raises(JobFailure, match="shape"):
        onnx_export.compare(np.zeros((2, 3)), np.zeros((2, 4)))


def test_falls_back_to_torch_export_exporter(tmp_path, monkeypatch):
    real_export = torch.onnx.export

    def without_torchscript(*args, **kwargs):
        if not kwargs.get("dynamo"):
            raise RuntimeError("TorchScript exporter unavailable")
        return real_export(*args, **kwargs)

    monkeypatch.setattr(torch.onnx, "export", without_torchscript)
    model, path = tiny_model(), tmp_path / "model.onnx"
    onnx_export.export_onnx(model, MEAN, STD, 32, path)
    assert list(tmp_path.iterdir()) == [path]
    images = np.random.default_rng(1).random((3, 3, 32, 32), dtype=np.float32)
    probs = onnx_export.onnx_probabilities(onnx_export.onnx_session(path), images)
    assert onnx_export.compare(reference(model, images), probs).ok
