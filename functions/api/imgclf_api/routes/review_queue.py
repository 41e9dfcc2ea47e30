"""GET /review-queue, POST /review-queue/{key+} and GET /live-accuracy: uploads a person should look at, their
answers, and what the sampled answers say about the model in production (also under /review/ for reviewers)."""

from __future__ import annotations

from typing import Annotated

from aws_lambda_powertools.event_handler import Depends, Request
from aws_lambda_powertools.event_handler.openapi.params import Body, Path, Query
from aws_lambda_powertools.event_handler.router import APIGatewayRouter

from imgclf.review import ReviewQueue

from .. import openapi, review_queue
from ..dependencies import Collaborators
from ..identity import reviewer_identity
from ..reviewers import Paired
from ..schemas import LiveAccuracy, LiveAccuracyEstimate, ReviewQueuePage, ReviewReason, ReviewRequest, ReviewResult

router = APIGatewayRouter()
paired = Paired(router)


def reviewer(request: Request) -> str | None:
    return reviewer_identity(request.resolved_event)


Reviewer = Annotated[str | None, Depends(reviewer)]


@paired.get("/review-queue", summary="The uploads waiting for a person: unknown, low margin or sampled",
            description="Oldest first, from the predictions table's sparse review-queue index. An upload joins "
                        "when its verdict is unknown, its two best probabilities are closer than the stack's "
                        "ReviewMargin, or it is in the ReviewSampleRate random sample; it leaves once decided.",
            tags=["review"], responses=openapi.responses(200, ReviewQueuePage, "One page of the queue", 400))
def list_review_queue(
    s: Collaborators,
    reason: Annotated[ReviewReason | None, Query(description="Only uploads queued for this reason")] = None,
    limit: Annotated[int, Query(ge=1, le=100)] = 20,
    next_token: Annotated[str | None, Query(alias="next", max_length=review_queue.MAX_TOKEN_CHARS,
                                            description="The next token of the previous page")] = None,
) -> ReviewQueuePage:
    items, token = review_queue.list_queue(ReviewQueue(s.settings.predictions_table), s.s3, s.settings.data_bucket,
                                           limit=limit, token=next_token, reason=reason)
    return ReviewQueuePage(items=items, next=token)


# The path matches the rest of the URL, slashes included, as the template's {key+} does (app.ApiResolver.GREEDY).
@paired.post("/review-queue/<key>", summary="Label an upload, mark it none of these, or skip it",
             description="label copies the upload into the dataset (the active model's, or dataset) under the "
                         "label, a new label too, through the collector's validation and de-duplication, with its "
                         "provenance in the manifest (source upload, the upload's key, who, when); none keeps it as "
                         "a negative example under the dataset's .negatives/ folder, which training skips; skip "
                         "only takes it out of the queue. The prediction record keeps the decision. An upload "
                         "decided already, or being decided by someone else, is refused with 409 already_reviewed. "
                         "A label that adds an image counts towards the dataset's next training run, which starts "
                         "on its own at the stack's RetrainAfterLabels.",
             tags=["review"],
             responses=openapi.responses(200, ReviewResult, "The decision as recorded", 400, 404, 409, 415, 503,
                                         e404="No classified upload under this key",
                                         e409="Someone decided this upload already or is deciding it now "
                                              "(already_reviewed); or no dataset to add it to (no_dataset)"))
def review_upload(key: Annotated[str, Path(description="The upload's key, e.g. uploads/cat.jpg")],
                  request: Annotated[ReviewRequest, Body()], s: Collaborators, who: Reviewer) -> ReviewResult:
    by = request.by or who or "anonymous"
    return ReviewResult(**review_queue.decide(s.settings, s.launcher, s.registry, key=key, action=request.action,
                                              label=request.label, dataset=request.dataset, by=by, signed_by=who))


@paired.get("/live-accuracy", summary="Production accuracy per model version, from sampled uploads people labeled",
            description="Only uploads of the random sample (ReviewSampleRate) that a person labeled or marked none "
                        "of these count: the model was right when it answered the person's label, or unknown for "
                        "none of these. With a 95% Wilson score interval.",
            tags=["review"], responses=openapi.responses(200, LiveAccuracy, "The estimates"))
def get_live_accuracy(
    s: Collaborators,
    model_version: Annotated[str | None, Query(max_length=100, description="Only this version")] = None,
) -> LiveAccuracy:
    active = s.registry.active()
    estimates = review_queue.live_accuracy_estimates(ReviewQueue(s.settings.predictions_table), model_version)
    return LiveAccuracy(active_version=active.version if active else None, sample_rate=s.settings.review_sample_rate,
                        estimates=[LiveAccuracyEstimate(**e) for e in estimates])
