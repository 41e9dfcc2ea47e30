"""train.py's Hyperparameters own every default: the API, the state machine and the starter pass on only what the
caller set, and everything the API accepts means the same to train.py."""

from __future__ import annotations

import json
import types
import typing
from dataclasses import fields
from pathlib import Path

import pytest

from imgclf.settings import Settings
from imgclf_api.schemas import Hyperparameters as ApiHyperparameters
from imgclf_local.template import REPO_ROOT
from imgclf_training.jobs import training_job_request
from imgclf_trainjob.config import Hyperparameters, load_config

SETTINGS = Settings(stage="dev", data_bucket="imgclf-dev-data", training_image_uri="1.dkr.ecr/imgclf:latest",
                    training_role_arn="arn:aws:iam::123456789012:role/imgclf-dev-sagemaker")
# A value the API accepts for each of its hyperparameters, none of them train.py's default.
SAMPLES = {"arch": "resnet34", "pretrained": False, "epochs": 2, "freeze_epochs": 0, "lr": 0.01, "bs": 16,
           "img_size": 128, "min_scale": 0.75, "valid_pct": 0.25, "seed": 7, "threshold_mode": "precision",
           "target_precision": 0.9, "ood": False, "ood_keep": 0.9,
           "audit": "off", "audit_folds": 3, "recipe": "classic", "max_epochs": 5, "patience": 3, "presize": 256,
           "label_smoothing": 0.2, "keep_best": False, "tta": False}


def _types(annotation) -> set[type]:
    """The types an annotation admits, None left out."""
    if isinstance(annotation, types.UnionType) or typing.get_origin(annotation) is typing.Union:
        return {arg for arg in typing.get_args(annotation) if arg is not type(None)}
    return {annotation}


def _trained_with(hyperparameters: dict, tmp_path: Path) -> Hyperparameters:
    """What train.py reads from the hyperparameters.json SageMaker writes for this request."""
    config = tmp_path / "config"
    config.mkdir(exist_ok=True)
    request = training_job_request(SETTINGS, "20261129-120000-abcd", "ants-bees", hyperparameters)
    (config / "hyperparameters.json").write_text(json.dumps(request["HyperParameters"]))
    return load_config([], env={"SM_INPUT_CONFIG_DIR": str(config)}).hp


@pytest.mark.parametrize("name", sorted(ApiHyperparameters.model_fields))
def test_every_hyperparameter_the_api_accepts_is_one_of_train_pys_with_a_compatible_type(name):
    trained = typing.get_type_hints(Hyperparameters)

    assert name in trained, f"train.py has no hyperparameter {name!r}"
    assert _types(ApiHyperparameters.model_fields[name].annotation) <= _types(trained[name])


def test_every_api_hyperparameter_reaches_train_py_as_it_was_given(tmp_path):
    # GIVEN a request that sets every hyperparameter the API accepts
    assert set(SAMPLES) == set(ApiHyperparameters.model_fields), "give SAMPLES a value for the new hyperparameter"
    given = ApiHyperparameters.model_validate(SAMPLES).as_dict()

    # WHEN the starter turns it into the job's hyperparameters and train.py reads them
    trained = _trained_with(given, tmp_path)

    # THEN train.py trains with exactly those values
    assert {name: getattr(trained, name) for name in SAMPLES} == SAMPLES


def test_the_starter_adds_no_defaults_of_its_own(tmp_path):
    # WHEN a run sets one hyperparameter
    request = training_job_request(SETTINGS, "20261129-120000-abcd", "ants-bees", {"epochs": 2})

    # THEN the job gets that one, plus the run's own id and data, and train.py's defaults fill in the rest
    assert request["HyperParameters"] == {"epochs": "2", "run_id": "20261129-120000-abcd",
                                          "dataset_uri": "s3://imgclf-dev-data/datasets/ants-bees/"}
    trained, defaults = _trained_with({"epochs": 2}, tmp_path), Hyperparameters()
    assert trained.epochs == 2
    assert all(getattr(trained, f.name) == getattr(defaults, f.name)
               for f in fields(Hyperparameters) if f.name not in {"epochs", "run_id", "dataset_uri"})


def test_the_api_passes_on_only_what_the_caller_set():
    assert ApiHyperparameters.model_validate({"lr": 0.01}).as_dict() == {"lr": 0.01}
    assert all(field.default is None for field in ApiHyperparameters.model_fields.values())


def test_the_state_machine_hands_the_hyperparameters_to_the_starter_unchanged():
    definition = json.loads((REPO_ROOT / "infra" / "statemachine" / "pipeline.asl.json").read_text())

    payload = definition["States"]["PrepareTraining"]["Parameters"]["Payload"]

    assert payload["hyperparameters.$"] == "$.hyperparameters"
    assert definition["States"]["Train"]["Parameters"]["HyperParameters.$"] == "$.request.HyperParameters"
