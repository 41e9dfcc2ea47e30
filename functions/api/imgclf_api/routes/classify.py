"""POST /classify and POST /uploads: classify an image now, or get a URL to upload one for the pipeline."""

from __future__ import annotations

import time
from typing import Annotated

from aws_lambda_powertools.event_handler import Request
from aws_lambda_powertools.event_handler.openapi.params import Body
from aws_lambda_powertools.event_handler.router import APIGatewayRouter

from .. import classify as classifying
from .. import openapi, uploads
from ..dependencies import Collaborators
from ..schemas import ClassifyResponse, ImageInfo, UploadRequest, UploadResponse

router = APIGatewayRouter()


@router.post("/classify", summary="Classify one image", tags=["classify"], security=openapi.PUBLIC,
             openapi_extensions={"requestBody": openapi.CLASSIFY_BODY},
             responses=openapi.responses(
                 200, ClassifyResponse, "The prediction", 400, 404, 413, 415, 503,
                 e422="Not an image or an unusable one (image_rejected, see error.reason), or JSON that fails "
                      "validation (validation_error)",
                 e503="No model has been promoted yet (no_model), or a backing service is unavailable"))
def classify_image(request: Request, s: Collaborators) -> ClassifyResponse:
    started = time.perf_counter()
    event = request.resolved_event
    data = classifying.request_image(event.headers.get("content-type", ""), event.body, event.is_base64_encoded,
                                     limits=s.limits, uploads=s.uploads)
    model = s.classifier.model()
    prediction, (width, height) = classifying.classify(data, model, s.limits)
    return ClassifyResponse(
        **prediction.as_dict(),
        latency_ms=round((time.perf_counter() - started) * 1000, 2),
        image=ImageInfo(width=width, height=height, bytes=len(data)),
    )


@router.post("/uploads", summary="Get a presigned URL to upload a large image", tags=["classify"],
             status_code=201,
             responses=openapi.responses(201, UploadResponse, "PUT the image to url", 400, 413, 415))
def create_upload(request: Annotated[UploadRequest, Body()], s: Collaborators) -> UploadResponse:
    return UploadResponse(**uploads.presign_upload(
        s.upload_signer, bucket=s.settings.data_bucket, prefix=s.settings.upload_prefix,
        content_type=request.content_type, size=request.bytes, max_bytes=s.settings.max_image_bytes,
    ))
