"""Dataset edits from the review: apply each with Dataset.edit, and report every edit's outcome on its own."""

from __future__ import annotations

import time
from collections.abc import Sequence
from http import HTTPStatus
from typing import Any

from imgclf import keys
from imgclf.datasets import Dataset
from imgclf.errors import Conflict, NotFound, TransientError

from .errors import ApiError
from .schemas import DatasetEdit

# API Gateway gives up on the function after 29 s: a long batch stops well before, and says what it left.
TIME_BUDGET_S = 20.0
clock = time.monotonic


def check_keys(edits: Sequence[DatasetEdit], dataset: str, root: str = "datasets/") -> None:
    """Refuse the whole request (400, nothing applied) when an edit names a key outside the dataset."""
    prefix = keys.dataset_prefix(dataset, root)
    for index, edit in enumerate(edits):
        parts = edit.key.removeprefix(prefix).split("/")
        if not edit.key.startswith(prefix) or any(part in {"", ".", ".."} for part in parts):
            raise ApiError(HTTPStatus.BAD_REQUEST, "invalid_key",
                           f"edits[{index}].key must be an image under {prefix}, not {edit.key[:200]!r}")


def apply_edits(s3, bucket: str, dataset: str, edits: Sequence[DatasetEdit], *, by: str,
                root: str = "datasets/", budget_s: float = TIME_BUDGET_S) -> dict[str, Any]:
    """Apply the edits in order. An image that is gone, or a relabel to its own label, fails alone; a backing
    service that fails, or the time budget running out, stops the batch, and the edits after it are reported
    as skipped, not applied."""
    deadline = clock() + budget_s
    data = Dataset(s3, bucket, dataset, root)
    if not data.version():
        raise NotFound(f"no dataset {dataset!r}: nothing was collected into it")
    results: list[dict[str, Any]] = []
    stopped = False
    for index, edit in enumerate(edits):
        result: dict[str, Any] = {"index": index, "key": edit.key, "action": edit.action}
        if stopped:
            results.append({**result, "status": "skipped",
                            "error": _error("skipped", "not tried: an earlier edit could not reach S3")})
            continue
        if clock() > deadline:
            results.append({**result, "status": "skipped",
                            "error": _error("skipped", "not tried: the request ran out of time; send it again")})
            continue
        try:
            record = data.edit(edit.key, edit.action, by=by, label=edit.label, reason=edit.reason)
        except NotFound as exc:
            results.append({**result, "status": "failed", "error": _error("not_found", str(exc))})
        except Conflict as exc:
            results.append({**result, "status": "failed", "error": _error("conflict", str(exc))})
        except ValueError as exc:
            results.append({**result, "status": "failed", "error": _error("invalid_edit", str(exc))})
        except TransientError:
            stopped = True
            results.append({**result, "status": "failed",
                            "error": _error("unavailable", "S3 is busy or unreachable; try this edit again")})
        else:
            results.append({**result, "status": "applied", "record": record})
    try:
        version: str | None = data.version()
    except TransientError:
        version = None  # the edits stand; what they made is still worth reporting
    applied = sum(r["status"] == "applied" for r in results)
    return {"dataset": dataset, "version": version, "applied": applied, "failed": len(results) - applied,
            "results": results}


def _error(code: str, message: str) -> dict[str, str]:
    return {"code": code, "message": message}
