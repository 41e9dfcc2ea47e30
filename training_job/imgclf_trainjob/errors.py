"""The job's own failure type and the SageMaker failure file it turns into."""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

DEFAULT_OUTPUT_DIR = Path("/opt/ml/output")
# SageMaker shows at most this many characters of the failure file as the job's FailureReason.
MAX_REASON_CHARS = 1024


class JobFailure(Exception):
    """A failure with a reason meant for the person who started the job (bad input, bad settings)."""


def failure_file_path(env: Mapping[str, str] = os.environ, output_data_dir: Path | None = None) -> Path:
    """Where the failure reason goes: SM_OUTPUT_FAILURE, SM_OUTPUT_DIR/failure or next to the data dir."""
    if env.get("SM_OUTPUT_FAILURE"):
        return Path(env["SM_OUTPUT_FAILURE"])
    if env.get("SM_OUTPUT_DIR"):
        return Path(env["SM_OUTPUT_DIR"]) / "failure"
    data_dir = output_data_dir or (Path(env["SM_OUTPUT_DATA_DIR"]) if env.get("SM_OUTPUT_DATA_DIR") else None)
    if data_dir is not None:
        return data_dir.parent / "failure"
    return DEFAULT_OUTPUT_DIR / "failure"


def one_paragraph(text: str) -> str:
    """Collapse a message to one paragraph of at most MAX_REASON_CHARS characters."""
    flat = " ".join(text.split())
    return flat if len(flat) <= MAX_REASON_CHARS else flat[: MAX_REASON_CHARS - 3] + "..."


def write_failure(path: Path, reason: str) -> None:
    """Write the failure reason where SageMaker picks it up."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(one_paragraph(reason) + "\n", encoding="utf-8")
