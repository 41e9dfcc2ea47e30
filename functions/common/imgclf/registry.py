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
# Where the candidate knows labels the active model does not, the two are compared on the labels both know, from
# each one's own validation split: the candidate may be this much worse there before it is refused, since the
# splits differ (the new data moved images between them) and a few images decide a small validation set.
SHARED_LABELS_TOLERANCE = 0.02


@dataclass(frozen=True)
class ActiveModel:
    """The version the classifier should serve and the checksums of its artifacts."""

    version: str
    artifacts: dict[str, str]  # artifact name -> sha256
    promoted_at: str = ""
    previous: str | None = None
    classes: list[str] = field(default_factory=list)
    comparison: dict | None = None  # what the promotion guard compared, where the label sets differ


class PromotionRefused(Conflict):
    """The guard found the candidate worse than the active model."""

    def __init__(self, message: str, comparison: dict | None = None):
        super().__init__(message)
        self.comparison = comparison


def shared_label_error(metrics: dict, labels: list[str]) -> float | None:
    """The error rate on the validation images of some labels, from per-class recall and support (None when the
    metrics have no per-class block for them)."""
    per_class = metrics.get("per_class") or {}
    scored = [per_class[label] for label in labels
              if isinstance(per_class.get(label), dict) and per_class[label].get("recall") is not None]
    support = sum(int(s.get("support") or 0) for s in scored)
    if not scored or not support:
        return None
    hits = sum(float(s["recall"]) * int(s.get("support") or 0) for s in scored)
    return 1.0 - hits / support


def compare_label_sets(candidate: dict, active: dict) -> dict:
    """Two versions with different labels: their errors on the labels both know (an image of a shared label the
    candidate calls by a new label is an error), and the recall of each label only the candidate knows."""
    new_classes, old_classes = list(candidate.get("classes") or []), list(active.get("classes") or [])
    shared = [label for label in new_classes if label in old_classes]
    per_class = (candidate.get("metrics") or {}).get("per_class") or {}
    return {
        "shared_labels": shared,
        "candidate_error": shared_label_error(candidate.get("metrics") or {}, shared),
        "active_error": shared_label_error(active.get("metrics") or {}, shared),
        "new_labels": {label: {"recall": (per_class.get(label) or {}).get("recall"),
                               "support": (per_class.get(label) or {}).get("support")}
                       for label in new_classes if label not in old_classes},
        "dropped_labels": [label for label in old_classes if label not in new_classes],
        "tolerance": SHARED_LABELS_TOLERANCE,
    }


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
        items = [i for i in ddb.scan_all(self.table_name) if not i["version"].startswith("@")]
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

    def promote(self, version: str, *, by: str = "", force: bool = False, metric: str = "error_rate",
                tolerance: float | None = None) -> ActiveModel:
        """Make a version active; refused when it is worse than the active one on the same metric, or, where their
        labels differ, on the labels both know by more than tolerance (SHARED_LABELS_TOLERANCE), unless forced."""
        tolerance = SHARED_LABELS_TOLERANCE if tolerance is None else tolerance
        candidate = self.get(version)
        current = self.active()
        if current and current.version == version:
            return current
        comparison = None
        if current:
            active_item = self.get(current.version)
            if set(candidate.get("classes") or []) != set(active_item.get("classes") or []):
                # New data brought a label (or dropped one): the overall error rates count different classes.
                comparison = {**compare_label_sets(candidate, active_item), "tolerance": tolerance}
                new, old = comparison["candidate_error"], comparison["active_error"]
                if not force and new is not None and old is not None and new > old + tolerance:
                    raise PromotionRefused(
                        f"refusing to promote {version}: its error on the labels both know "
                        f"({', '.join(comparison['shared_labels'])}) is {new:.4f}, worse than the active "
                        f"{current.version}'s {old:.4f} by more than {tolerance}; pass force to override",
                        comparison)
            elif not force:
                new, old = candidate.get("metrics", {}).get(metric), active_item.get("metrics", {}).get(metric)
                same_valid = candidate.get("valid_set") == active_item.get("valid_set")
                if new is not None and old is not None and same_valid and new > old:
                    raise PromotionRefused(
                        f"refusing to promote {version}: {metric} {new:.4f} is worse than the active "
                        f"{current.version}'s {old:.4f}; pass force to override"
                    )
        active = self._set_active(candidate, current, by)
        return ActiveModel(**{**active.__dict__, "comparison": comparison}) if comparison else active

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
