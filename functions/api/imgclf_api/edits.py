"""Dataset edits from the review: apply each with Dataset.edit, and report every edit's outcome on its own.

Where a decisions table is given, every edit is also a review decision (imgclf.decisions): all of a request's
decisions are claimed before any edit is applied, so a request that would contradict someone else's decision
is refused whole (409 decision_conflict) with nothing applied; an edit that fails gives its claim back.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from http import HTTPStatus
from typing import Any

from imgclf import keys
from imgclf.datasets import Dataset
from imgclf.decisions import DecisionConflict, Decisions, image_keys, in_force, same
from imgclf.errors import Conflict, NotFound, TransientError
from imgclf.manifest import parse_objects, replay

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
                root: str = "datasets/", budget_s: float = TIME_BUDGET_S, decisions: Decisions | None = None,
                signed_by: str | None = None, run_id: str | None = None) -> dict[str, Any]:
    """Apply the edits in order. An image that is gone, or a relabel to its own label, fails alone; a backing
    service that fails, or the time budget running out, stops the batch, and the edits after it are reported
    as skipped, not applied. With decisions, each edit's decision is claimed first (DecisionConflict, nothing
    applied, when one contradicts another's), marked applied with its edit, or given back when it fails; an
    edit someone decided exactly so already is reported as decided and not applied again."""
    deadline = clock() + budget_s
    data = Dataset(s3, bucket, dataset, root)
    if not data.version():
        raise NotFound(f"no dataset {dataset!r}: nothing was collected into it")
    claims, found = ({}, {}) if decisions is None else _claim(decisions, data, edits, by=by, signed_by=signed_by,
                                                               run_id=run_id)
    results: list[dict[str, Any]] = []
    stopped = False
    for index, edit in enumerate(edits):
        result: dict[str, Any] = {"index": index, "key": edit.key, "action": edit.action}
        if index in found:
            results.append({**result, "status": "decided", "decision": found[index]})
            continue
        result = _apply(data, edit, result, stopped=stopped, deadline=deadline, by=by)
        stopped = stopped or (result.get("error") or {}).get("code") == "unavailable"
        if decisions and index in claims:
            result["decision"] = _settle(decisions, claims[index], applied=result["status"] == "applied")
        results.append(result)
    try:
        version: str | None = data.version()
    except TransientError:
        version = None  # the edits stand; what they made is still worth reporting
    applied = sum(r["status"] == "applied" for r in results)
    failed = sum(r["status"] in ("failed", "skipped") for r in results)
    return {"dataset": dataset, "version": version, "applied": applied, "failed": failed, "results": results}


def _apply(data: Dataset, edit: DatasetEdit, result: dict[str, Any], *, stopped: bool, deadline: float,
           by: str) -> dict[str, Any]:
    """Apply one edit: its result."""
    if stopped:
        return {**result, "status": "skipped",
                "error": _error("skipped", "not tried: an earlier edit could not reach S3")}
    if clock() > deadline:
        return {**result, "status": "skipped",
                "error": _error("skipped", "not tried: the request ran out of time; send it again")}
    try:
        record = data.edit(edit.key, edit.action, by=by, label=edit.label, reason=edit.reason)
    except NotFound as exc:
        return {**result, "status": "failed", "error": _error("not_found", str(exc))}
    except Conflict as exc:
        return {**result, "status": "failed", "error": _error("conflict", str(exc))}
    except ValueError as exc:
        return {**result, "status": "failed", "error": _error("invalid_edit", str(exc))}
    except TransientError:
        return {**result, "status": "failed",
                "error": _error("unavailable", "S3 is busy or unreachable; try this edit again")}
    return {**result, "status": "applied", "record": record}


def _claim(decisions: Decisions, data: Dataset, edits: Sequence[DatasetEdit], *, by: str, signed_by: str | None,
           run_id: str | None) -> tuple[dict[int, dict], dict[int, dict]]:
    """Claim the decision of every edit whose image is in the dataset: the claims by edit index, and the
    decisions found made exactly so already. On a conflict the claims made are given back and it is raised."""
    records = parse_objects(data.records()).records
    state = replay(records)
    claims: dict[int, dict] = {}
    found: dict[int, dict] = {}
    try:
        for index, edit in enumerate(edits):
            image = state.find_key(edit.key)
            if image is None:
                # Gone from where the reviewer saw it: a decision of it says by whom, else the edit is not_found.
                found.update(_decided_elsewhere(decisions, data.name, state, image_keys(records), index, edit))
                continue
            if edit.action == "relabel" and edit.label == image.label:
                continue  # the edit fails on its own (conflict): there is nothing to decide
            claimed = decisions.claim(data.name, image.sha256, action=edit.action, label=image.label,
                                      to_label=edit.label, key=image.key, by=by, signed_by=signed_by,
                                      run_id=run_id, reason=edit.reason)
            if claimed is None:
                found[index] = decisions.get(data.name, image.sha256)
            else:
                claims[index] = claimed
    except (DecisionConflict, TransientError):
        for claimed in claims.values():
            _give_back(decisions, claimed)
        raise
    return claims, found


def _decided_elsewhere(decisions: Decisions, dataset: str, state, keys: dict[str, str], index: int,
                       edit: DatasetEdit) -> dict[int, dict]:
    """For an edit of a key the image has left: the decision in force that moved or deleted it, when it decided
    the same ({index: decision}); DecisionConflict when it decided otherwise; nothing when there is none."""
    sha256 = keys.get(edit.key)
    decision = decisions.get(dataset, sha256) if sha256 else None
    now = state.images.get(sha256) if sha256 else None
    if not decision or not in_force(decision, now.label if now else None):
        return {}
    if same(decision, edit.action, decision.get("label", ""), edit.label):
        return {index: decision}
    raise DecisionConflict(decision)


def _settle(decisions: Decisions, claimed: dict, *, applied: bool) -> dict | None:
    """Mark a claim applied with its edit, or give it back; the edit stands either way."""
    if not applied:
        _give_back(decisions, claimed)
        return None
    try:
        return decisions.finish(claimed)
    except TransientError:
        return None  # the claim expires and the image comes back to the review: the edit itself is done


def _give_back(decisions: Decisions, claimed: dict) -> None:
    try:
        decisions.release(claimed)
    except TransientError:
        pass  # the claim expires on its own (imgclf.decisions.CLAIM_TTL_S)


def _error(code: str, message: str) -> dict[str, str]:
    return {"code": code, "message": message}
