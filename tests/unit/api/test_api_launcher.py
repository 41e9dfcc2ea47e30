"""The launchers: asynchronous collector invocations and state machine executions, and which one runs where."""

from __future__ import annotations

import json
from dataclasses import replace

import boto3
import pytest
from botocore.stub import Stubber

from imgclf.errors import AccessDenied, ConfigError, Conflict, TransientError
from imgclf.settings import Settings
from imgclf_api.launcher import AwsPipelineLauncher, RecordingPipelineLauncher, launcher_for
from imgclf_local.template import REGION

DEFINITION = {"StartAt": "Done", "States": {"Done": {"Type": "Succeed"}}}


def test_a_collection_is_an_asynchronous_invocation_of_the_collector(aws_credentials):
    # GIVEN a Lambda client that expects one Event invocation carrying the collector's event
    client = boto3.client("lambda", region_name=REGION)
    event = {"dataset": "ants-bees", "label": "ants", "count": 5}
    with Stubber(client) as stub:
        stub.add_response("invoke", {"StatusCode": 202, "ResponseMetadata": {"RequestId": "req-1"}},
                          {"FunctionName": "imgclf-dev-collector", "InvocationType": "Event",
                           "Payload": json.dumps(event).encode()})

        # WHEN a collection is started
        started = AwsPipelineLauncher("imgclf-dev-collector", "arn:unused", lambda_client=client).collect(event)

        # THEN the id is the invocation's request id and nothing waits for the collector
        assert started == "req-1"
        stub.assert_no_pending_responses()


def test_a_pipeline_is_an_execution_named_after_the_run(mocked_aws):
    sfn = boto3.client("stepfunctions", region_name=REGION)
    arn = sfn.create_state_machine(name="imgclf-dev-pipeline", definition=json.dumps(DEFINITION),
                                   roleArn="arn:aws:iam::123456789012:role/sfn")["stateMachineArn"]
    launcher = AwsPipelineLauncher("imgclf-dev-collector", arn, sfn_client=sfn)

    execution = launcher.start_pipeline("20261129-120000-abcd", {"dataset": "ants-bees", "labels": []})

    described = sfn.describe_execution(executionArn=execution)
    assert described["name"] == "20261129-120000-abcd"
    assert json.loads(described["input"]) == {"dataset": "ants-bees", "labels": []}


@pytest.mark.parametrize(("code", "status", "raised"), [
    ("ExecutionAlreadyExists", 400, Conflict),
    ("ThrottlingException", 400, TransientError),
    ("InternalError", 500, TransientError),
    ("AccessDeniedException", 400, AccessDenied),
    ("StateMachineDoesNotExist", 400, ConfigError),  # the deployment's fault, not a 404 for the caller
])
def test_service_errors_become_the_projects_where_the_caller_can_act(aws_credentials, code, status, raised):
    sfn = boto3.client("stepfunctions", region_name=REGION)
    with Stubber(sfn) as stub:
        stub.add_client_error("start_execution", service_error_code=code, http_status_code=status)
        with pytest.raises(raised):
            AwsPipelineLauncher("f", "arn:aws:states:us-east-1:123456789012:stateMachine:p", sfn_client=sfn) \
                .start_pipeline("run", {})


def test_where_training_is_local_the_launcher_records_instead_of_starting():
    launcher = launcher_for(Settings(training_backend="local"))

    started = launcher.collect({"dataset": "d", "label": "l"})

    assert isinstance(launcher, RecordingPipelineLauncher)
    assert started.startswith("local-")
    assert launcher.collected == [{"dataset": "d", "label": "l"}]


def test_in_aws_the_launcher_needs_the_collector_and_the_state_machine():
    settings = Settings(collector_function="imgclf-dev-collector", state_machine_arn="arn:sm")

    assert launcher_for(settings) == AwsPipelineLauncher("imgclf-dev-collector", "arn:sm")
    with pytest.raises(ConfigError, match="STATE_MACHINE_ARN"):
        launcher_for(replace(settings, state_machine_arn=""))
