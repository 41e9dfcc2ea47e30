"""The model registry: every trained version, and the record that says which one is active.

The models table holds one item per version (``version`` = the training run id) and one pointer item,
``version = "@active"``, which promotion replaces atomically. The pointer carries the sha256 of the active
version's artifacts, so the classifier can check what it downloads before it loads anything.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from . import ddb
from .clock import now_iso
from .errors import AlreadyProcessed, Conflict, NotFound

ACTIVE = "@active"


@dataclass(frozen=True)
class ActiveModel:
    """The version the classifier should serve and the checksums of its artifacts."""

    version: str
    artifacts: dict[str, str]  # artifact name -> sha256
    promoted_at: str = ""
    previous: str | None = None
    classes: list[str] = field(default_factory=list)


class ModelRegistry:
    """Read and change the model registry in one DynamoDB table."""

    def __init__(self, table_name: str):
        self.table_name = table_name

    def register(self, version: str, *, artifacts: dict[str, str], metrics: dict, classes: list[str],
                 dataset: str = "", dataset_version: str = "", run_id: str = "", extra: dict | None = None) -> dict:
        """Record a finished training run as a candidate version (once)."""
        item = {
            "version": version,
            "status": "candidate",
            "artifacts": artifacts,
            "metrics": metrics,
            "classes": classes,
            "dataset": dataset,
            "dataset_version": dataset_version,
            "run_id": run_id or version,
            "created_at": now_iso(),
            **(extra or {}),
        }
        try:
            ddb.put_item(self.table_name, item, ConditionExpression="attribute_not_exists(version)")
        except AlreadyProcessed as exc:
            raise Conflict(f"model version {version} is already registered") from exc
        return item

    def get(self, version: str) -> dict:
        item = ddb.get_item(self.table_name, {"version": version})
        if not item or version == ACTIVE:
            raise NotFound(f"no model version {version!r}")
        return item

    def list_versions(self) -> list[dict]:
        """Every registered version, newest first."""
        items = [i for i in ddb.scan_all(self.table_name) if i["version"] != ACTIVE]
        return sorted(items, key=lambda i: i.get("created_at", ""), reverse=True)

    def active(self) -> ActiveModel | None:
        """The active model, or None when nothing has been promoted yet."""
        item = ddb.get_item(self.table_name, {"version": ACTIVE})
        if not item:
            return None
        return ActiveModel(
            version=item["active_version"],
            artifacts=item["artifacts"],
            promoted_at=item.get("promoted_at", ""),
            previous=item.get("previous_version"),
            classes=item.get("classes", []),
        )

    def promote(self, version: str, *, by: str = "", force: bool = False, metric: str = "error_rate") -> ActiveModel:
        """Make a version active; refused when it is worse than the active one on the same metric, unless forced."""
        candidate = self.get(version)
        current = self.active()
        if current and current.version == version:
            return current
        if current and not force:
            active_item = self.get(current.version)
            new, old = candidate.get("metrics", {}).get(metric), active_item.get("metrics", {}).get(metric)
            same_valid = candidate.get("valid_set") == active_item.get("valid_set")
            if new is not None and old is not None and same_valid and new > old:
                raise Conflict(
                    f"refusing to promote {version}: {metric} {new:.4f} is worse than the active "
                    f"{current.version}'s {old:.4f}; pass force to override"
                )
        return self._set_active(candidate, current, by)

    def rollback(self, *, by: str = "") -> ActiveModel:
        """Return to the version that was active before the current one."""
        current = self.active()
        if not current or not current.previous:
            raise Conflict("there is no previous model version to roll back to")
        return self._set_active(self.get(current.previous), current, by)

    def _set_active(self, candidate: dict, current: ActiveModel | None, by: str) -> ActiveModel:
        pointer = {
            "version": ACTIVE,
            "active_version": candidate["version"],
            "artifacts": candidate["artifacts"],
            "classes": candidate.get("classes", []),
            "previous_version": current.version if current else None,
            "promoted_at": now_iso(),
            "promoted_by": by,
        }
        # The condition makes two concurrent promotions from the same state fail rather than interleave.
        condition = (
            {"ConditionExpression": "active_version = :cur", "ExpressionAttributeValues": {":cur": current.version}}
            if current
            else {"ConditionExpression": "attribute_not_exists(version)"}
        )
        try:
            ddb.put_item(self.table_name, pointer, **condition)
        except AlreadyProcessed as exc:
            raise Conflict("the active model changed during promotion; try again") from exc
        return ActiveModel(
            version=candidate["version"],
            artifacts=candidate["artifacts"],
            promoted_at=pointer["promoted_at"],
            previous=pointer["previous_version"],
            classes=pointer["classes"],
        )
