"""train.py's failure contract: a one-paragraph reason in the failure file and a non-zero exit."""

from __future__ import annotations

import importlib.util
import re
import sys
from pathlib import Path

import pytest

TRAIN_PY = Path(__file__).resolve().parents[3] / "training_job" / "train.py"


@pytest.fixture(scope="module")
def entry():
    """training_job/train.py loaded under a name of its own (it is a script, not a package module)."""
    spec = importlib.util.spec_from_file_location("imgclf_training_job_entry", TRAIN_PY)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    yield module
    sys.modules.pop(spec.name, None)


@pytest.fixture
def job_env(tmp_path):
    """A SageMaker folder tree in tmp_path; the failure file lands in output/failure."""
    (tmp_path / "input" / "config").mkdir(parents=True)
    return {
        "SM_INPUT_CONFIG_DIR": str(tmp_path / "input" / "config"),
        "SM_INPUT_DIR": str(tmp_path / "input"),
        "SM_MODEL_DIR": str(tmp_path / "model"),
        "SM_OUTPUT_DATA_DIR": str(tmp_path / "output" / "data"),
    }


def failure_of(env: dict) -> str:
    """The failure file's text."""
    return (Path(env["SM_OUTPUT_DATA_DIR"]).parent / "failure").read_text(encoding="utf-8")


def run_job(entry, env: dict, root: Path, *extra: str) -> int:
    """Run main() on a dataset with a tiny no-download configuration."""
    argv = ["--train", str(root), "--arch", "resnet18", "--pretrained", "false", "--epochs", "1",
            "--img_size", "64", "--num_workers", "0", *extra]
    return entry.main(argv, env)


@pytest.mark.parametrize("counts,message", [
    ({"cats": 5}, r"at least 2 labels with images, found 1: 'cats' \(5\)"),
    ({"cats": 5, "dogs": 0}, r"found 1: 'cats' \(5\); empty label folders: 'dogs'"),
    ({"cats": 5, "dogs": 1}, r"Too few images for label\(s\) 'dogs' \(1\)"),
    ({}, r"found 0: none"),
])
def test_bad_datasets_write_the_failure_file(entry, job_env, make_dataset, counts, message):
    root = make_dataset(counts)
    assert run_job(entry, job_env, root) == 1
    reason = failure_of(job_env)
    assert reason.startswith("Training failed: ") and reason.count("\n") == 1
    assert not any(Path(job_env["SM_MODEL_DIR"]).glob("*"))
    assert re.search(message, reason), reason


def test_unknown_arch_and_bad_hyperparameter_fail_before_training(entry, job_env, make_dataset):
    root = make_dataset({"cats": 3, "dogs": 3})
    assert run_job(entry, job_env, root, "--arch", "no_such_net") == 1
    assert "Unknown arch 'no_such_net'" in failure_of(job_env)
    assert run_job(entry, job_env, root, "--bs", "zero") == 1
    assert "Invalid hyperparameters or arguments" in failure_of(job_env)


def test_missing_weights_file_fails(entry, job_env, make_dataset):
    root = make_dataset({"cats": 3, "dogs": 3})
    assert run_job(entry, job_env, root, "--pretrained", "true", "--weights", "/nowhere/w.pth") == 1
    assert "weights file /nowhere/w.pth does not exist" in failure_of(job_env)


def test_unexpected_errors_exit_2_with_the_reason(entry, job_env, make_dataset, monkeypatch):
    from imgclf_trainjob import job

    def explode(config, env):
        raise RuntimeError("disk on fire.")

    monkeypatch.setattr(job, "run", explode)
    root = make_dataset({"cats": 3, "dogs": 3})
    assert run_job(entry, job_env, root) == 2
    assert failure_of(job_env) == (
        "Training failed with an unexpected error (RuntimeError): disk on fire. "
        "See the job log for the traceback.\n"
    )


def test_failure_file_can_be_placed_explicitly(entry, job_env, make_dataset, tmp_path):
    job_env["SM_OUTPUT_FAILURE"] = str(tmp_path / "elsewhere" / "why.txt")
    assert run_job(entry, job_env, make_dataset({"cats": 2})) == 1
    assert (tmp_path / "elsewhere" / "why.txt").read_text().startswith("Training failed: ")
