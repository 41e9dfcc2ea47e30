"""Calibrated probabilities and the label-or-unknown verdict: calibration.json, legacy models and the record."""

from __future__ import annotations

import hashlib
import json

import numpy as np
import pytest

from imgclf.errors import IntegrityError
from imgclf.inference import Calibration, MetadataError, ModelStore
from imgclf.inference.calibration import LOW_CONFIDENCE, OUT_OF_DISTRIBUTION, UNCALIBRATED_THRESHOLD
from imgclf_classifier.service import process_event
from tests.support import models


def calibration_doc(temperature: float = 2.0, ants: float = 0.6, bees: float = 0.7) -> dict:
    return {"format_version": 1, "classes": ["ants", "bees"], "temperature": temperature, "threshold_mode": "f1",
            "thresholds": {"ants": {"threshold": ants}, "bees": {"threshold": bees}}}


def test_temperature_scaling_of_probabilities_equals_scaling_the_logits():
    # GIVEN logits and the softmax a graph would output
    logits = np.array([[2.0, 0.0, -1.0], [0.5, 0.4, 3.0]])
    probs = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    calibration = Calibration(temperature=2.0, thresholds={}, calibrated=True)

    # WHEN the calibration is applied to the probabilities
    scaled = calibration.apply(probs.astype(np.float32))

    # THEN they are softmax(logits / T)
    expected = np.exp(logits / 2) / np.exp(logits / 2).sum(axis=1, keepdims=True)
    assert scaled == pytest.approx(expected, abs=1e-6)


def test_a_top_label_below_its_threshold_is_unknown_for_low_confidence():
    calibration = Calibration.from_dict(calibration_doc(ants=0.6, bees=0.7), ("ants", "bees"))

    assert calibration.verdict("ants", 0.65) == ("label", None)
    assert calibration.verdict("bees", 0.65) == ("unknown", LOW_CONFIDENCE)


def test_out_of_distribution_comes_before_low_confidence():
    calibration = Calibration.from_dict(calibration_doc(ants=0.6, bees=0.7), ("ants", "bees"))

    assert calibration.verdict("ants", 0.99, ood_score=1.5) == ("unknown", OUT_OF_DISTRIBUTION)
    assert calibration.verdict("ants", 0.99, ood_score=0.9) == ("label", None)
    assert calibration.verdict("bees", 0.65, ood_score=0.9) == ("unknown", LOW_CONFIDENCE)
    assert calibration.ood_scores(np.zeros((2, 4)), 2) == [None, None]  # no detector: no score


def test_without_calibration_the_plain_softmax_is_served_with_the_fixed_threshold():
    calibration = Calibration.uncalibrated()
    probs = np.array([[0.45, 0.35, 0.2]], dtype=np.float32)

    assert calibration.apply(probs) is probs
    assert not calibration.calibrated
    assert calibration.verdict("a", 0.45) == ("unknown", LOW_CONFIDENCE)
    assert calibration.verdict("a", UNCALIBRATED_THRESHOLD) == ("label", None)


@pytest.mark.parametrize("change, message", [
    ({"format_version": 3}, "format_version"),
    ({"ood": {"method": "knn"}}, "ood method"),
    ({"ood": {"method": "mahalanobis_shared_l2", "threshold": 1.0, "whitening": {"dtype": "float32", "shape": [2],
                                                                                 "base64": "AAAAAAAAAAA="},
              "centres": {"dtype": "float32", "shape": [2], "base64": "AAAAAAAAAAA="}}}, "shapes"),
    ({"classes": ["bees", "ants"]}, "classes"),
    ({"temperature": 0}, "temperature"),
    ({"thresholds": {"ants": {"threshold": 0.5}}}, "threshold"),
])
def test_a_calibration_that_does_not_fit_the_model_is_refused(change, message):
    with pytest.raises(MetadataError, match=message):
        Calibration.from_dict(calibration_doc() | change, ("ants", "bees"))


def test_the_trained_model_ships_a_calibration_that_model_json_describes(trained_model):
    # GIVEN the tiny model from training_job/train.py
    model_json = json.loads((trained_model / "model.json").read_text())
    doc = json.loads((trained_model / "calibration.json").read_text())

    # THEN calibration.json is listed with its sha256 and summarised in model.json
    digest = hashlib.sha256((trained_model / "calibration.json").read_bytes()).hexdigest()
    assert model_json["artifacts"]["calibration.json"]["sha256"] == digest
    assert model_json["calibration"]["temperature"] == doc["temperature"] > 0
    assert set(doc["thresholds"]) == set(model_json["classes"])
    assert {"ece_before", "ece_after"} <= set(model_json["metrics"])
    assert Calibration.from_dict(doc, tuple(model_json["classes"])).calibrated


def test_a_calibrated_model_records_its_verdict(deps, publish_model, upload, sqs_event, photo_bytes, trained_model):
    # GIVEN a promoted model with its calibration
    publish_model("run-1")
    obj = upload("uploads/photo.jpg", photo_bytes)

    # WHEN an upload is classified
    process_event(sqs_event(obj), deps)

    # THEN the record says whether the model answered, from calibrated probabilities, and keeps the top label
    record = deps.table.get(f"s3://{deps.settings.data_bucket}/uploads/photo.jpg")
    assert record["calibrated"] is True
    assert record["verdict"] in ("label", "unknown")
    assert record["label"] == max(record["probabilities"], key=record["probabilities"].get)
    thresholds = json.loads((trained_model / "calibration.json").read_text())["thresholds"]
    assert (record["verdict"] == "label") == (record["confidence"] >= thresholds[record["label"]]["threshold"])


def test_a_model_without_calibration_still_classifies_uncalibrated(deps, publish_model, upload, sqs_event,
                                                                   photo_bytes):
    # GIVEN a version trained before calibration existed: no calibration.json in the registry
    publish_model("old-run", names=("model.json", "model.onnx"))
    obj = upload("uploads/photo.jpg", photo_bytes)

    # WHEN an upload is classified
    process_event(sqs_event(obj), deps)

    # THEN it is classified from the plain softmax, and the record says so
    record = deps.table.get(f"s3://{deps.settings.data_bucket}/uploads/photo.jpg")
    assert record["status"] == "classified" and record["calibrated"] is False
    expected = "label" if record["confidence"] >= UNCALIBRATED_THRESHOLD else "unknown"
    assert record["verdict"] == expected


def test_an_unknown_verdict_keeps_the_top_label_and_says_why(deps, publish_model, upload, sqs_event, photo_bytes,
                                                             trained_model, tmp_path):
    # GIVEN a calibration whose thresholds no probability can reach
    doc = calibration_doc(temperature=1.0, ants=1.01, bees=1.01)
    body = json.dumps(doc).encode()
    artifacts = models.artifact_sha256(trained_model, ("model.json", "model.onnx"))
    publish_model("strict", artifacts={**artifacts, "calibration.json": hashlib.sha256(body).hexdigest()},
                  body_of={"calibration.json": body})
    obj = upload("uploads/photo.jpg", photo_bytes)

    # WHEN an upload is classified
    process_event(sqs_event(obj), deps)

    # THEN it is unknown for low confidence, with its top label and probabilities kept
    record = deps.table.get(f"s3://{deps.settings.data_bucket}/uploads/photo.jpg")
    assert (record["verdict"], record["unknown_reason"]) == ("unknown", "low_confidence")
    assert record["label"] in ("ants", "bees") and set(record["probabilities"]) == {"ants", "bees"}


def test_a_calibration_whose_checksum_differs_is_refused(classifier_env, clock, publish_model, model_sha256):
    # GIVEN a version whose registry checksum for calibration.json is not the file's
    publish_model("run-1", artifacts={**model_sha256, "calibration.json": "0" * 64})
    store = ModelStore.from_settings(classifier_env, clock=clock)

    # WHEN the store loads it, THEN it refuses
    with pytest.raises(IntegrityError, match="sha256"):
        store.current()
