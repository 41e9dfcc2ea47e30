"""The training job's hyperparameters: SageMaker's JSON file, the CLI over it, and the job's paths."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from imgclf_trainjob.config import Hyperparameters, load_config
from imgclf_trainjob.errors import JobFailure, failure_file_path, one_paragraph, write_failure
from tests.support.models import sagemaker_env


@pytest.fixture
def sm_env(tmp_path):
    """A SageMaker-like environment rooted in tmp_path, with an empty hyperparameters.json."""
    (tmp_path / "input" / "config").mkdir(parents=True)
    return sagemaker_env(tmp_path)


def write_hyperparameters(env: dict, values: dict) -> None:
    """Write hyperparameters.json the way SageMaker does (every value a JSON string)."""
    path = Path(env["SM_INPUT_CONFIG_DIR"]) / "hyperparameters.json"
    path.write_text(json.dumps({k: str(v) for k, v in values.items()}))


def test_defaults_without_file_or_arguments(sm_env):
    config = load_config([], sm_env)
    assert config.hp == Hyperparameters()
    assert config.hp.arch == "tf_efficientnet_lite2" and config.hp.img_size == 192
    assert (config.hp.recipe, config.hp.epochs, config.hp.min_scale) == ("imgclf", None, None)
    assert config.paths.train == Path(sm_env["SM_CHANNEL_TRAIN"])
    assert config.paths.failure_file == Path(sm_env["SM_OUTPUT_DATA_DIR"]).parent / "failure"


def test_sagemaker_string_values_are_typed(sm_env):
    write_hyperparameters(sm_env, {"arch": "resnet34", "pretrained": "False", "epochs": "5", "lr": "find",
                                   "aug": "false", "fp16": "auto", "num_workers": "0", "valid_pct": "0.25",
                                   "dataset_uri": "s3://bucket/datasets/pets/", "sagemaker_region": "x"})
    hp = load_config([], sm_env).hp
    assert (hp.arch, hp.pretrained, hp.epochs, hp.lr, hp.aug) == ("resnet34", False, 5, "find", False)
    assert (hp.fp16, hp.num_workers, hp.valid_pct) == (None, 0, 0.25)
    assert hp.dataset_uri == "s3://bucket/datasets/pets/"


def test_command_line_wins_over_the_file(sm_env):
    write_hyperparameters(sm_env, {"epochs": "5", "bs": "16", "include_ambiguous": "true"})
    hp = load_config(["--epochs", "2", "--include-ambiguous", "false", "--lr", "0.01"], sm_env).hp
    assert (hp.epochs, hp.bs, hp.include_ambiguous, hp.lr) == (2, 16, False, 0.01)


def test_threshold_mode_defaults_to_f1_and_reads_precision_with_its_target(sm_env):
    assert load_config([], sm_env).hp.threshold_mode == "f1"
    hp = load_config(["--threshold-mode", "Precision", "--target-precision", "0.9"], sm_env).hp
    assert (hp.threshold_mode, hp.target_precision) == ("precision", 0.9)


def test_auto_leaves_a_choice_to_the_recipe(sm_env):
    write_hyperparameters(sm_env, {"epochs": "auto", "lr": "auto", "recipe": "Classic", "label_smoothing": "0.2"})
    hp = load_config(["--presize", "none", "--keep-best", "true"], sm_env).hp
    assert (hp.epochs, hp.lr, hp.presize, hp.recipe) == (None, None, None, "classic")
    assert (hp.label_smoothing, hp.keep_best) == (0.2, True)


def test_bare_boolean_flag_means_true(sm_env):
    assert load_config(["--fp16"], sm_env).hp.fp16 is True


@pytest.mark.parametrize("argv", [["--epochs", "0"], ["--valid_pct", "1.5"], ["--lr", "-1"],
                                  ["--aug", "maybe"], ["--no-such-flag", "1"], ["--threshold-mode", "recall"],
                                  ["--target-precision", "1.5"], ["--recipe", "fancy"],
                                  ["--label-smoothing", "1"], ["--max-epochs", "0"]])
def test_bad_values_raise_job_failure(sm_env, argv):
    with pytest.raises(JobFailure, match="Invalid hyperparameters"):
        load_config(argv, sm_env)


def test_unreadable_hyperparameters_file_fails(sm_env):
    (Path(sm_env["SM_INPUT_CONFIG_DIR"]) / "hyperparameters.json").write_text("{not json")
    with pytest.raises(JobFailure, match="Cannot read hyperparameters"):
        load_config([], sm_env)


def test_weights_channel_is_the_default_weights(sm_env, tmp_path):
    channel = tmp_path / "input" / "data" / "weights"
    channel.mkdir(parents=True)
    assert load_config([], sm_env).hp.weights == str(channel)
    assert load_config(["--pretrained", "false"], sm_env).hp.weights is None


def test_failure_file_locations(tmp_path):
    assert failure_file_path({"SM_OUTPUT_FAILURE": "/x/f"}) == Path("/x/f")
    assert failure_file_path({"SM_OUTPUT_DIR": "/y"}) == Path("/y/failure")
    assert failure_file_path({"SM_OUTPUT_DATA_DIR": "/z/data"}) == Path("/z/failure")
    assert failure_file_path({}) == Path("/opt/ml/output/failure")


def test_failure_reason_is_one_paragraph(tmp_path):
    target = tmp_path / "out" / "failure"
    write_failure(target, "line one\nline two\n\n" + "x" * 2000)
    text = target.read_text()
    assert text.count("\n") == 1 and text.startswith("line one line two")
    assert len(text) <= 1025
    assert one_paragraph("a  b") == "a b"
