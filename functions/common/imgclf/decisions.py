"""The review's decisions: which image of a dataset someone kept, deleted or moved, and who decided it.

The decisions table holds one item per image of a dataset: key ``dataset`` (the dataset name) and ``image``
(the image's sha256, which stays the same when a relabel moves the object). A decision records the action
(keep, delete, relabel), the label the image had when it was decided (``label``), the label it has after it
(``decided_label``: ``to_label`` for a relabel, ``label`` for keep, empty for delete), who decided it (``by``,
and ``signed_by``, the request's IAM identity), when and in which training run's review.

Deciding is two steps around the edit that carries it out: ``claim`` writes the decision as pending, with a
conditional put that refuses a decision already made (or being made) by someone else; ``finish`` marks it
applied once the edit is in the manifest, ``release`` takes it back when the edit failed. A pending claim
older than ``CLAIM_TTL_S`` (its request died midway) may be claimed again.

A decision stops counting (``superseded``) once the image's label is neither the one it was decided on nor
the one the decision gave it: someone moved it since, so it is worth looking at again.
"""

from __future__ import annotations

import secrets
from datetime import UTC, datetime, timedelta
from typing import Any

from boto3.dynamodb.conditions import Key

from . import aws, ddb
from .clock import now_iso
from .errors import AlreadyProcessed, Conflict
from .manifest import EditRecord, ImageRecord

ACTIONS = ("keep", "delete", "relabel")
PENDING, APPLIED = "pending", "applied"
# Longer than API Gateway's 29 s and the edits' own budget: a claim this old was left by a request that died.
CLAIM_TTL_S = 120

_CLAIMABLE = (
    "attribute_not_exists(#image)"
    " OR (#status = :applied AND :seen <> #label AND :seen <> decided_label)"
    " OR (#status = :pending AND claimed_at < :expired)"
)


class DecisionConflict(Conflict):
    """Someone else decided (or is deciding) the same image differently."""

    code = "decision_conflict"

    def __init__(self, existing: dict):
        super().__init__(existing)
        self.existing = existing

    def __str__(self) -> str:
        e = self.existing
        what = f"relabel to {e.get('to_label')!r}" if e.get("action") == "relabel" else e.get("action", "?")
        state = "is deciding" if e.get("status") == PENDING else "decided"
        return (f"image {e.get('key') or e.get('image')!r} of dataset {e.get('dataset')!r}: {e.get('by') or 'someone'} "
                f"{state} {what} at {e.get('at', '?')}; reload to see it")


def decided_label(action: str, label: str, to_label: str | None) -> str:
    """The label an image has once the decision is carried out ("" once deleted)."""
    return to_label or "" if action == "relabel" else "" if action == "delete" else label


def superseded(decision: dict, current_label: str | None) -> bool:
    """Whether the image's label changed since the decision (None: the image is not in the dataset now)."""
    return current_label is not None and current_label not in {decision.get("label"), decision.get("decided_label")}


def in_force(decision: dict | None, current_label: str | None, *, now: datetime | None = None) -> bool:
    """Whether a decision still hides its image from the review: applied or being applied, and not superseded."""
    if not decision:
        return False
    if decision.get("status") == PENDING:
        return not _expired(decision, now)
    return not superseded(decision, current_label)


def same(decision: dict, action: str, label: str, to_label: str | None) -> bool:
    """Whether a recorded decision decides the same thing on the same label."""
    return (decision.get("action"), decision.get("label"), decision.get("to_label") or None) == (
        action, label, to_label or None)


def image_keys(records: list) -> dict[str, str]:
    """Every key a dataset's images ever had (collected at, moved from, moved to) -> the image's sha256, from
    the manifest's parsed records: a decision names the image, wherever a review saw it."""
    found: dict[str, str] = {}
    for record in records:
        if isinstance(record, ImageRecord) and record.key:
            found[record.key] = record.sha256
        elif isinstance(record, EditRecord):
            found[record.key] = record.sha256
            if record.to_key:
                found[record.to_key] = record.sha256
    return found


class Decisions:
    """Read and make the review's decisions in one DynamoDB table."""

    def __init__(self, table_name: str):
        self.table_name = table_name

    def get(self, dataset: str, image: str) -> dict | None:
        return ddb.get_item(self.table_name, {"dataset": dataset, "image": image})

    def of_dataset(self, dataset: str) -> dict[str, dict]:
        """Every decision of a dataset, by image sha256."""
        found: dict[str, dict] = {}
        start = None
        while True:
            items, start = ddb.query_page(self.table_name, 1000, start, ConsistentRead=True,
                                          KeyConditionExpression=Key("dataset").eq(dataset))
            found.update({item["image"]: item for item in items})
            if not start:
                return found

    def claim(self, dataset: str, image: str, *, action: str, label: str, to_label: str | None = None,
              key: str = "", by: str = "", signed_by: str | None = None, run_id: str | None = None,
              reason: str = "") -> dict | None:
        """Record a pending decision, or None when the same decision is recorded already (nothing to do).

        Raises DecisionConflict when someone else decided the image differently, or is deciding it now.
        """
        if action not in ACTIONS:
            raise ValueError(f"action must be one of {', '.join(ACTIONS)}, not {action!r}")
        existing = self.get(dataset, image)
        if existing and same(existing, action, label, to_label) and in_force(existing, label):
            return None
        item = {
            "dataset": dataset, "image": image, "key": key, "action": action, "label": label,
            "to_label": to_label if action == "relabel" else None,
            "decided_label": decided_label(action, label, to_label),
            "by": by, "signed_by": signed_by, "run_id": run_id, "reason": reason or None,
            "at": now_iso(), "claimed_at": _stamp(_now()), "claim": secrets.token_hex(8), "status": PENDING,
        }
        try:
            ddb.put_item(self.table_name, item, ConditionExpression=_CLAIMABLE,
                         ExpressionAttributeNames={"#image": "image", "#status": "status", "#label": "label"},
                         ExpressionAttributeValues={":applied": APPLIED, ":pending": PENDING, ":seen": label,
                                                    ":expired": _stamp(_now() - timedelta(seconds=CLAIM_TTL_S))})
        except AlreadyProcessed:
            existing = self.get(dataset, image) or {}
            if same(existing, action, label, to_label):
                return None
            raise DecisionConflict(existing) from None
        return {k: v for k, v in item.items() if v is not None}

    def finish(self, claimed: dict, **extra: Any) -> dict:
        """Mark a claimed decision applied (the edit is in the manifest), with what the edit recorded."""
        fields = {"status": APPLIED, "at": now_iso(), **{k: v for k, v in extra.items() if v is not None}}
        names = {f"#f{i}": name for i, name in enumerate(fields)}
        values = {f":v{i}": ddb.to_dynamo(value) for i, value in enumerate(fields.values())}
        try:
            with aws.translated(f"update {self.table_name}"):
                ddb.table(self.table_name).update_item(
                    Key={"dataset": claimed["dataset"], "image": claimed["image"]},
                    UpdateExpression="SET " + ", ".join(f"{n} = :v{i}" for i, n in enumerate(names)),
                    ConditionExpression="claim = :claim",
                    ExpressionAttributeNames=names, ExpressionAttributeValues={**values, ":claim": claimed["claim"]})
        except AlreadyProcessed:
            pass  # the claim expired and was taken over: the later decision stands
        return {**claimed, **fields}

    def release(self, claimed: dict) -> None:
        """Take back a claim whose edit was not applied."""
        try:
            with aws.translated(f"release a claim in {self.table_name}"):
                ddb.table(self.table_name).delete_item(
                    Key={"dataset": claimed["dataset"], "image": claimed["image"]},
                    ConditionExpression="claim = :claim", ExpressionAttributeValues={":claim": claimed["claim"]})
        except AlreadyProcessed:
            pass  # taken over already


def _now() -> datetime:
    return datetime.now(UTC)


def _stamp(moment: datetime) -> str:
    return moment.isoformat(timespec="milliseconds")


def _expired(decision: dict, now: datetime | None = None) -> bool:
    claimed = decision.get("claimed_at") or ""
    return claimed < _stamp((now or _now()) - timedelta(seconds=CLAIM_TTL_S))
