"""The review page's routes: each handler the page calls also answers under /review/, for people signed in to the
reviewer pool, while its plain path keeps IAM for machines and ops (API Gateway takes one authorizer per method)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from aws_lambda_powertools.event_handler.router import APIGatewayRouter

from . import openapi

REVIEW_PREFIX = "/review"


class Paired:
    """A router's get and post that register each handler twice: at its rule for machines (SigV4), and at
    /review + rule for reviewers (their Cognito id token), documented with each one's security."""

    def __init__(self, router: APIGatewayRouter):
        self.router = router

    def get(self, rule: str, **options: Any) -> Callable[[Callable], Callable]:
        return self._both(self.router.get, rule, options)

    def post(self, rule: str, **options: Any) -> Callable[[Callable], Callable]:
        return self._both(self.router.post, rule, options)

    @staticmethod
    def _both(route: Callable[..., Callable], rule: str, options: dict[str, Any]) -> Callable[[Callable], Callable]:
        def register(handler: Callable) -> Callable:
            responses = dict(options.get("responses") or {})
            responses[401] = openapi.error_response(401)
            route(REVIEW_PREFIX + rule, **{**options, "security": openapi.REVIEWER, "responses": responses})(handler)
            return route(rule, **options)(handler)

        return register
