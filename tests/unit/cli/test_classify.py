"""`imgclf classify`: local files through the registry's model, as the classifier would answer for them."""

from __future__ import annotations

import hashlib
import json

import numpy as np
import pytest

from imgclf import aws
from imgclf.settings import reset_settings
from imgclf_cli.main import main
from tests.support import models, tables
from tests.support.images import jpeg_bytes, synthetic_photo


@pytest.fixture
def stack(template_tables, stack_template, monkeypatch, tmp_path, tiny_model):
    """moto with the template's tables and bucket, the tiny model's artifacts at hand to publish."""
    monkeypatch.setenv("MODEL_CACHE_DIR", str(tmp_path / "model-cache"))
    reset_settings()
    tables.create_bucket(aws.client("s3"), stack_template.buckets["DataBucket"])
    return tiny_model


@pytest.fixture
def photo(tmp_path):
    path = tmp_path / "photo.jpg"
    path.write_bytes(jpeg_bytes(synthetic_photo(np.random.default_rng(1), (170, 60, 40), (120, 90))))
    return path


def strict_calibration(model_dir) -> dict:
    """Publish options for a version whose thresholds no probability reaches: every verdict is unknown."""
    body = json.dumps({"format_version": 1, "classes": ["ants", "bees"], "temperature": 1.0, "threshold_mode": "f1",
                       "thresholds": {"ants": {"threshold": 1.01}, "bees": {"threshold": 1.01}}}).encode()
    artifacts = models.artifact_sha256(model_dir, ("model.json", "model.onnx"))
    return {"artifacts": {**artifacts, "calibration.json": hashlib.sha256(body).hexdigest()},
            "body_of": {"calibration.json": body}}


def test_each_file_gets_a_line_and_a_non_image_sets_the_exit_status(stack, photo, tmp_path, capsys):
    # GIVEN an active model, a photo and a text file
    models.publish_model(stack, "v1")
    notes = tmp_path / "notes.jpg"
    notes.write_text("not an image at all")

    # WHEN both are classified, the text file first
    code = main(["classify", str(notes), str(photo)])

    # THEN the text file is rejected with its reason, the photo still classified, and the status says one failed
    lines = capsys.readouterr().out.splitlines()
    assert code == 1
    assert lines[0].startswith(f"{notes}  rejected not_an_image")
    assert lines[1].split()[0] == str(photo) and lines[1].split()[2] in ("ants", "bees")


def test_model_picks_a_registered_version_other_than_the_active_one(stack, photo, capsys):
    # GIVEN an active version and a strict one that was registered but never promoted
    models.publish_model(stack, "active")
    models.publish_model(stack, "strict", promote=False, **strict_calibration(stack))

    # WHEN a photo is classified by the strict version, in JSON
    code = main(["--json", "classify", "--model", "strict", str(photo)])

    # THEN that version answered, unknown for low confidence with its top label kept
    entry = json.loads(capsys.readouterr().out.splitlines()[-1])
    assert code == 0
    assert (entry["model_version"], entry["verdict"], entry["unknown_reason"]) == ("strict", "unknown",
                                                                                 "low_confidence")
    assert entry["file"] == str(photo) and entry["label"] in ("ants", "bees") and entry["calibrated"] is True


def test_without_a_promoted_model_it_says_so(stack, photo, capsys):
    assert main(["classify", str(photo)]) == 2

    assert "no model version has been promoted" in capsys.readouterr().err


def test_an_unregistered_version_is_a_clear_error(stack, photo, capsys):
    assert main(["classify", "--model", "nope", str(photo)]) == 2

    assert "no model version 'nope'" in capsys.readouterr().err
