"""Lambda entry point of the REST API and the pages: one resolver, the routers of routes/, the error answers."""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from functools import cached_property
from typing import Any

from aws_lambda_powertools.event_handler import APIGatewayRestResolver, Response, content_types
from aws_lambda_powertools.logging import correlation_paths

from imgclf import __version__
from imgclf.log import get_logger, get_tracer

from . import errors, openapi
from .dependencies import SERVICES
from .routes import classify, datasets, health, models, pages, predictions, review_queue, training
from .services import Services, ServicesFromEnvironment

logger = get_logger("api")
tracer = get_tracer("api")
ROUTERS = (pages.router, classify.router, predictions.router, datasets.router, training.router, models.router,
           health.router, review_queue.router)


class ApiResolver(APIGatewayRestResolver):
    """The REST resolver, with the services its routes get (dependencies.services) and API Gateway's greedy
    path variables: a rule listed in GREEDY ends in <name> and matches the rest of the path, as {name+} does."""

    GREEDY = ("/predictions/<key>", "/review-queue/<key>", "/review/review-queue/<key>")

    def __init__(self, services: Callable[[], Services]):
        super().__init__(enable_validation=True)
        self.services = services

    def resolve(self, event: dict, context: Any) -> dict:
        # The context is cleared after every request: the factory goes in again each time.
        self.append_context(**{SERVICES: self.services})
        return super().resolve(event, context)

    @cached_property
    def openapi_document(self) -> dict[str, Any]:
        """The OpenAPI document of every route, as served at /openapi.json and copied to docs/openapi.json."""
        return openapi.document(self, version=__version__)

    @staticmethod
    def _compile_regex(rule: str, base_regex: str = r"^{}/*\Z"):
        # \Z, not $: $ also matches before a final newline, which sent GET /predictions/%0A to the list route.
        if rule in ApiResolver.GREEDY:
            head, name = re.fullmatch(r"(.*)/<(\w+)>", rule).groups()
            return re.compile(f"^{re.escape(head)}/(?P<{name}>.+?)/*\\Z", re.DOTALL)
        # APIGatewayRestResolver's own override fixes "^{}/*$"; go past it to the base with this one.
        return super(APIGatewayRestResolver, APIGatewayRestResolver)._compile_regex(rule, base_regex)


def build_app(services: Callable[[], Services]) -> ApiResolver:
    """The API answering with the collaborators the factory returns (called per request; it may cache)."""
    app = ApiResolver(services)
    for router in ROUTERS:
        app.include_router(router)

    @app.get("/openapi.json", include_in_schema=False)
    def openapi_json() -> Response[str]:
        return Response(status_code=200, content_type=content_types.APPLICATION_JSON,
                        body=json.dumps(app.openapi_document))

    for kind, answer in errors.ANSWERS.items():
        app.exception_handler(kind)(lambda exc, answer=answer: answer(exc, app.current_event))
    return app


def lambda_handler_for(app: ApiResolver) -> Callable[[dict, Any], dict]:
    """The Lambda entry point serving an app."""

    @logger.inject_lambda_context(correlation_id_path=correlation_paths.API_GATEWAY_REST)
    @tracer.capture_lambda_handler
    def handle(event: dict, context: Any) -> dict:
        return errors.refuse_non_json_body(event) or app.resolve(event, context)

    return handle


# One app per execution environment; its services are built on the first request that needs them.
app = build_app(ServicesFromEnvironment())
lambda_handler = lambda_handler_for(app)


def openapi_document() -> dict[str, Any]:
    """The document of the app's routes (`python -m imgclf_api` prints it)."""
    return app.openapi_document
