"""Training runs: their ids, their statuses and how one may follow another, their records, and how one starts.

A run is recorded Pending. Started directly (the starter function, `imgclf train`) it is InProgress while its
SageMaker job trains; started by the state machine it stays Pending until the job's outcome. It ends as the
job ended: Completed, Failed or Stopped (SageMaker's own words).
"""

from __future__ import annotations

import secrets
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any, TypeVar

from . import aws, ddb
from .clock import now_iso
from .errors import AlreadyProcessed, Conflict, NotFound

T = TypeVar("T")

PENDING, IN_PROGRESS = "Pending", "InProgress"
COMPLETED, FAILED, STOPPED = "Completed", "Failed", "Stopped"
ENDED = frozenset({COMPLETED, FAILED, STOPPED})
STATUSES = (PENDING, IN_PROGRESS, COMPLETED, FAILED, STOPPED)
# Which statuses a run may move to from each. An outcome may be recorded again, and differently: the completion
# function hears of one job from its state-change event and from the state machine, and a retried event records
# what the retry found. Nothing goes back to Pending or InProgress.
TRANSITIONS: Mapping[str, frozenset[str]] = {
    PENDING: frozenset({IN_PROGRESS, *ENDED}),
    IN_PROGRESS: ENDED,
    **{status: ENDED for status in ENDED},
}

# Training job names allow [a-zA-Z0-9-] and 63 characters; run ids stay well inside that.
RUN_ID_FORMAT = "%Y%m%d-%H%M%S"


def new_run_id(now: datetime | None = None) -> str:
    """A sortable, unique run id such as 20261129-231500-3f9a."""
    now = now or datetime.now(UTC)
    return f"{now.strftime(RUN_ID_FORMAT)}-{secrets.token_hex(2)}"


def can_become(current: str, status: str) -> bool:
    """Whether a run in the current status may be recorded with the other."""
    return status in TRANSITIONS.get(current, frozenset())


def _check_status(status: str) -> None:
    if status not in STATUSES:
        raise ValueError(f"unknown run status {status!r}: expected one of {', '.join(STATUSES)}")


class Runs:
    """Create, read and update run records."""

    def __init__(self, table_name: str):
        self.table_name = table_name

    def create(self, run_id: str, *, status: str = PENDING, **fields) -> dict:
        _check_status(status)
        item = {"run_id": run_id, "status": status, "created_at": now_iso(), **fields}
        ddb.put_item(self.table_name, item, ConditionExpression="attribute_not_exists(run_id)")
        return item

    def get(self, run_id: str) -> dict:
        item = ddb.get_item(self.table_name, {"run_id": run_id})
        if not item:
            raise NotFound(f"no training run {run_id!r}")
        return item

    def update(self, run_id: str, *, status: str | None = None, **fields) -> None:
        """Set fields of an existing run (None values are skipped); a new status must be one TRANSITIONS allows
        from the run's current one, or Conflict says which it is."""
        fields = {k: v for k, v in {"status": status, **fields}.items() if v is not None}
        fields["updated_at"] = now_iso()
        names = {f"#f{i}": name for i, name in enumerate(fields)}
        values = {f":v{i}": value for i, value in enumerate(fields.values())}
        condition = "attribute_exists(run_id)"
        if status is not None:
            _check_status(status)
            sources = [current for current in STATUSES if can_become(current, status)]
            names["#status"] = "status"
            values.update({f":from{i}": current for i, current in enumerate(sources)})
            condition += f" AND #status IN ({', '.join(f':from{i}' for i in range(len(sources)))})"
        try:
            with aws.translated(f"update run {run_id}"):
                ddb.table(self.table_name).update_item(
                    Key={"run_id": run_id},
                    UpdateExpression="SET " + ", ".join(f"#f{i} = :v{i}" for i in range(len(fields))),
                    ConditionExpression=condition,
                    ExpressionAttributeNames=names,
                    ExpressionAttributeValues=ddb.to_dynamo(values),
                )
        except AlreadyProcessed:
            current = ddb.get_item(self.table_name, {"run_id": run_id}) if status is not None else None
            if not current:
                raise
            raise Conflict(f"training run {run_id} is {current.get('status')}: it cannot become {status}") from None


def start_run(runs: Runs, run_id: str, what: str, start: Callable[[], T]) -> T:
    """Start the work of a recorded run; a start that fails marks the run Failed, saying why, and propagates."""
    try:
        return start()
    except Exception as exc:
        runs.update(run_id, status=FAILED, failure_reason=f"{what} could not be started: {exc}",
                    finished_at=now_iso())
        raise


def pipeline_input(dataset: str, hyperparameters: Mapping[str, Any], *, run_id: str | None = None,
                   labels: Sequence[str] = (), query: str = "{label}", per_label: int = 150, source: str = "ddg",
                   source_options: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The training pipeline's (state machine's) input. No labels skips collection (its Map has nothing to do)
    and only trains. Hyperparameters are the caller's alone: the training job's own defaults fill in the rest."""
    execution_input: dict[str, Any] = {"run_id": run_id} if run_id else {}
    return {
        **execution_input,
        "dataset": dataset,
        "labels": list(labels),
        "query": query,
        "per_label": per_label,
        "source": source,
        "source_options": dict(source_options or {}),
        # The run id rides along, so the run that was recorded is the one the training job says it trained.
        "hyperparameters": {**hyperparameters, "run_id": run_id} if run_id else dict(hyperparameters),
    }
