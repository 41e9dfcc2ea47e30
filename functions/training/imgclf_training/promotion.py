"""Promote a candidate model when it is no worse than the active one."""

from __future__ import annotations

from typing import Any

from imgclf.errors import Conflict
from imgclf.log import get_logger
from imgclf.registry import ModelRegistry, PromotionRefused
from imgclf.settings import get_settings

logger = get_logger("promotion")


def promote(registry: ModelRegistry, version: str, *, force: bool = False, by: str = "pipeline",
            tolerance: float | None = None) -> dict:
    """Try to promote; a refusal is an answer, not an error. Where the candidate's labels differ from the active
    model's, the answer has the guard's comparison: both errors on the shared labels, each new label's recall."""
    try:
        active = registry.promote(version, by=by, force=force, tolerance=tolerance)
    except Conflict as exc:
        comparison = exc.comparison if isinstance(exc, PromotionRefused) else None
        logger.info("promotion refused", extra={"version": version, "reason": str(exc), "comparison": comparison})
        current = registry.active()
        refused = {"promoted": False, "version": version, "active": current.version if current else None,
                   "reason": str(exc)}
        return {**refused, "comparison": comparison} if comparison else refused
    logger.info("promoted", extra={"version": version, "previous": active.previous, "comparison": active.comparison})
    promoted = {"promoted": True, "version": version, "active": active.version, "previous": active.previous}
    return {**promoted, "comparison": active.comparison} if active.comparison else promoted


@logger.inject_lambda_context
def lambda_handler(event: dict, context: Any) -> dict:
    settings = get_settings()
    settings.require("models_table")
    return promote(ModelRegistry(settings.models_table), event["version"], force=bool(event.get("force")),
                   by=event.get("by", "pipeline"), tolerance=settings.promotion_tolerance)
