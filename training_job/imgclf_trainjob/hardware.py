"""Refuse to train on the CPU of a billed GPU instance: a CUDA that the host's driver cannot run is a failure."""

from __future__ import annotations

import json
import os
import shutil
import subprocess  # nosec B404  # runs nvidia-smi only, with a fixed argument list
from collections.abc import Callable, Mapping
from pathlib import Path

from imgclf_trainjob.errors import JobFailure

# SageMaker's NVIDIA families; trn/inf instances carry Neuron chips, which CUDA never sees.
GPU_FAMILIES = ("ml.g", "ml.p")


def instance_type(env: Mapping[str, str] = os.environ) -> str | None:
    """The SageMaker instance type this job runs on (resourceconfig.json), or None outside SageMaker."""
    config_dir = Path(env.get("SM_INPUT_CONFIG_DIR", "/opt/ml/input/config"))
    try:
        config = json.loads((config_dir / "resourceconfig.json").read_text())
    except (OSError, ValueError):
        return env.get("SM_CURRENT_INSTANCE_TYPE") or None
    return config.get("current_instance_type") or env.get("SM_CURRENT_INSTANCE_TYPE") or None


def driver_version(run: Callable[..., subprocess.CompletedProcess] = subprocess.run) -> str | None:
    """The host's NVIDIA driver version as nvidia-smi reports it, or None when it cannot tell."""
    if shutil.which("nvidia-smi") is None:
        return None
    try:
        done = run(["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"],
                   capture_output=True, text=True, timeout=20, check=False)
    except (OSError, subprocess.SubprocessError):
        return None
    lines = done.stdout.strip().splitlines() if done.returncode == 0 else []
    return lines[0].strip() if lines else None


def require_cuda_on_gpu_instances(env: Mapping[str, str] = os.environ, *, cuda_available: bool,
                                  cuda_version: str | None, driver: Callable[[], str | None] = driver_version) -> None:
    """Fail the job, with the driver and CUDA versions, when a GPU instance cannot use its GPU."""
    kind = instance_type(env)
    if cuda_available or not kind or not kind.startswith(GPU_FAMILIES):
        return
    found = driver() or "unknown (nvidia-smi gave no answer)"
    raise JobFailure(
        f"{kind} has NVIDIA GPUs but CUDA is unavailable, so the job would train on the CPU while the GPU "
        f"instance is billed. The image's torch is built for CUDA {cuda_version or 'none (a CPU build)'}; the "
        f"host's NVIDIA driver is {found}. CUDA 13 needs driver 580 or newer, CUDA 12 needs 525 or newer: "
        "rebuild the training image on a base whose CUDA the host's driver supports "
        "(BASE_IMAGE=... scripts/push-training-image.sh; see docs/operations.md)."
    )
