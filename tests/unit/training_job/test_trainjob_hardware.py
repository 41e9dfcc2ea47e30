"""A GPU instance without usable CUDA fails the job at once instead of training on its CPU."""

from __future__ import annotations

import json

import pytest

from imgclf_trainjob.errors import JobFailure
from imgclf_trainjob.hardware import instance_type, require_cuda_on_gpu_instances


def sagemaker_config(tmp_path, instance: str) -> dict[str, str]:
    (tmp_path / "resourceconfig.json").write_text(json.dumps(
        {"current_host": "algo-1", "hosts": ["algo-1"], "current_instance_type": instance}))
    return {"SM_INPUT_CONFIG_DIR": str(tmp_path)}


def test_the_instance_type_comes_from_sagemakers_resource_config(tmp_path):
    assert instance_type(sagemaker_config(tmp_path, "ml.g4dn.xlarge")) == "ml.g4dn.xlarge"


def test_outside_sagemaker_there_is_no_instance_type(tmp_path):
    assert instance_type({"SM_INPUT_CONFIG_DIR": str(tmp_path)}) is None


def test_a_gpu_instance_without_cuda_fails_with_the_driver_and_cuda_versions(tmp_path):
    # GIVEN a job on a g4dn whose driver cannot run the image's CUDA
    env = sagemaker_config(tmp_path, "ml.g4dn.xlarge")

    # WHEN the job checks its hardware
    with pytest.raises(JobFailure) as failure:
        require_cuda_on_gpu_instances(env, cuda_available=False, cuda_version="13.0", driver=lambda: "535.183.01")

    # THEN the reason names the instance, both versions and the fix
    reason = str(failure.value)
    assert "ml.g4dn.xlarge" in reason and "13.0" in reason and "535.183.01" in reason
    assert "BASE_IMAGE" in reason


@pytest.mark.parametrize(("instance", "cuda"), [
    ("ml.g4dn.xlarge", True),   # the GPU is usable
    ("ml.m5.xlarge", False),    # a CPU instance trains on its CPU, as asked
    ("ml.trn1.2xlarge", False),  # Neuron, not NVIDIA
])
def test_other_combinations_train(tmp_path, instance, cuda):
    env = sagemaker_config(tmp_path, instance)
    require_cuda_on_gpu_instances(env, cuda_available=cuda, cuda_version=None, driver=lambda: None)


def test_the_local_stack_which_names_no_instance_trains_on_the_cpu(tmp_path):
    (tmp_path / "resourceconfig.json").write_text(json.dumps({"current_host": "algo-1", "hosts": ["algo-1"]}))
    require_cuda_on_gpu_instances({"SM_INPUT_CONFIG_DIR": str(tmp_path)}, cuda_available=False, cuda_version=None)
