"""The training starter's request, the completion handler's bookkeeping, and promotion decisions."""

from __future__ import annotations

import hashlib
import io
import json
import tarfile

import boto3
import botocore.session
import pytest
from botocore.validate import ParamValidator

from imgclf.errors import IntegrityError
from imgclf.registry import ModelRegistry
from imgclf.runs import Runs
from imgclf.settings import Settings, get_settings
from imgclf_training import completion
from imgclf_training.jobs import artifact_keys, training_job_request
from imgclf_training.promotion import promote
from imgclf_training.starter import prepare_run

SETTINGS = Settings(stage="dev", data_bucket="imgclf-dev-data", training_image_uri="1.dkr.ecr/imgclf:latest",
                    training_role_arn="arn:aws:iam::123456789012:role/imgclf-dev-sagemaker",
                    training_use_spot=True)


def _validate(operation: str, request: dict) -> None:
    model = botocore.session.get_session().get_service_model("sagemaker").operation_model(operation)
    report = ParamValidator().validate(request, model.input_shape)
    assert not report.has_errors(), report.generate_report()


def test_the_training_job_request_is_valid_for_sagemaker():
    request = training_job_request(SETTINGS, "20261129-120000-abcd", "obama", {"epochs": 5, "lr": 0.001})
    _validate("CreateTrainingJob", request)
    assert request["ResourceConfig"]["InstanceType"] == "ml.g4dn.xlarge"
    assert request["OutputDataConfig"]["S3OutputPath"] == "s3://imgclf-dev-data/models/20261129-120000-abcd/"
    assert request["InputDataConfig"][0]["DataSource"]["S3DataSource"]["S3Uri"] == "s3://imgclf-dev-data/datasets/obama/"
    assert all(isinstance(v, str) for v in request["HyperParameters"].values())


def test_spot_training_waits_at_least_as_long_as_it_runs():
    spot = training_job_request(SETTINGS, "r1", "d", {})
    on_demand = training_job_request(Settings(**{**SETTINGS.__dict__, "training_use_spot": False}), "r1", "d", {})
    assert spot["StoppingCondition"]["MaxWaitTimeInSeconds"] >= spot["StoppingCondition"]["MaxRuntimeInSeconds"]
    assert "MaxWaitTimeInSeconds" not in on_demand["StoppingCondition"]
    assert spot["EnableManagedSpotTraining"] and not on_demand["EnableManagedSpotTraining"]


def test_job_names_map_back_to_run_ids():
    assert completion.run_id_of(SETTINGS, "imgclf-dev-20261129-120000-abcd") == "20261129-120000-abcd"
    with pytest.raises(ValueError):
        completion.run_id_of(SETTINGS, "someone-elses-job")


def _tar(members: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


@pytest.fixture
def bucket(template_tables):
    s3 = boto3.client("s3", region_name="us-east-1")
    s3.create_bucket(Bucket=get_settings().data_bucket)
    return s3


def test_unpack_refuses_paths_that_leave_the_prefix(bucket):
    bucket.put_object(Bucket=get_settings().data_bucket, Key="t/model.tar.gz", Body=_tar({"../../uploads/x.jpg": b"x"}))
    with pytest.raises(IntegrityError):
        completion.unpack(bucket, get_settings().data_bucket, "t/model.tar.gz", "models/r/")


def _finished_job(s3, settings, run_id, artifacts: dict[str, bytes], model_json: dict) -> dict:
    model_key, output_key = artifact_keys(settings, run_id)
    members = {**artifacts, "model.json": json.dumps(model_json).encode()}
    s3.put_object(Bucket=settings.data_bucket, Key=model_key, Body=_tar(members))
    s3.put_object(Bucket=settings.data_bucket, Key=output_key, Body=_tar({"metrics.json": b"{}"}))
    return {"TrainingJobName": f"imgclf-{settings.stage}-{run_id}", "TrainingJobStatus": "Completed",
            "ModelArtifacts": {"S3ModelArtifacts": f"s3://{settings.data_bucket}/{model_key}"}}


def _prepared_run(s3, settings) -> str:
    s3.put_object(Bucket=settings.data_bucket, Key="datasets/d/manifest.jsonl", Body=b'{"label": "a"}\n')
    return prepare_run(settings, Runs(settings.runs_table), "d", {}, s3=s3)["run_id"]


def test_a_state_change_event_registers_the_model_and_completes_the_run(bucket, lambda_context):
    # GIVEN a prepared run whose job wrote its archives
    settings = get_settings()
    run_id = _prepared_run(bucket, settings)
    job = _finished_job(bucket, settings, run_id, {"model.onnx": b"onnx"},
                        {"classes": ["a", "b"], "metrics": {"error_rate": 0.1}})

    # WHEN SageMaker's state-change event arrives
    completion.lambda_handler({"detail-type": "SageMaker Training Job State Change", "source": "aws.sagemaker",
                               "detail": job}, lambda_context)

    # THEN the run is Completed and its artifacts are a registered candidate
    run = Runs(settings.runs_table).get(run_id)
    assert run["status"] == "Completed" and run["metrics"] == {"error_rate": 0.1}
    version = ModelRegistry(settings.models_table).get(run_id)
    assert set(version["artifacts"]) == {"model.onnx", "model.json"}
    assert bucket.get_object(Bucket=settings.data_bucket, Key=f"models/{run_id}/model.onnx")["Body"].read() == b"onnx"


def test_an_artifact_that_does_not_match_model_json_fails_the_run(bucket, lambda_context):
    settings = get_settings()
    run_id = _prepared_run(bucket, settings)
    job = _finished_job(bucket, settings, run_id, {"model.onnx": b"tampered"},
                        {"classes": ["a"], "artifacts": {"model.onnx": {"sha256": "0" * 64}}})
    with pytest.raises(IntegrityError):
        completion.lambda_handler({"action": "complete", "run_id": run_id, "job": job}, lambda_context)
    assert Runs(settings.runs_table).get(run_id)["status"] == "Failed"


def _digest(data: bytes) -> dict:
    return {"sha256": hashlib.sha256(data).hexdigest(), "bytes": len(data)}


def test_a_shipped_int8_model_is_registered_with_its_check(bucket, lambda_context):
    # GIVEN a run whose job shipped model.int8.onnx and listed it in model.json
    settings = get_settings()
    run_id = _prepared_run(bucket, settings)
    int8 = {"shipped": True, "reason": "shipped: top-1 agreement 1.0000", "check": {"top1_agreement": 1.0}}
    job = _finished_job(bucket, settings, run_id, {"model.onnx": b"onnx", "model.int8.onnx": b"int8"},
                        {"classes": ["a", "b"], "int8": int8,
                         "artifacts": {"model.onnx": _digest(b"onnx"), "model.int8.onnx": _digest(b"int8")}})

    # WHEN the run completes
    completion.lambda_handler({"action": "complete", "run_id": run_id, "job": job}, lambda_context)

    # THEN the version has the int8 artifact with its checksum, and the run says it shipped
    version = ModelRegistry(settings.models_table).get(run_id)
    assert version["artifacts"]["model.int8.onnx"] == _digest(b"int8")["sha256"]
    assert version["int8"]["check"]["top1_agreement"] == 1.0
    assert Runs(settings.runs_table).get(run_id)["int8"] == {"shipped": True, "reason": int8["reason"]}


def test_a_run_without_int8_completes_with_the_reason_recorded(bucket, lambda_context):
    # GIVEN a run whose int8 model failed its check
    settings = get_settings()
    run_id = _prepared_run(bucket, settings)
    reason = "not shipped: top-1 agreement with fp32 0.9500 is below int8_min_agreement 0.99"
    job = _finished_job(bucket, settings, run_id, {"model.onnx": b"onnx"},
                        {"classes": ["a", "b"], "int8": {"shipped": False, "reason": reason}})

    # WHEN the run completes
    completion.lambda_handler({"action": "complete", "run_id": run_id, "job": job}, lambda_context)

    # THEN it ships fp32 only and says why
    assert "model.int8.onnx" not in ModelRegistry(settings.models_table).get(run_id)["artifacts"]
    run = Runs(settings.runs_table).get(run_id)
    assert run["status"] == "Completed" and run["int8"] == {"shipped": False, "reason": reason}


def test_an_int8_model_that_model_json_does_not_list_fails_the_run(bucket, lambda_context):
    settings = get_settings()
    run_id = _prepared_run(bucket, settings)
    job = _finished_job(bucket, settings, run_id, {"model.onnx": b"onnx", "model.int8.onnx": b"int8"},
                        {"classes": ["a"], "artifacts": {"model.onnx": _digest(b"onnx")}})
    with pytest.raises(IntegrityError, match="model.int8.onnx"):
        completion.lambda_handler({"action": "complete", "run_id": run_id, "job": job}, lambda_context)
    assert Runs(settings.runs_table).get(run_id)["status"] == "Failed"


def test_a_failed_job_records_its_reason(bucket, lambda_context):
    settings = get_settings()
    run_id = _prepared_run(bucket, settings)
    completion.lambda_handler({"detail-type": "SageMaker Training Job State Change", "detail": {
        "TrainingJobName": f"imgclf-{settings.stage}-{run_id}", "TrainingJobStatus": "Failed",
        "FailureReason": "AlgorithmError: training needs at least 2 labels"}}, lambda_context)
    run = Runs(settings.runs_table).get(run_id)
    assert run["status"] == "Failed" and "2 labels" in run["failure_reason"]


def test_promotion_refuses_a_worse_candidate_on_the_same_validation_set(template_tables):
    registry = ModelRegistry(get_settings().models_table)
    registry.register("good", artifacts={}, metrics={"error_rate": 0.05}, classes=["a"], extra={"valid_set": "v"})
    registry.register("worse", artifacts={}, metrics={"error_rate": 0.20}, classes=["a"], extra={"valid_set": "v"})
    assert promote(registry, "good")["promoted"]

    refused = promote(registry, "worse")
    forced = promote(registry, "worse", force=True)

    assert not refused["promoted"] and refused["active"] == "good" and "worse than" in refused["reason"]
    assert forced["promoted"] and registry.active().previous == "good"


def test_a_calibration_artifact_is_registered_with_its_checksum(bucket, lambda_context):
    # GIVEN a run whose job wrote calibration.json and listed it in model.json
    settings = get_settings()
    run_id = _prepared_run(bucket, settings)
    calibration = {"artifact": "calibration.json", "temperature": 1.5, "ece_before": 0.1, "ece_after": 0.02}
    job = _finished_job(bucket, settings, run_id, {"model.onnx": b"onnx", "calibration.json": b"{}"},
                        {"classes": ["a", "b"], "calibration": calibration,
                         "artifacts": {"model.onnx": _digest(b"onnx"), "calibration.json": _digest(b"{}")}})

    # WHEN the run completes
    completion.lambda_handler({"action": "complete", "run_id": run_id, "job": job}, lambda_context)

    # THEN the version lists calibration.json with its checksum and the calibration summary
    version = ModelRegistry(settings.models_table).get(run_id)
    assert version["artifacts"]["calibration.json"] == _digest(b"{}")["sha256"]
    assert float(version["calibration"]["temperature"]) == 1.5


def test_a_calibration_artifact_that_model_json_does_not_list_fails_the_run(bucket, lambda_context):
    settings = get_settings()
    run_id = _prepared_run(bucket, settings)
    job = _finished_job(bucket, settings, run_id, {"model.onnx": b"onnx", "calibration.json": b"{}"},
                        {"classes": ["a"], "artifacts": {"model.onnx": _digest(b"onnx")}})
    with pytest.raises(IntegrityError, match="calibration.json"):
        completion.lambda_handler({"action": "complete", "run_id": run_id, "job": job}, lambda_context)
    assert Runs(settings.runs_table).get(run_id)["status"] == "Failed"
