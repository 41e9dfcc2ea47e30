"""The training commands of the `imgclf` command line."""

from __future__ import annotations

import json

import boto3
import pytest

from imgclf.registry import ModelRegistry
from imgclf.settings import get_settings
from imgclf_cli.main import build_parser, main


def _register(version: str, error_rate: float) -> None:
    ModelRegistry(get_settings().models_table).register(
        version, artifacts={"model.onnx": "0" * 64}, metrics={"error_rate": error_rate}, classes=["a", "b"],
        extra={"valid_set": "same"})


def test_models_marks_the_active_version(template_tables, capsys):
    _register("v1", 0.1)
    _register("v2", 0.2)
    assert main(["promote", "v1"]) == 0
    capsys.readouterr()

    assert main(["models"]) == 0

    lines = capsys.readouterr().out.splitlines()
    assert any(line.startswith("* v1") for line in lines) and any(line.startswith("  v2") for line in lines)


def test_a_refused_promotion_exits_non_zero_and_says_why(template_tables, capsys):
    _register("v1", 0.1)
    _register("v2", 0.2)
    main(["promote", "v1"])
    capsys.readouterr()

    code = main(["promote", "v2", "--json"])

    assert code == 1 and "worse than" in json.loads(capsys.readouterr().out)["reason"]


def test_rollback_returns_to_the_previous_version(template_tables, capsys):
    _register("v1", 0.1)
    _register("v2", 0.05)
    main(["promote", "v1"])
    main(["promote", "v2"])

    assert main(["rollback"]) == 0
    assert ModelRegistry(get_settings().models_table).active().version == "v1"


def test_rollback_without_history_is_a_clear_error(template_tables, capsys):
    assert main(["rollback"]) == 2
    assert "no previous model version" in capsys.readouterr().err


def test_review_lists_the_top_losses_of_a_run(template_tables, capsys):
    settings = get_settings()
    s3 = boto3.client("s3", region_name="us-east-1")
    s3.create_bucket(Bucket=settings.data_bucket)
    entries = [{"kind": "wrong", "actual": "sad", "predicted": "happy", "probability": 0.93, "loss": 2.6,
                "s3_key": "datasets/obama/sad/sad-0123456789ab.jpg"}]
    s3.put_object(Bucket=settings.data_bucket, Key="models/r1/output/top_losses.json", Body=json.dumps(entries))

    assert main(["review", "--run", "r1"]) == 0

    out = capsys.readouterr().out
    assert "datasets/obama/sad/sad-0123456789ab.jpg" in out and "happy" in out


@pytest.mark.parametrize("argv", [
    ["--hp", "epochs=5", "img_size=160", "arch=tf_efficientnet_lite0"],
    ["--hp", "epochs=5", "--hp", "img_size=160", "--hp", "arch=tf_efficientnet_lite0"],
    ["--hp", "epochs=5", "img_size=160", "--hp", "arch=tf_efficientnet_lite0"],
])
def test_several_hyperparameters_follow_one_hp_or_several(argv):
    args = build_parser().parse_args(["train", "--dataset", "ab", *argv])

    assert dict(args.hp) == {"epochs": "5", "img_size": "160", "arch": "tf_efficientnet_lite0"}


def test_a_hyperparameter_without_a_value_is_refused(capsys):
    with pytest.raises(SystemExit):
        build_parser().parse_args(["train", "--dataset", "ab", "--hp", "epochs=5", "img_size"])
    assert "expected NAME=VALUE, got 'img_size'" in capsys.readouterr().err
