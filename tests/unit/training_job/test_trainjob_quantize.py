"""model.int8.onnx: the gate that decides whether it ships, the quantization itself, and what the job records."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
import timm
import torch

from imgclf_trainjob import onnx_export, quantize
from imgclf_trainjob.config import Hyperparameters
from imgclf_trainjob.dataset import prepare_dataset
from imgclf_trainjob.job import int8_model, validation_outputs

IMG_SIZE = 64
MEAN = STD = (0.5, 0.5, 0.5)  # timm's tf_efficientnet_lite0 normalisation


def check(agreement: float = 1.0, fp32: float = 0.9, int8: float = 0.9) -> quantize.Int8Check:
    return quantize.Int8Check(n_images=200, top1_agreement=agreement, fp32_accuracy=fp32, int8_accuracy=int8,
                              max_prob_diff=0.05)


def decide(result: quantize.Int8Check) -> quantize.Int8Decision:
    return quantize.decide(result, min_agreement=0.99, max_accuracy_drop=0.005)


def test_an_int8_model_within_both_thresholds_ships():
    decision = decide(check(agreement=0.995, fp32=0.935, int8=0.930))

    assert decision.shipped
    assert decision.reason.startswith("shipped: top-1 agreement 0.9950")
    assert decision.as_dict()["artifact"] == quantize.MODEL_INT8


def test_too_little_agreement_keeps_the_int8_model_back_and_says_why():
    decision = decide(check(agreement=0.985))

    assert not decision.shipped
    assert "top-1 agreement with fp32 0.9850 is below int8_min_agreement 0.99" in decision.reason
    block = decision.as_dict()
    assert block["artifact"] is None and block["check"]["top1_agreement"] == 0.985
    assert block["thresholds"] == {"min_agreement": 0.99, "max_accuracy_drop": 0.005}


def test_too_much_lost_accuracy_keeps_the_int8_model_back_and_says_why():
    decision = decide(check(agreement=0.995, fp32=0.94, int8=0.92))

    assert not decision.shipped
    assert "accuracy drops 2.00 points" in decision.reason and "int8_max_accuracy_drop 0.50" in decision.reason


def test_both_failures_are_reported_together():
    decision = decide(check(agreement=0.9, fp32=0.94, int8=0.90))

    assert "int8_min_agreement" in decision.reason and "int8_max_accuracy_drop" in decision.reason


def test_compare_counts_agreement_and_each_accuracy():
    fp32 = np.array([[0.9, 0.1], [0.2, 0.8], [0.6, 0.4], [0.3, 0.7]])
    int8 = np.array([[0.8, 0.2], [0.3, 0.7], [0.4, 0.6], [0.3, 0.7]])

    result = quantize.compare(fp32, int8, labels=np.array([0, 1, 1, 1]))

    assert result.top1_agreement == 0.75
    assert (result.fp32_accuracy, result.int8_accuracy) == (0.75, 1.0)
    assert result.accuracy_drop == -0.25 and result.max_prob_diff == pytest.approx(0.2)


@pytest.fixture(scope="module")
def tf_lite_onnx(tmp_path_factory):
    """tf_efficientnet_lite0 (random weights, 2 classes) exported as the job exports it, with TF "same" padding."""
    torch.manual_seed(0)
    model = timm.create_model("tf_efficientnet_lite0", pretrained=False, num_classes=2).eval()
    path = tmp_path_factory.mktemp("int8") / "model.onnx"
    return onnx_export.export_onnx(model, MEAN, STD, IMG_SIZE, path)


def test_folding_makes_the_padding_constant_without_changing_the_output(tf_lite_onnx):
    # GIVEN a model whose pads are computed from the input's shape at run time
    original = onnx.load(str(tf_lite_onnx))
    assert any(node.op_type == "Shape" for node in original.graph.node)

    # WHEN the batch-independent shape arithmetic is folded
    folded = quantize.fold_static_shapes(original, "image", IMG_SIZE)

    # THEN no shape arithmetic is left, and every batch size gets the same probabilities as before
    assert not any(node.op_type in {"Shape", "Ceil", "Gather"} for node in folded.graph.node)
    images = np.random.default_rng(0).random((3, 3, IMG_SIZE, IMG_SIZE), dtype=np.float32)
    before = onnx_export.onnx_probabilities(onnx_export.onnx_session(tf_lite_onnx), images)
    path = tf_lite_onnx.with_name("folded.onnx")
    onnx.save(folded, str(path))
    np.testing.assert_allclose(onnx_export.onnx_probabilities(onnx_export.onnx_session(path), images), before,
                               atol=1e-6)


def test_quantize_writes_an_int8_graph_with_a_float_stem_and_softmax(tf_lite_onnx):
    # GIVEN calibration images
    calibration = np.random.default_rng(1).random((10, 3, IMG_SIZE, IMG_SIZE), dtype=np.float32)

    # WHEN the model is quantized
    int8_path = quantize.quantize(tf_lite_onnx, tf_lite_onnx.with_name(quantize.MODEL_INT8), calibration)

    # THEN its convolutions but the first take int8 weights, the softmax is float, and any batch size runs
    graph = onnx.load(str(int8_path)).graph
    int8_weights = {init.name for init in graph.initializer if init.data_type == onnx.TensorProto.INT8}
    dequantized = {node.output[0] for node in graph.node
                   if node.op_type == "DequantizeLinear" and node.input[0] in int8_weights}
    convs = [node for node in graph.node if node.op_type == "Conv"]
    assert convs[0].input[1] not in dequantized
    assert all(conv.input[1] in dequantized for conv in convs[1:])
    (softmax,) = [node for node in graph.node if node.op_type == "Softmax"]
    assert softmax.output[0] == "probabilities" and not any(node.input[0] == "probabilities" for node in graph.node)
    session = onnx_export.onnx_session(int8_path)
    for batch in (1, 4):
        probs = onnx_export.onnx_probabilities(session, calibration[:batch])
        np.testing.assert_allclose(probs.sum(axis=1), 1.0, atol=1e-5)


@pytest.fixture
def job_inputs(make_dataset, tf_lite_onnx):
    """What the job hands int8_model: model.onnx in a model dir, its validation probabilities and labels, a dataset
    plan and the classes."""
    root = make_dataset({"blue": (6, 4), "red": (6, 4)})
    plan = prepare_dataset(root, seed=0, valid_pct=0.2)
    model_dir = root.parent / "model"
    model_dir.mkdir()
    onnx_path = model_dir / "model.onnx"
    onnx_path.write_bytes(tf_lite_onnx.read_bytes())
    ((fp32_probs, _),), labels = validation_outputs([onnx_export.onnx_session(onnx_path)], plan.valid, plan,
                                                    IMG_SIZE, plan.classes)
    return onnx_path, fp32_probs, labels, plan, plan.classes


def test_the_job_ships_an_int8_model_that_passes_its_check(job_inputs):
    onnx_path, fp32_probs, labels, plan, classes = job_inputs
    hp = Hyperparameters(img_size=IMG_SIZE, int8_calibration_images=4, int8_min_agreement=0.0,
                         int8_max_accuracy_drop=1.0)

    decision = int8_model(onnx_path, fp32_probs, labels, plan, hp, classes)

    assert decision.shipped and decision.check.n_images == len(plan.valid)
    assert (onnx_path.parent / quantize.MODEL_INT8).is_file()


def test_the_job_deletes_an_int8_model_that_fails_its_check_and_records_why(job_inputs):
    onnx_path, fp32_probs, labels, plan, classes = job_inputs
    hp = Hyperparameters(img_size=IMG_SIZE, int8_calibration_images=4, int8_min_agreement=1.01)

    decision = int8_model(onnx_path, fp32_probs, labels, plan, hp, classes)

    assert not decision.shipped and "int8_min_agreement 1.01" in decision.reason
    assert not (onnx_path.parent / quantize.MODEL_INT8).exists()


def test_the_int8_hyperparameter_turns_quantization_off(job_inputs):
    onnx_path, fp32_probs, labels, plan, classes = job_inputs

    decision = int8_model(onnx_path, fp32_probs, labels, plan, Hyperparameters(img_size=IMG_SIZE, int8=False), classes)

    assert not decision.shipped and "int8 hyperparameter is off" in decision.reason
    assert not (onnx_path.parent / quantize.MODEL_INT8).exists()


@pytest.mark.parametrize(("n", "batch"), [(100, 10), (12, 6), (7, 7), (13, 1)])
def test_calibration_batches_are_all_the_same_size(n, batch):
    # The percentile and entropy calibrators stack every batch's activations, which needs equal batches.
    reader = quantize.ArrayReader(np.zeros((n, 3, 4, 4), dtype=np.float32), "image")

    sizes = {len(item["image"]) for item in iter(reader.get_next, None)}

    assert sizes == {batch}
