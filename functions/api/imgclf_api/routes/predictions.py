"""GET /predictions and GET /predictions/{key+}: what the classifier recorded for the uploaded images."""

from __future__ import annotations

from typing import Annotated, Literal

from aws_lambda_powertools.event_handler.openapi.params import Path, Query
from aws_lambda_powertools.event_handler.router import APIGatewayRouter

from imgclf.errors import NotFound

from .. import openapi, predictions
from ..dependencies import Collaborators
from ..schemas import Prediction, PredictionPage

router = APIGatewayRouter()


@router.get("/predictions", summary="List predictions, newest first or by key prefix, optionally by verdict",
            tags=["predictions"],
            responses=openapi.responses(200, PredictionPage, "One page of predictions", 400))
def list_predictions(
    s: Collaborators,
    prefix: Annotated[str, Query(max_length=512, description="Only keys starting with this, in key order")] = "",
    verdict: Annotated[Literal["label", "unknown"] | None, Query(
        description="Only predictions with this verdict (unknown: those the model did not know); a filtered page "
                    "may hold fewer items than limit, even none, and still have a next token")] = None,
    limit: Annotated[int, Query(ge=1, le=100)] = 20,
    next_token: Annotated[str | None, Query(alias="next", max_length=predictions.MAX_TOKEN_CHARS,
                                            description="The next token of the previous page")] = None,
) -> PredictionPage:
    items, token = predictions.list_predictions(s.settings.predictions_table, s.settings.data_bucket,
                                                prefix=prefix, limit=limit, token=next_token, verdict=verdict)
    return PredictionPage(items=[Prediction(**item) for item in items], next=token)


# The path matches the rest of the URL, slashes included, as the template's {key+} does (app.ApiResolver.GREEDY).
@router.get("/predictions/<key>", summary="The prediction of one uploaded image", tags=["predictions"],
            responses=openapi.responses(200, Prediction, "The prediction", 404))
def get_prediction(key: Annotated[str, Path(description="The object key, e.g. uploads/cat.jpg")],
                   s: Collaborators) -> Prediction:
    if len(key.encode()) > 1024:  # S3's limit: no such object can exist
        raise NotFound(f"no prediction for {key[:64]!r}...")
    return Prediction(**predictions.get_prediction(s.settings.predictions_table, s.settings.data_bucket, key))
