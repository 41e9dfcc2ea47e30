"""A real (tiny) training job end to end: artifacts, model.json, ONNX contract and reports."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys

import numpy as np
import onnx
import pytest
from PIL import Image

from imgclf_trainjob.onnx_export import onnx_probabilities, onnx_session
from imgclf_trainjob.preprocess import preprocess_files

MODEL_FILES = {"export.pkl", "model.onnx", "calibration.json", "model.json"}
REPORT_FILES = {"metrics.json", "confusion_matrix.png", "top_losses.png", "top_losses.json",
                "learning_curve.png", "reliability.png", "split.json"}
EXPECTED_CLASSES = sorted(["red apple", "blåbær", "grüne Äpfel"])

# Runs in a fresh interpreter that never imports the job's code: export.pkl must stand on fastai alone.
LOAD_AND_PREDICT = r"""
import json, sys
from fastai.learner import load_learner
learn = load_learner(sys.argv[1])
probs = [learn.predict(path)[2].tolist() for path in sys.argv[2:]]
leaked = sorted(m for m in sys.modules if m.startswith("imgclf") or m == "train")
print(json.dumps({"vocab": list(learn.dls.vocab), "probs": probs, "leaked": leaked}))
"""


@pytest.fixture(scope="module")
def run(trained_run):
    """The shared run, which must have succeeded."""
    assert trained_run.returncode == 0, trained_run.log[-4000:]
    return trained_run


@pytest.fixture(scope="module")
def model_json(run):
    """The run's model.json."""
    return run.json(run.model_dir, "model.json")


def test_every_artifact_is_written_and_nothing_else(run, model_json):
    # model.int8.onnx is there exactly when the job's int8 check passed, which a tiny model may or may not.
    shipped = {"model.int8.onnx"} if model_json["int8"]["shipped"] else set()
    assert {p.name for p in run.model_dir.iterdir()} == MODEL_FILES | shipped
    assert {p.name for p in run.output_data_dir.iterdir()} >= REPORT_FILES
    assert not run.failure_file.exists()
    for name in REPORT_FILES:
        if name.endswith(".png"):
            with Image.open(run.output_data_dir / name) as image:
                assert image.format == "PNG" and image.width > 100


def test_model_json_schema_and_digests(run, model_json):
    assert model_json["format_version"] == 1
    assert model_json["classes"] == EXPECTED_CLASSES
    assert model_json["arch"] == "resnet18" and model_json["img_size"] == 64
    assert model_json["run_id"] == "test-run-1"
    assert model_json["normalization"]["mean"] == pytest.approx([0.485, 0.456, 0.406])
    assert model_json["normalization"]["std"] == pytest.approx([0.229, 0.224, 0.225])
    pre = model_json["preprocessing"]
    keys = ("recipe", "img_size", "resize_to", "crop", "crop_size", "crop_box", "resample", "input_scale",
            "layout")
    assert {k: pre[k] for k in keys} == {
        "recipe": "fastai_rrc_valid", "img_size": 64, "resize_to": [80, 80], "crop": "center",
        "crop_size": [64, 64], "crop_box": [8, 8, 72, 72], "resample": "bilinear", "input_scale": "0_1",
        "layout": "NCHW"}
    for name in ("export.pkl", "model.onnx"):
        data = (run.model_dir / name).read_bytes()
        expected = {"sha256": hashlib.sha256(data).hexdigest(), "bytes": len(data)}
        assert model_json["artifacts"][name] == expected
    assert set(model_json["versions"]) >= {"fastai", "torch", "timm", "onnx"}
    parity = model_json["onnx_parity"]
    assert parity["ok"] is True and parity["tolerance"] == 1e-4 and parity["max_abs_diff"] <= 1e-4
    assert parity["n_images"] == model_json["dataset"]["n_valid"]
    assert "identity affine warp" in pre["note"]
    check = model_json["preprocessing_check"]
    assert check["ok"] and check["max_abs_diff"] <= 1e-3 and check["probabilities_max_abs_diff"] <= 1e-4
    assert model_json["hyperparameters"]["bs"] == 8 and model_json["hyperparameters"]["epochs"] == 1
    assert model_json["metrics"]["error_rate"] == pytest.approx(1 - model_json["metrics"]["accuracy"])
    assert model_json["created_at"].endswith("Z")


def test_dataset_block_counts_skipped_and_excluded(run, model_json):
    dataset = model_json["dataset"]
    manifest = (run.dataset / "manifest.jsonl").read_bytes()
    assert dataset["manifest_sha256"] == hashlib.sha256(manifest).hexdigest()
    assert dataset["uri"] == "s3://imgclf-data/datasets/fruit/"
    assert (dataset["skipped"], dataset["excluded"], dataset["ignored_labels"]) == (
        1, {"ambiguous": 1, "deleted": 1}, ["empty label"])
    assert dataset["n_train"] + dataset["n_valid"] == 3 * 8 - 2


def test_split_json_leaves_out_ambiguous_deleted_and_corrupt_files(run, model_json):
    split = run.json(run.output_data_dir, "split.json")
    train, valid = set(split["train"]), set(split["valid"])
    assert not train & valid
    assert not {run.ambiguous, run.deleted, run.corrupt} & (train | valid)
    assert split["excluded"] == {run.ambiguous: "ambiguous", run.deleted: "deleted"}
    assert run.corrupt in split["skipped"]
    assert all((run.dataset / p).is_file() for p in train | valid)
    assert {p.split("/")[0] for p in valid} == set(EXPECTED_CLASSES)
    assert (len(train), len(valid)) == (model_json["dataset"]["n_train"], model_json["dataset"]["n_valid"])


def test_metrics_json(run, model_json):
    metrics = run.json(run.output_data_dir, "metrics.json")
    assert metrics["classes"] == EXPECTED_CLASSES
    assert len(metrics["epochs"]) == 2 and [e["phase"] for e in metrics["epochs"]] == ["frozen", "unfrozen"]
    assert all(e["wall_s"] > 0 and "train_loss" in e and "valid_loss" in e for e in metrics["epochs"])
    assert len(metrics["train_loss_per_epoch"]) == len(metrics["valid_loss_per_epoch"]) == 2
    counts = np.array(metrics["confusion_matrix"]["counts"])
    assert counts.shape == (3, 3) and counts.sum() == metrics["n_valid"]
    assert metrics["error_rate"] == pytest.approx(1 - np.trace(counts) / counts.sum())
    assert set(metrics["per_class"]) == set(EXPECTED_CLASSES)
    assert all(v["support"] == counts[i].sum() for i, v in enumerate(metrics["per_class"].values()))
    assert metrics["error_rate"] == pytest.approx(metrics["epochs"][-1]["error_rate"])


def test_top_losses_point_at_dataset_files_and_s3_keys(run):
    entries = run.json(run.output_data_dir, "top_losses.json")
    assert entries and {e["kind"] for e in entries} <= {"wrong", "uncertain"}
    for entry in entries:
        assert (run.dataset / entry["path"]).is_file()
        assert entry["s3_key"] == "datasets/fruit/" + entry["path"]
        assert entry["s3_uri"] == "s3://imgclf-data/" + entry["s3_key"]
        assert entry["actual"] in EXPECTED_CLASSES and entry["predicted"] in EXPECTED_CLASSES
        assert 0 <= entry["probability"] <= 1 and entry["loss"] >= 0
        assert (entry["kind"] == "wrong") == (entry["actual"] != entry["predicted"])
    assert len([e for e in entries if e["kind"] == "uncertain"]) <= 4


def test_onnx_file_contract(run):
    model = onnx.load(str(run.model_dir / "model.onnx"))
    onnx.checker.check_model(model)
    assert [i.name for i in model.graph.input] == ["image"]
    assert [o.name for o in model.graph.output] == ["probabilities", "features"]
    assert max(o.version for o in model.opset_import if o.domain in ("", "ai.onnx")) >= 17
    assert all(t.data_location != onnx.TensorProto.EXTERNAL for t in model.graph.initializer)
    assert model.graph.input[0].type.tensor_type.shape.dim[0].dim_param


def test_export_pkl_loads_in_a_fresh_process_and_matches_onnx(run, model_json, tmp_path):
    split = run.json(run.output_data_dir, "split.json")
    images = [run.dataset / p for p in split["valid"]]
    result = subprocess.run([sys.executable, "-c", LOAD_AND_PREDICT, str(run.model_dir / "export.pkl"),
                             *map(str, images)], cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    loaded = json.loads(result.stdout.strip().splitlines()[-1])
    assert loaded["leaked"] == []
    assert loaded["vocab"] == model_json["classes"]
    # The documented PIL recipe + model.onnx must reproduce what fastai predicts from the file path.
    onnx_probs = onnx_probabilities(onnx_session(run.model_dir / "model.onnx"),
                                    preprocess_files(images, model_json["img_size"]))
    np.testing.assert_allclose(onnx_probs, np.array(loaded["probs"]), atol=1e-4)


def test_log_shows_epochs_and_warnings(run):
    assert "epoch=1 phase=frozen" in run.log and "epoch=2 phase=unfrozen" in run.log
    assert "unreadable image(s) skipped" in run.log and "'empty label'" in run.log


def test_model_json_records_the_int8_decision_and_why(run, model_json):
    int8 = model_json["int8"]
    assert int8["reason"].startswith("shipped: " if int8["shipped"] else "not shipped: ")
    assert int8["check"]["n_images"] == model_json["dataset"]["n_valid"]
    assert int8["thresholds"] == {"min_agreement": 0.99, "max_accuracy_drop": 0.005}
    if int8["shipped"]:
        data = (run.model_dir / "model.int8.onnx").read_bytes()
        assert model_json["artifacts"]["model.int8.onnx"]["sha256"] == hashlib.sha256(data).hexdigest()
    else:
        assert "model.int8.onnx" not in model_json["artifacts"]


def test_calibration_is_fitted_on_the_validation_split_and_recorded(run, model_json):
    # The temperature, the thresholds and ECE before/after, in calibration.json, model.json and metrics.json.
    doc = run.json(run.model_dir, "calibration.json")
    data = (run.model_dir / "calibration.json").read_bytes()
    assert model_json["artifacts"]["calibration.json"]["sha256"] == hashlib.sha256(data).hexdigest()
    assert doc["format_version"] == 2 and doc["classes"] == EXPECTED_CLASSES
    assert doc["temperature"] > 0 and doc["threshold_mode"] == "f1"
    assert set(doc["thresholds"]) == set(EXPECTED_CLASSES)
    validation = doc["validation"]
    assert validation["n_images"] == model_json["dataset"]["n_valid"] and validation["ece_bins"] == 15
    assert validation["nll_after"] <= validation["nll_before"] + 1e-9
    summary = model_json["calibration"]
    assert summary["temperature"] == doc["temperature"] and summary["artifact"] == "calibration.json"
    assert (model_json["metrics"]["ece_before"], model_json["metrics"]["ece_after"]) == (
        validation["ece_before"], validation["ece_after"])
    assert run.json(run.output_data_dir, "metrics.json")["calibration"] == validation


def test_the_detector_is_fitted_on_the_training_features_and_keeps_95_percent_of_validation(run, model_json):
    ood = run.json(run.model_dir, "calibration.json")["ood"]
    assert ood["method"] == "mahalanobis_shared_l2" and ood["keep"] == 0.95
    assert ood["fit"]["n_train"] == model_json["dataset"]["n_train"]
    assert ood["fit"]["n_valid"] == model_json["dataset"]["n_valid"] and ood["fit"]["valid_kept"] >= 0.95
    assert ood["whitening"]["shape"] == [ood["dim"], ood["dim"]]
    assert ood["centres"]["shape"] == [len(EXPECTED_CLASSES), ood["dim"]]
    assert model_json["onnx"]["features_output"] == "features"
    assert model_json["onnx"]["features_shape"] == ["batch", ood["dim"]]
    assert model_json["calibration"]["ood"]["threshold"] == ood["threshold"] > 0
    assert "Out-of-distribution detector:" in run.log


def test_the_audit_covers_both_splits_and_is_summarised_in_metrics(run, model_json):
    doc = run.json(run.output_data_dir, "audit.json")
    split = run.json(run.output_data_dir, "split.json")
    everything = set(split["train"]) | set(split["valid"])
    assert doc["format_version"] == 1 and doc["classes"] == EXPECTED_CLASSES
    # resnet18 from scratch has no pretrained backbone: the probe reads the fine-tuned features and says so.
    assert doc["features"] == "fine_tuned" and doc["summary"]["n_images"] == len(everything)
    assert all(f["path"] in everything and f["kind"] in ("label_error", "outlier", "near_duplicate")
               for f in doc["findings"])
    assert all(f["suggested_label"] in EXPECTED_CLASSES for f in doc["findings"] if f["kind"] == "label_error")
    summary = run.json(run.output_data_dir, "metrics.json")["audit"]
    assert summary["mode"] == "probe" and summary["counts"] == doc["summary"]["counts"]
    assert set(summary["estimated_noise_rate"]) == set(EXPECTED_CLASSES)
    assert split["near_duplicate_groups"] == [] and split["split_crossing_groups"] == []
