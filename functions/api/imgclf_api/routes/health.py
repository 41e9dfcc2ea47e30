"""GET /model-health (and /review/model-health for the review page): uploads, unknown rate, latency, queue."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated

from aws_lambda_powertools.event_handler.openapi.params import Query
from aws_lambda_powertools.event_handler.router import APIGatewayRouter

from imgclf.review import ReviewQueue, live_accuracy

from .. import health, openapi
from ..dependencies import Collaborators
from ..reviewers import Paired
from ..schemas import ModelHealth

router = APIGatewayRouter()
paired = Paired(router)


@paired.get("/model-health", summary="Uploads per hour, unknown rate, review queue, live accuracy and latency",
            description="Computed from the predictions table's by-time index over the last hours (a query, at most "
                        f"{health.MAX_RECORDS} records; more make truncated true). The CloudWatch dashboard "
                        "ModelHealthDashboard shows the same numbers over time.",
            tags=["health"], responses=openapi.responses(200, ModelHealth, "The window's numbers", 503))
def model_health(s: Collaborators,
                 hours: Annotated[int, Query(ge=1, le=168, description="The window, in hours")] = 24) -> ModelHealth:
    queue = ReviewQueue(s.settings.predictions_table)
    found = health.model_health(s.settings.predictions_table, s.settings.data_bucket, now=datetime.now(UTC),
                                hours=hours, queue_depth=queue.depth,
                                live_accuracy=lambda: health.active_estimate(
                                    live_accuracy(queue.decided_samples()), s.registry.active()))
    return ModelHealth(**found)
