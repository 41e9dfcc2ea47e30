"""POST /training-runs, GET /training-runs/{id}, its /review and /audit: start runs, follow them, look at their
errors and at what their dataset audit found."""

from __future__ import annotations

from typing import Annotated

from aws_lambda_powertools.event_handler.openapi.params import Body, Path, Query
from aws_lambda_powertools.event_handler.router import APIGatewayRouter

from imgclf import keys
from imgclf.datasets import Dataset
from imgclf.runs import Runs, new_run_id, pipeline_input

from .. import audit, openapi, training
from ..dependencies import Collaborators, existing_name
from ..reviewers import Paired
from ..schemas import AuditKind, TrainingRun, TrainingRunAudit, TrainingRunRequest, TrainingRunReview
from ..services import Services

router = APIGatewayRouter()
# The review page's routes: also under /review/ for signed-in reviewers (see reviewers.Paired).
paired = Paired(router)


@router.post("/training-runs", summary="Train a model on a collected dataset", tags=["training"], status_code=202,
             responses=openapi.responses(202, TrainingRun, "The run is recorded and its pipeline started",
                                         400, 404, 409, 415, 503))
def create_training_run(request: Annotated[TrainingRunRequest, Body()], s: Collaborators) -> TrainingRun:
    version = Dataset(s.s3, s.settings.data_bucket, request.dataset, s.settings.dataset_prefix).require_version()
    run_id = new_run_id()
    hyperparameters = request.hyperparameters.as_dict()
    item = training.start_pipeline_run(s.settings.runs_table, s.launcher, run_id=run_id, dataset=request.dataset,
                                       version=version, hyperparameters=hyperparameters,
                                       execution_input=pipeline_input(request.dataset, hyperparameters, run_id=run_id),
                                       output_prefix=keys.model_prefix(run_id, s.settings.models_prefix))
    return _training_run(s, item)


@paired.get("/training-runs/<id>", summary="A run's status, metrics and report links", tags=["training"],
            responses=openapi.responses(200, TrainingRun, "The run", 404))
def get_training_run(run_id: Annotated[str, Path(alias="id")], s: Collaborators) -> TrainingRun:
    return _training_run(s, Runs(s.settings.runs_table).get(existing_name("run", run_id)))


@paired.get("/training-runs/<id>/review", summary="The validation images the model got wrong or was unsure of",
            tags=["training"], responses=openapi.responses(200, TrainingRunReview, "The review list", 404))
def review_training_run(run_id: Annotated[str, Path(alias="id")], s: Collaborators) -> TrainingRunReview:
    run = Runs(s.settings.runs_table).get(existing_name("run", run_id))
    items = training.review_items(s.s3, s.settings.data_bucket, run, models_root=s.settings.models_prefix,
                                  datasets_root=s.settings.dataset_prefix)
    return TrainingRunReview(run_id=run["run_id"], items=items)


@paired.get("/training-runs/<id>/audit", summary="The run's whole-dataset audit, less the images already decided",
            description="Label errors, outliers and near-duplicates the run found in its whole dataset "
                        "(audit.json), filtered by kind and label. Images someone decided already (POST "
                        "/datasets/{name}/edits) are left out and counted in decided, unless their label changed "
                        "since the decision.",
            tags=["training"],
            responses=openapi.responses(200, TrainingRunAudit, "The audit", 404,
                                        e404="No such run, or the run has no audit.json (yet)"))
def audit_training_run(
    run_id: Annotated[str, Path(alias="id")],
    s: Collaborators,
    kind: Annotated[AuditKind | None, Query(description="Only findings of this kind")] = None,
    label: Annotated[str | None, Query(min_length=1, max_length=100,
                                       description="Only images with this label when the run trained")] = None,
) -> TrainingRunAudit:
    run = Runs(s.settings.runs_table).get(existing_name("run", run_id))
    found = audit.audit_findings(s.s3, s.settings.data_bucket, run, decisions=s.decisions, kind=kind, label=label,
                                 models_root=s.settings.models_prefix, datasets_root=s.settings.dataset_prefix)
    return TrainingRunAudit(**found)


def _training_run(s: Services, item: dict) -> TrainingRun:
    links = training.report_links(s.s3, s.settings.data_bucket, item["run_id"], models_root=s.settings.models_prefix)
    fields = {name: item.get(name) for name in TrainingRun.model_fields if item.get(name) is not None}
    fields.setdefault("output_prefix", keys.model_prefix(item["run_id"], s.settings.models_prefix))
    fields.setdefault("dataset", "")
    return TrainingRun(**{**fields, "reports": links})
