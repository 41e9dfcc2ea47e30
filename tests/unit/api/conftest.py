"""Fixtures of the API unit tests: API Gateway proxy events, moto with the template's resources, a fake model."""

from __future__ import annotations

import base64
import copy
import json
import uuid
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs, urlsplit

import numpy as np
import pytest

from imgclf import aws
from imgclf.errors import NoActiveModel
from imgclf.inference import Classifier, LoadedModel, ModelMetadata, Recipe
from imgclf.inference.backends import Outputs
from imgclf.registry import ModelRegistry
from imgclf.settings import get_settings, reset_settings
from imgclf_api.app import build_app, lambda_handler_for
from imgclf_api.launcher import RecordingPipelineLauncher
from imgclf_api.services import Services
from imgclf_local.apigw import compile_route

CLASSES = ("ants", "bees")


class FixedBackend:
    """A backend that answers the same probabilities for every image."""

    name = "fixed"

    def __init__(self, classes: tuple[str, ...], probabilities: list[float]):
        self.classes = classes
        self.probabilities = np.array(probabilities, dtype=np.float32)

    def prepare(self, image):
        return image

    def predict(self, prepared):
        return np.tile(self.probabilities, (len(prepared), 1))

    def outputs(self, prepared):
        return Outputs(self.predict(prepared), None)


class FakeStore:
    """Stands in for the model store: the model to serve, or None before any promotion."""

    def __init__(self, model: LoadedModel | None):
        self.model = model

    def current(self) -> LoadedModel:
        if self.model is None:
            raise NoActiveModel("no model version has been promoted yet")
        return self.model


def fixed_model(version: str = "20261129-120000-abcd", probabilities=(0.8, 0.2)) -> LoadedModel:
    metadata = ModelMetadata(classes=CLASSES, recipe=Recipe.fastai_valid(64))
    return LoadedModel(version=version, backend=FixedBackend(CLASSES, list(probabilities)), metadata=metadata)


@dataclass
class ApiClient:
    """Calls an app's Lambda handler with API Gateway REST proxy events shaped like
    tests/events/apigw_get_prediction.json."""

    base_event: dict
    context: Any
    routes: list
    handler: Any

    def request(self, method: str, url: str, *, json_body: Any = None, body: bytes | str | None = None,
                content_type: str | None = None, headers: dict[str, str] | None = None) -> ApiResponse:
        split = urlsplit(url)
        resource, params = self._route(method, split.path)
        query = parse_qs(split.query, keep_blank_values=True)
        all_headers = {**self.base_event["headers"], **(headers or {})}
        if json_body is not None:
            body, content_type = json.dumps(json_body), "application/json"
        if content_type:
            all_headers["Content-Type"] = content_type
        binary = isinstance(body, bytes)
        event = copy.deepcopy(self.base_event)
        request_id = str(uuid.uuid4())
        event.update({
            "resource": resource,
            "path": split.path,
            "httpMethod": method,
            "headers": all_headers,
            "multiValueHeaders": {name: [value] for name, value in all_headers.items()},
            "queryStringParameters": {k: v[-1] for k, v in query.items()} or None,
            "multiValueQueryStringParameters": query or None,
            "pathParameters": params or None,
            "body": base64.b64encode(body).decode() if binary else body,
            "isBase64Encoded": binary,
        })
        event["requestContext"].update({"resourcePath": resource, "httpMethod": method, "requestId": request_id,
                                        "path": f"/dev{split.path}"})
        result = self.handler(event, self.context)
        return ApiResponse(result)

    def get(self, url: str, **kwargs) -> ApiResponse:
        return self.request("GET", url, **kwargs)

    def post(self, url: str, **kwargs) -> ApiResponse:
        return self.request("POST", url, **kwargs)

    def _route(self, method: str, path: str) -> tuple[str, dict[str, str]]:
        # Route as API Gateway does, from the template's own routes; unknown paths reach the function as-is.
        for route, pattern in self.routes:
            found = pattern.match(path)
            if found and route.method == method:
                return route.path, found.groupdict()
        return path, {}


class ApiResponse:
    """A proxy result, decoded."""

    def __init__(self, result: dict):
        self.result = result
        self.status = result["statusCode"]
        self.headers = {k.lower(): v for k, v in (result.get("headers") or {}).items()}
        for name, values in (result.get("multiValueHeaders") or {}).items():
            self.headers.setdefault(name.lower(), values[-1])
        raw = result.get("body") or ""
        self.body = base64.b64decode(raw) if result.get("isBase64Encoded") else raw.encode()

    def json(self) -> Any:
        return json.loads(self.body)

    @property
    def error(self) -> dict:
        return self.json()["error"]


@pytest.fixture
def api_env(template_tables, monkeypatch):
    """moto with the template's tables and the data bucket, and the settings the API reads."""
    monkeypatch.setenv("POWERTOOLS_TRACE_DISABLED", "true")
    monkeypatch.setenv("POWERTOOLS_METRICS_DISABLED", "true")
    reset_settings()
    settings = get_settings()
    aws.client("s3").create_bucket(Bucket=settings.data_bucket)
    return settings


@pytest.fixture
def launcher() -> RecordingPipelineLauncher:
    return RecordingPipelineLauncher()


@pytest.fixture
def store() -> FakeStore:
    return FakeStore(fixed_model())


@pytest.fixture
def services(api_env, launcher, store):
    """The API's collaborators against moto, with the fake model and a launcher that records."""
    return Services(settings=api_env, classifier=Classifier(store), registry=ModelRegistry(api_env.models_table),
                    launcher=launcher)


@pytest.fixture
def api(services, event, lambda_context, stack_template) -> ApiClient:
    """The API app built with those collaborators, called as API Gateway would call its function."""
    routes = [(route, compile_route(route.path)[0]) for route in stack_template.functions["ApiFunction"].api_routes]
    return ApiClient(base_event=event("apigw_get_prediction"), context=lambda_context, routes=routes,
                     handler=lambda_handler_for(build_app(lambda: services)))


@pytest.fixture
def s3(api_env):
    return aws.client("s3")
