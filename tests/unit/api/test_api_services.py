"""How the API builds its collaborators: once per environment, again after a settings reset, always ONNX."""

from __future__ import annotations

from dataclasses import replace

from imgclf.settings import get_settings, reset_settings
from imgclf_api import handler
from imgclf_api.launcher import RecordingLauncher
from imgclf_api.services import Services


def test_the_api_classifies_with_the_onnx_graph_even_where_the_classifier_runs_fastai(api_env):
    services = Services.from_settings(replace(api_env, model_backend="fastai"), launcher=RecordingLauncher())

    assert services.classifier.store.backend == "onnx"


def test_collaborators_are_built_once_and_again_after_the_settings_are_reset(api_env):
    first = handler.services()

    assert handler.services() is first
    reset_settings()
    rebuilt = handler.services()
    assert rebuilt is not first
    assert rebuilt.settings is get_settings()


def test_the_local_stack_can_install_its_own_launcher(api_env):
    own = RecordingLauncher()
    handler.use_launcher(own)
    try:
        assert handler.services().launcher is own
    finally:
        handler.use_launcher(None)
    assert handler.services().launcher is not own
