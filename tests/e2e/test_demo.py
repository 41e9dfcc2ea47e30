"""The demo path end to end, smaller: the pipeline state machine collects, trains, promotes; uploads get classified."""

from __future__ import annotations

import argparse
import logging

import pytest

from imgclf import ddb
from imgclf.settings import get_settings
from imgclf_cli.demo import Console, run_pipeline
from imgclf_local.stack import LocalStack

pytestmark = pytest.mark.slow


def test_the_demo_pipeline_classifies_held_out_images_better_than_chance(tmp_path, caplog):
    # GIVEN the demo's own data (three shapes), trained small and briefly
    args = argparse.Namespace(
        data=None, per_label=30, max_per_label=1000, holdout_every=5, limit_held_out=0,
        arch="tf_efficientnet_lite0", epochs=2, img_size=96, timeout=180, out=str(tmp_path / "report"),
        verbose=False,
    )
    caplog.set_level(logging.INFO, logger="imgclf_cli")

    # WHEN the pipeline runs on a fresh local stack
    with LocalStack(api=False, extra_environment={"POWERTOOLS_LOG_LEVEL": "WARNING"}) as stack:
        result = run_pipeline(stack, args, Console(steps=5), tmp_path)
        records = [ddb.get_item(get_settings().predictions_table, {"image": r["image"]}) for r in result.results]

    # THEN every held-out image has a classified record from the promoted model, mostly right
    assert len(records) == len(result.results) > 0
    assert all(r["status"] == "classified" and r["model_version"] == result.run["run_id"] for r in records)
    expected = {r["image"]: r["expected"] for r in result.results}
    accuracy = sum(r["label"] == expected[r["image"]] for r in records) / len(records)
    assert accuracy > 1 / 3 + 0.15, caplog.text
    steps = [r.title.split()[0] for r in caplog.records if hasattr(r, "title")]
    assert steps == ["Preparing", "Collecting", "Training", "Promoting", "Classifying"]
    assert {"confusion_matrix.png", "top_losses.png", "metrics.json"} <= {p.name for p in result.report_files}
