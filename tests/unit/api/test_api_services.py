"""How the API gets its collaborators: from the factory its app is built with, by default once per environment."""

from __future__ import annotations

from dataclasses import replace
from types import SimpleNamespace

from imgclf.settings import get_settings, reset_settings
from imgclf_api import app as app_module
from imgclf_api.app import build_app, lambda_handler_for
from imgclf_api.launcher import RecordingPipelineLauncher
from imgclf_api.services import Services, ServicesFromEnvironment


def test_the_api_classifies_with_the_onnx_graph_even_where_the_classifier_runs_fastai(api_env):
    services = Services.from_settings(replace(api_env, model_backend="fastai"), launcher=RecordingPipelineLauncher())

    assert services.classifier.store.backend == "onnx"


def test_the_default_factory_builds_once_and_again_after_the_settings_are_reset(api_env):
    # GIVEN the factory the deployed app uses
    factory = ServicesFromEnvironment()

    # WHEN it is asked twice, then again after the settings are reset
    first = factory()
    second = factory()
    reset_settings()
    rebuilt = factory()

    # THEN the first build is reused until the settings change
    assert second is first
    assert rebuilt is not first
    assert rebuilt.settings is get_settings()


def test_the_default_factory_serves_with_a_launcher_it_is_given(api_env):
    own = RecordingPipelineLauncher()

    assert ServicesFromEnvironment(launcher=own)().launcher is own
    assert ServicesFromEnvironment()().launcher is not own


class FakeRegistry:
    """Answers GET /models with one version, and counts the calls."""

    def __init__(self):
        self.calls = 0

    def active(self):
        self.calls += 1
        return SimpleNamespace(version="v1")

    def list_versions(self):
        return [{"version": "v1", "created_at": "2026-11-29T00:00:00.000+00:00"}]


def test_an_app_answers_with_the_services_of_its_factory_and_leaves_the_module_app_alone(event, lambda_context):
    # GIVEN an app built with a factory of fake services, and the module's own app as it was
    registry = FakeRegistry()
    fake = SimpleNamespace(registry=registry)
    built = build_app(lambda: fake)
    default_services = app_module.app.services
    request = {**event("apigw_get_prediction"), "resource": "/models", "path": "/models", "httpMethod": "GET",
               "pathParameters": None, "queryStringParameters": None, "multiValueQueryStringParameters": None}

    # WHEN it answers a request
    result = lambda_handler_for(built)(request, lambda_context)

    # THEN its factory's services answered, and the module's app still has its own factory
    assert result["statusCode"] == 200, result["body"]
    assert '"active":"v1"' in result["body"].replace(" ", "")
    assert registry.calls == 1
    assert app_module.app.services is default_services
    assert isinstance(default_services, ServicesFromEnvironment)
