"""GET /models, POST /models/{version}/promote and POST /models/rollback: the registry and its active version."""

from __future__ import annotations

from typing import Annotated

from aws_lambda_powertools.event_handler.openapi.params import Body, Path
from aws_lambda_powertools.event_handler.router import APIGatewayRouter

from .. import openapi
from ..dependencies import Collaborators, Signer, existing_name
from ..schemas import ActiveModelInfo, ModelList, ModelVersion, PromoteRequest, RollbackRequest

router = APIGatewayRouter()


@router.get("/models", summary="Every model version and which one is active", tags=["models"],
            responses=openapi.responses(200, ModelList, "The registry"))
def list_models(s: Collaborators) -> ModelList:
    active = s.registry.active()
    versions = [
        ModelVersion(**{k: v for k, v in item.items() if k in ModelVersion.model_fields and v is not None},
                     active=bool(active and item["version"] == active.version))
        for item in s.registry.list_versions()
    ]
    return ModelList(active=active.version if active else None, versions=versions)


@router.post("/models/<version>/promote", summary="Make a version the active model", tags=["models"],
             responses=openapi.responses(200, ActiveModelInfo, "The version is active", 400, 404, 409, 415))
def promote_model(version: Annotated[str, Path()], s: Collaborators, signed_by: Signer,
                  request: Annotated[PromoteRequest | None, Body()] = None) -> ActiveModelInfo:
    request = request or PromoteRequest()
    by = request.by or signed_by or "api"
    active = s.registry.promote(existing_name("model version", version), by=by, force=request.force)
    return _active_info(active, by)


@router.post("/models/rollback", summary="Return to the previously active version", tags=["models"],
             responses=openapi.responses(200, ActiveModelInfo, "The previous version is active", 400, 409, 415))
def rollback_model(s: Collaborators, signed_by: Signer,
                   request: Annotated[RollbackRequest | None, Body()] = None) -> ActiveModelInfo:
    by = (request.by if request else None) or signed_by or "api"
    return _active_info(s.registry.rollback(by=by), by)


def _active_info(active, by: str) -> ActiveModelInfo:
    return ActiveModelInfo(version=active.version, previous=active.previous, promoted_at=active.promoted_at,
                           promoted_by=by, classes=active.classes)
