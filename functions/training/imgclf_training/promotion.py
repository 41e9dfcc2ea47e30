"""Promote a candidate model when it is no worse than the active one."""

from __future__ import annotations

from typing import Any

from imgclf.errors import Conflict
from imgclf.log import get_logger
from imgclf.registry import ModelRegistry
from imgclf.settings import get_settings

logger = get_logger("promotion")


def promote(registry: ModelRegistry, version: str, *, force: bool = False, by: str = "pipeline") -> dict:
    """Try to promote; a refusal is an answer, not an error."""
    try:
        active = registry.promote(version, by=by, force=force)
    except Conflict as exc:
        logger.info("promotion refused", extra={"version": version, "reason": str(exc)})
        current = registry.active()
        return {"promoted": False, "version": version, "active": current.version if current else None,
                "reason": str(exc)}
    logger.info("promoted", extra={"version": version, "previous": active.previous})
    return {"promoted": True, "version": version, "active": active.version, "previous": active.previous}


@logger.inject_lambda_context
def lambda_handler(event: dict, context: Any) -> dict:
    settings = get_settings()
    settings.require("models_table")
    return promote(ModelRegistry(settings.models_table), event["version"], force=bool(event.get("force")),
                   by=event.get("by", "pipeline"))
