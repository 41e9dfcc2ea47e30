"""Lambda entry point of the REST API and the upload page: thin routes over the modules of this package."""

from __future__ import annotations

import json
import pathlib
import re
import secrets
import threading
import time
from functools import cache
from http import HTTPStatus
from typing import Annotated, Any
from urllib.parse import urlsplit

from aws_lambda_powertools.event_handler import APIGatewayRestResolver, Response, content_types
from aws_lambda_powertools.event_handler.exceptions import NotFoundError
from aws_lambda_powertools.event_handler.openapi.exceptions import (
    RequestUnsupportedContentType,
    RequestValidationError,
)
from aws_lambda_powertools.event_handler.openapi.params import Body, Path, Query
from aws_lambda_powertools.logging import correlation_paths

from imgclf import __version__, keys
from imgclf.errors import ImgclfError, NotFound
from imgclf.log import get_logger, get_tracer
from imgclf.runs import Runs, new_run_id
from imgclf.settings import get_settings

from . import classify as classifying
from . import datasets, openapi, predictions, training, uploads
from . import edits as dataset_edits
from .errors import ApiError, from_project_error
from .launcher import Launcher
from .schemas import (
    MAX_EDITS,
    ActiveModelInfo,
    ClassifyResponse,
    DatasetEditsRequest,
    DatasetEditsResponse,
    DatasetRequest,
    DatasetStarted,
    DatasetSummary,
    ImageInfo,
    ModelList,
    ModelVersion,
    Prediction,
    PredictionPage,
    PromoteRequest,
    RollbackRequest,
    TrainingRun,
    TrainingRunRequest,
    TrainingRunReview,
    UploadRequest,
    UploadResponse,
)
from .services import Services

logger = get_logger("api")
tracer = get_tracer("api")


class Resolver(APIGatewayRestResolver):
    """The REST resolver, plus API Gateway's greedy path variables: a rule ending in <name> listed in GREEDY
    matches the rest of the path, slashes included, as the template's {name+} does."""

    GREEDY = ("/predictions/<key>",)

    @staticmethod
    def _compile_regex(rule: str, base_regex: str = "^{}/*$"):
        if rule in Resolver.GREEDY:
            head, name = re.fullmatch(r"(.*)/<(\w+)>", rule).groups()
            return re.compile(f"^{re.escape(head)}/(?P<{name}>.+?)/*$")
        return APIGatewayRestResolver._compile_regex(rule, base_regex)


app = Resolver(enable_validation=True)

# ---------------------------------------------------------------- collaborators
_built: Services | None = None
_pinned: Services | None = None
_launcher: Launcher | None = None
# The local stack serves requests from several threads; a Lambda environment handles one at a time.
_one_at_a_time = threading.Lock()


def services() -> Services:
    """The routes' collaborators, built on first use and again whenever the settings are reset."""
    global _built
    if _pinned is not None:
        return _pinned
    settings = get_settings()
    if _built is None or _built.settings is not settings:
        _built = Services.from_settings(settings, launcher=_launcher)
    return _built


def use_services(replacement: Services | None) -> None:
    """Serve with these collaborators until called with None (tests)."""
    global _pinned
    _pinned = replacement


def use_launcher(launcher: Launcher | None) -> None:
    """Start collections and pipelines with another launcher (the local stack's); None restores the default."""
    global _launcher, _built
    _launcher, _built = launcher, None


# ---------------------------------------------------------------- the pages and the document
@app.get("/", summary="The upload page", tags=["page"], security=openapi.OPEN,
         responses=openapi.PAGE_RESPONSES)
def page() -> Response[str]:
    return _html_response("page.html", img_src="'self' blob: data:", form_action="'none'")


@app.get("/review", summary="The review page: look through a run's top losses and clean its dataset",
         description="Takes ?run={run id}. Its data routes (GET /training-runs/{id}, .../review and POST "
                     "/datasets/{name}/edits) are IAM routes: in AWS a browser needs an authenticating proxy.",
         tags=["page"], security=openapi.OPEN, responses=openapi.PAGE_RESPONSES)
def review_page() -> Response[str]:
    # The thumbnails are presigned S3 links: the policy lets images come from there and nowhere else.
    return _html_response("review.html", img_src=" ".join(filter(None, ("'self' data:", _thumbnail_origin()))),
                          form_action="'self'")


def _html_response(name: str, *, img_src: str, form_action: str) -> Response[str]:
    """A page under a strict policy: only its own nonce'd script and style, requests to its own origin."""
    nonce = secrets.token_urlsafe(16)
    csp = (f"default-src 'none'; script-src 'nonce-{nonce}'; style-src 'nonce-{nonce}'; img-src {img_src}; "
           f"connect-src 'self'; base-uri 'none'; form-action {form_action}; frame-ancestors 'none'")
    return Response(
        status_code=200,
        content_type="text/html; charset=utf-8",
        body=_page_html(name).replace("{{nonce}}", nonce),
        headers={"Content-Security-Policy": csp, "Cache-Control": "no-store", "X-Content-Type-Options": "nosniff",
                 "Referrer-Policy": "no-referrer"},
    )


def _thumbnail_origin() -> str:
    """scheme://host of the presigned links to dataset images (a signature only: no request is made)."""
    try:
        s = services()
        url = training.presign_get(s.s3, s.settings.data_bucket, f"{s.settings.dataset_prefix}origin.jpg", 60)
    except Exception:  # the page still works, without thumbnails
        logger.warning("no origin for the review page's thumbnails", exc_info=True)
        return ""
    split = urlsplit(url)
    return f"{split.scheme}://{split.netloc}" if split.scheme in ("http", "https") and split.netloc else ""


@app.get("/openapi.json", include_in_schema=False)
def openapi_json() -> Response[str]:
    return Response(status_code=200, content_type=content_types.APPLICATION_JSON,
                    body=json.dumps(openapi_document()))


@cache
def _page_html(name: str) -> str:
    """A page of this package with the shared stylesheet (common.css) in place of its marker."""
    here = pathlib.Path(__file__).parent
    common = (here / "common.css").read_text(encoding="utf-8")
    return (here / name).read_text(encoding="utf-8").replace("/* {{common.css}} */", common.strip())


@cache
def openapi_document() -> dict[str, Any]:
    """The OpenAPI document of every route, as served at /openapi.json and copied to docs/openapi.json."""
    return openapi.document(app, version=__version__)


# ---------------------------------------------------------------- classify and uploads
@app.post("/classify", summary="Classify one image", tags=["classify"], security=openapi.PUBLIC,
          openapi_extensions={"requestBody": openapi.CLASSIFY_BODY},
          responses=openapi.responses(
              200, ClassifyResponse, "The prediction", 400, 404, 413, 415, 503,
              e422="Not an image or an unusable one (image_rejected, see error.reason), or JSON that fails "
                   "validation (validation_error)",
              e503="No model has been promoted yet (no_model), or a backing service is unavailable"))
def classify_image() -> ClassifyResponse:
    started = time.perf_counter()
    s = services()
    event = app.current_event
    data = classifying.request_image(event.headers.get("content-type", ""), event.body, event.is_base64_encoded,
                                     limits=s.limits, uploads=s.uploads)
    model = s.classifier.model()
    prediction, (width, height) = classifying.classify(data, model, s.limits)
    return ClassifyResponse(
        **prediction.as_dict(),
        latency_ms=round((time.perf_counter() - started) * 1000, 2),
        image=ImageInfo(width=width, height=height, bytes=len(data)),
    )


@app.post("/uploads", summary="Get a presigned URL to upload a large image", tags=["classify"],
          status_code=201, responses=openapi.responses(201, UploadResponse, "PUT the image to url", 400, 413, 415))
def create_upload(request: Annotated[UploadRequest, Body()]) -> UploadResponse:
    s = services()
    return UploadResponse(**uploads.presign_upload(
        s.upload_signer, bucket=s.settings.data_bucket, prefix=s.settings.upload_prefix,
        content_type=request.content_type, size=request.bytes, max_bytes=s.settings.max_image_bytes,
    ))


# ---------------------------------------------------------------- predictions
@app.get("/predictions", summary="List predictions, newest first or by key prefix", tags=["predictions"],
         responses=openapi.responses(200, PredictionPage, "One page of predictions", 400))
def list_predictions(
    prefix: Annotated[str, Query(max_length=512, description="Only keys starting with this, in key order")] = "",
    limit: Annotated[int, Query(ge=1, le=100)] = 20,
    next_token: Annotated[str | None, Query(alias="next", max_length=predictions.MAX_TOKEN_CHARS,
                                            description="The next token of the previous page")] = None,
) -> PredictionPage:
    s = services()
    items, token = predictions.list_predictions(s.settings.predictions_table, s.settings.data_bucket,
                                                prefix=prefix, limit=limit, token=next_token)
    return PredictionPage(items=[Prediction(**item) for item in items], next=token)


@app.get("/predictions/<key>", summary="The prediction of one uploaded image", tags=["predictions"],
         responses=openapi.responses(200, Prediction, "The prediction", 404))
def get_prediction(key: Annotated[str, Path(description="The object key, e.g. uploads/cat.jpg")]) -> Prediction:
    s = services()
    if len(key.encode()) > 1024:  # S3's limit: no such object can exist
        raise NotFound(f"no prediction for {key[:64]!r}...")
    return Prediction(**predictions.get_prediction(s.settings.predictions_table, s.settings.data_bucket, key))


# ---------------------------------------------------------------- datasets
@app.post("/datasets", summary="Start collecting a dataset (and optionally train on it)", tags=["datasets"],
          status_code=202, responses=openapi.responses(202, DatasetStarted, "Collection started", 400, 409, 415, 503))
def create_dataset(request: Annotated[DatasetRequest, Body()]) -> DatasetStarted:
    s = services()
    run = datasets.new_collection_run()
    if not request.train:
        started = datasets.start_collection(s.launcher, dataset=request.name, labels=request.labels,
                                            query=request.query, per_label=request.per_label, source=request.source,
                                            run=run)
        return DatasetStarted(dataset=request.name, labels=request.labels, mode="collect", collection_run=run,
                              started=started)
    run_id, hyperparameters = new_run_id(), request.hyperparameters.as_dict()
    execution_input = training.pipeline_input(run_id, request.name, hyperparameters, labels=request.labels,
                                              query=request.query, per_label=request.per_label,
                                              source=request.source)
    # The dataset is yet to be collected: the training starter records which manifest it trains on.
    item = _start_run(s, run_id, request.name, hyperparameters, execution_input, version="")
    return DatasetStarted(dataset=request.name, labels=request.labels, mode="pipeline", collection_run=run,
                          started=[item["execution"]], run_id=run_id)


@app.get("/datasets/<name>", summary="Images per label and the latest collection report", tags=["datasets"],
         responses=openapi.responses(200, DatasetSummary, "The dataset", 404))
def get_dataset(name: Annotated[str, Path()]) -> DatasetSummary:
    s = services()
    return DatasetSummary(**datasets.dataset_summary(s.s3, s.settings.data_bucket, _existing_name("dataset", name),
                                                     s.settings.dataset_prefix))


@app.post("/datasets/<name>/edits", summary="Delete, relabel or keep images of a dataset: the review's decisions",
          description=f"At most {MAX_EDITS} edits per request, applied in order; each has its own "
                      "result, so an image deleted or moved already fails alone (not_found). Every applied edit "
                      "is recorded in the manifest with who made it, which changes the dataset version.",
          tags=["datasets"],
          responses=openapi.responses(
              200, DatasetEditsResponse, "Every edit's outcome and the dataset's new version", 400, 404, 415, 503,
              e400="An edit's key is not under datasets/{name}/ (invalid_key; nothing is applied), or the body "
                   "cannot be read (invalid_json)",
              e404="No such dataset"))
def edit_dataset(name: Annotated[str, Path()],
                 request: Annotated[DatasetEditsRequest, Body()]) -> DatasetEditsResponse:
    s = services()
    dataset = _existing_name("dataset", name)
    dataset_edits.check_keys(request.edits, dataset, s.settings.dataset_prefix)
    return DatasetEditsResponse(**dataset_edits.apply_edits(
        s.s3, s.settings.data_bucket, dataset, request.edits, by=request.by or _caller("anonymous"),
        root=s.settings.dataset_prefix))


# ---------------------------------------------------------------- training runs
@app.post("/training-runs", summary="Train a model on a collected dataset", tags=["training"], status_code=202,
          responses=openapi.responses(202, TrainingRun, "The run is recorded and its pipeline started",
                                      400, 404, 409, 415, 503))
def create_training_run(request: Annotated[TrainingRunRequest, Body()]) -> TrainingRun:
    s = services()
    version = training.dataset_version(s.s3, s.settings.data_bucket, request.dataset, s.settings.dataset_prefix)
    run_id = new_run_id()
    hyperparameters = request.hyperparameters.as_dict()
    item = _start_run(s, run_id, request.dataset, hyperparameters,
                      training.pipeline_input(run_id, request.dataset, hyperparameters), version=version)
    return _training_run(s, item)


@app.get("/training-runs/<id>", summary="A run's status, metrics and report links", tags=["training"],
         responses=openapi.responses(200, TrainingRun, "The run", 404))
def get_training_run(run_id: Annotated[str, Path(alias="id")]) -> TrainingRun:
    s = services()
    return _training_run(s, Runs(s.settings.runs_table).get(_existing_name("run", run_id)))


@app.get("/training-runs/<id>/review", summary="The validation images the model got wrong or was unsure of",
         tags=["training"], responses=openapi.responses(200, TrainingRunReview, "The review list", 404))
def review_training_run(run_id: Annotated[str, Path(alias="id")]) -> TrainingRunReview:
    s = services()
    run = Runs(s.settings.runs_table).get(_existing_name("run", run_id))
    items = training.review_items(s.s3, s.settings.data_bucket, run, models_root=s.settings.models_prefix,
                                  datasets_root=s.settings.dataset_prefix)
    return TrainingRunReview(run_id=run["run_id"], items=items)


def _start_run(s: Services, run_id: str, dataset: str, hyperparameters: dict, execution_input: dict, *,
               version: str) -> dict:
    return training.start_run(s.settings.runs_table, s.launcher, run_id=run_id, dataset=dataset, version=version,
                              hyperparameters=hyperparameters, execution_input=execution_input,
                              output_prefix=keys.model_prefix(run_id, s.settings.models_prefix))


def _training_run(s: Services, item: dict) -> TrainingRun:
    links = training.report_links(s.s3, s.settings.data_bucket, item["run_id"], models_root=s.settings.models_prefix)
    fields = {name: item.get(name) for name in TrainingRun.model_fields if item.get(name) is not None}
    fields.setdefault("output_prefix", keys.model_prefix(item["run_id"], s.settings.models_prefix))
    fields.setdefault("dataset", "")
    return TrainingRun(**{**fields, "reports": links})


# ---------------------------------------------------------------- models
@app.get("/models", summary="Every model version and which one is active", tags=["models"],
         responses=openapi.responses(200, ModelList, "The registry"))
def list_models() -> ModelList:
    registry = services().registry
    active = registry.active()
    versions = [
        ModelVersion(**{k: v for k, v in item.items() if k in ModelVersion.model_fields and v is not None},
                     active=bool(active and item["version"] == active.version))
        for item in registry.list_versions()
    ]
    return ModelList(active=active.version if active else None, versions=versions)


@app.post("/models/<version>/promote", summary="Make a version the active model", tags=["models"],
          responses=openapi.responses(200, ActiveModelInfo, "The version is active", 400, 404, 409, 415))
def promote_model(version: Annotated[str, Path()],
                  request: Annotated[PromoteRequest | None, Body()] = None) -> ActiveModelInfo:
    request = request or PromoteRequest()
    by = request.by or _caller()
    active = services().registry.promote(_existing_name("model version", version), by=by, force=request.force)
    return _active_info(active, by)


@app.post("/models/rollback", summary="Return to the previously active version", tags=["models"],
          responses=openapi.responses(200, ActiveModelInfo, "The previous version is active", 400, 409, 415))
def rollback_model(request: Annotated[RollbackRequest | None, Body()] = None) -> ActiveModelInfo:
    by = (request.by if request else None) or _caller()
    return _active_info(services().registry.rollback(by=by), by)


def _active_info(active, by: str) -> ActiveModelInfo:
    return ActiveModelInfo(version=active.version, previous=active.previous, promoted_at=active.promoted_at,
                           promoted_by=by, classes=active.classes)


def _caller(default: str = "api") -> str:
    """Who signed the request (IAM routes), for the registry's promoted_by and the datasets' audit trail."""
    identity = app.current_event.request_context.identity
    return identity.user_arn or identity.caller or default


def _existing_name(kind: str, value: str) -> str:
    """A path segment as a name; one that no item can have is simply not found."""
    try:
        return keys.check_name(kind, value)
    except ValueError as exc:
        raise NotFound(f"no {kind} {value[:100]!r}") from exc


# ---------------------------------------------------------------- errors: one shape everywhere
def error_response(status: int, code: str, message: str, *, reason: str | None = None,
                   request_id: str | None = None, headers: dict[str, str] | None = None) -> Response:
    error = {"code": code, "message": message}
    if reason:
        error["reason"] = reason
    if request_id:
        error["request_id"] = request_id
    return Response(status_code=int(status), content_type=content_types.APPLICATION_JSON, body={"error": error},
                    headers=headers)


@app.exception_handler(ApiError)
def _api_error(exc: ApiError) -> Response:
    return error_response(exc.status, exc.code, exc.message, reason=exc.reason)


@app.exception_handler(ImgclfError)
def _project_error(exc: ImgclfError) -> Response:
    answer = from_project_error(exc)
    if answer.status >= HTTPStatus.INTERNAL_SERVER_ERROR and answer.status != HTTPStatus.SERVICE_UNAVAILABLE:
        return _internal_error(exc, code=answer.code)
    headers = {"Retry-After": "5"} if answer.status == HTTPStatus.SERVICE_UNAVAILABLE else None
    return error_response(answer.status, answer.code, answer.message, reason=answer.reason, headers=headers)


@app.exception_handler(RequestValidationError)
def _validation_error(exc: RequestValidationError) -> Response:
    errors = exc.errors()
    # Powertools reports a response that breaks its own model with this same exception: that is our fault.
    if any(tuple(e.get("loc", ()))[:1] == ("response",) for e in errors):
        return _internal_error(exc)
    if any(e.get("type") == "json_invalid" for e in errors):
        return error_response(HTTPStatus.BAD_REQUEST, "invalid_json", "the body is not valid JSON")
    problems = "; ".join(f"{'.'.join(str(part) for part in e.get('loc', ()))}: {e.get('msg', e.get('type'))}"
                         for e in errors)
    return error_response(HTTPStatus.UNPROCESSABLE_ENTITY, "validation_error", problems or "invalid request")


@app.exception_handler(RequestUnsupportedContentType)
def _unsupported_content_type(exc: RequestUnsupportedContentType) -> Response:
    return error_response(HTTPStatus.UNSUPPORTED_MEDIA_TYPE, "unsupported_media_type", "send application/json")


@app.not_found
def _no_route(exc: NotFoundError) -> Response:
    event = app.current_event
    return error_response(HTTPStatus.NOT_FOUND, "not_found", f"no route for {event.http_method} {event.path}")


@app.exception_handler(Exception)
def _unexpected(exc: Exception) -> Response:
    return _internal_error(exc)


def _internal_error(exc: Exception, *, code: str = "internal_error") -> Response:
    request_id = app.current_event.request_context.request_id
    logger.exception("request failed", extra={"request_id": request_id, "error_type": type(exc).__name__})
    return error_response(HTTPStatus.INTERNAL_SERVER_ERROR, code,
                          "the server could not complete the request; quote the request id when reporting it",
                          request_id=request_id)


# ---------------------------------------------------------------- entry point
def lambda_handler(event: dict, context: Any) -> dict:
    with _one_at_a_time:
        return _handle(event, context)


@logger.inject_lambda_context(correlation_id_path=correlation_paths.API_GATEWAY_REST)
@tracer.capture_lambda_handler
def _handle(event: dict, context: Any) -> dict:
    return _refuse_non_json_body(event) or app.resolve(event, context)


def _refuse_non_json_body(event: dict) -> dict | None:
    """415 for a body that is not JSON on a route other than /classify, before Powertools tries to parse it
    as a form (it raises on a multipart body without a boundary)."""
    if event.get("httpMethod") != "POST" or event.get("resource") == "/classify":
        return None
    headers = {name.lower(): value for name, value in (event.get("headers") or {}).items()}
    media_type = headers.get("content-type", "").split(";")[0].strip().lower()
    if media_type in ("", content_types.APPLICATION_JSON) or media_type.endswith("+json"):
        return None
    error = {"code": "unsupported_media_type", "message": f"send application/json, not {media_type}"}
    return {"statusCode": int(HTTPStatus.UNSUPPORTED_MEDIA_TYPE), "body": json.dumps({"error": error}),
            "headers": {"Content-Type": content_types.APPLICATION_JSON}, "isBase64Encoded": False}
