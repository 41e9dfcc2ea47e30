"""POST /datasets, GET /datasets/{name} and POST /datasets/{name}/edits: collect, summarise and clean datasets."""

from __future__ import annotations

from typing import Annotated

from aws_lambda_powertools.event_handler.openapi.params import Body, Path
from aws_lambda_powertools.event_handler.router import APIGatewayRouter

from imgclf import keys
from imgclf.datasets import new_collection_run
from imgclf.runs import new_run_id, pipeline_input

from .. import datasets, openapi, training
from .. import edits as dataset_edits
from ..dependencies import Collaborators, Signer, existing_name
from ..reviewers import Paired
from ..schemas import (
    MAX_EDITS,
    DatasetEditsRequest,
    DatasetEditsResponse,
    DatasetRequest,
    DatasetStarted,
    DatasetSummary,
)

router = APIGatewayRouter()
# The review page's routes: also under /review/ for signed-in reviewers (see reviewers.Paired).
paired = Paired(router)


@router.post("/datasets", summary="Start collecting a dataset (and optionally train on it)", tags=["datasets"],
             status_code=202,
             responses=openapi.responses(202, DatasetStarted, "Collection started", 400, 409, 415, 503))
def create_dataset(request: Annotated[DatasetRequest, Body()], s: Collaborators) -> DatasetStarted:
    run = new_collection_run()
    if not request.train:
        started = datasets.start_collection(s.launcher, dataset=request.name, labels=request.labels,
                                            query=request.query, per_label=request.per_label, source=request.source,
                                            run=run)
        return DatasetStarted(dataset=request.name, labels=request.labels, mode="collect", collection_run=run,
                              started=started)
    run_id, hyperparameters = new_run_id(), request.hyperparameters.as_dict()
    execution_input = pipeline_input(request.name, hyperparameters, run_id=run_id, labels=request.labels,
                                     query=request.query, per_label=request.per_label, source=request.source)
    # The dataset is yet to be collected: the training starter records which manifest it trains on.
    item = training.start_pipeline_run(s.settings.runs_table, s.launcher, run_id=run_id, dataset=request.name,
                                       version="", hyperparameters=hyperparameters, execution_input=execution_input,
                                       output_prefix=keys.model_prefix(run_id, s.settings.models_prefix))
    return DatasetStarted(dataset=request.name, labels=request.labels, mode="pipeline", collection_run=run,
                          started=[item["execution"]], run_id=run_id)


@paired.get("/datasets/<name>", summary="Images per label and the latest collection report", tags=["datasets"],
            responses=openapi.responses(200, DatasetSummary, "The dataset", 404))
def get_dataset(name: Annotated[str, Path()], s: Collaborators) -> DatasetSummary:
    return DatasetSummary(**datasets.dataset_summary(s.s3, s.settings.data_bucket, existing_name("dataset", name),
                                                     s.settings.dataset_prefix))


@paired.post("/datasets/<name>/edits",
             summary="Delete, relabel or keep images of a dataset: the review's decisions",
             description=f"At most {MAX_EDITS} edits per request, applied in order; each has its own "
                         "result, so an image deleted or moved already fails alone (not_found). Every applied edit "
                         "is recorded in the manifest with who made it, which changes the dataset version, and as "
                         "a review decision in the decisions table. A request that contradicts a decision someone "
                         "else made (or is making) of the same image is refused whole with 409 decision_conflict, "
                         "nothing applied; an edit that decides the same thing gets status decided.",
             tags=["datasets"],
             responses=openapi.responses(
                 200, DatasetEditsResponse, "Every edit's outcome and the dataset's new version", 400, 404, 409, 415,
                 503,
                 e400="An edit's key is not under datasets/{name}/ (invalid_key; nothing is applied), or the body "
                      "cannot be read (invalid_json)",
                 e404="No such dataset",
                 e409="An edit contradicts another reviewer's decision of the same image (decision_conflict; "
                      "nothing is applied)"))
def edit_dataset(name: Annotated[str, Path()], request: Annotated[DatasetEditsRequest, Body()], s: Collaborators,
                 signed_by: Signer) -> DatasetEditsResponse:
    dataset = existing_name("dataset", name)
    dataset_edits.check_keys(request.edits, dataset, s.settings.dataset_prefix)
    return DatasetEditsResponse(**dataset_edits.apply_edits(
        s.s3, s.settings.data_bucket, dataset, request.edits, by=request.by or signed_by or "anonymous",
        root=s.settings.dataset_prefix, decisions=s.decisions, signed_by=signed_by, run_id=request.run_id))
