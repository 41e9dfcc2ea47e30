"""What the local stack creates is what template.yaml declares: names, keys, indexes, redrive, notifications."""

from __future__ import annotations

import json

import pytest

from imgclf_local.stack import LocalStack
from imgclf_local.template import load_template


@pytest.fixture(scope="module")
def stack():
    with LocalStack(pumps=False, api=False) as stack:
        yield stack


@pytest.fixture(scope="module")
def raw_resources():
    return load_template()["Resources"]


def _of_type(raw_resources, kind):
    return {lid: r["Properties"] for lid, r in raw_resources.items() if r["Type"] == kind}


def test_every_table_has_the_template_keys_and_indexes(stack, raw_resources):
    dynamodb = stack.client("dynamodb")
    declared = _of_type(raw_resources, "AWS::DynamoDB::Table")
    assert declared, "the template declares tables"
    for logical_id, props in declared.items():
        # GIVEN a table of the template; WHEN the stack describes it
        table = dynamodb.describe_table(TableName=stack.table(logical_id))["Table"]

        # THEN its name, key schema, attribute types and indexes are the template's
        assert table["TableName"] == f"imgclf-local-{logical_id.removesuffix('Table').lower()}"
        assert table["KeySchema"] == props["KeySchema"]
        assert sorted(table["AttributeDefinitions"], key=str) == sorted(props["AttributeDefinitions"], key=str)
        created = {i["IndexName"]: i["KeySchema"] for i in table.get("GlobalSecondaryIndexes", [])}
        assert created == {i["IndexName"]: i["KeySchema"] for i in props.get("GlobalSecondaryIndexes", [])}


def test_every_queue_exists_with_its_redrive_policy_and_timeouts(stack, raw_resources):
    sqs = stack.client("sqs")
    declared = _of_type(raw_resources, "AWS::SQS::Queue")
    for logical_id, props in declared.items():
        attributes = sqs.get_queue_attributes(QueueUrl=stack.queue_url(logical_id), AttributeNames=["All"])[
            "Attributes"
        ]
        assert attributes["QueueArn"].endswith(":" + stack.template.queues[logical_id].name)
        if "VisibilityTimeout" in props:
            assert int(attributes["VisibilityTimeout"]) == props["VisibilityTimeout"]
        if "RedrivePolicy" in props:
            redrive = json.loads(attributes["RedrivePolicy"])
            dlq_id = props["RedrivePolicy"]["deadLetterTargetArn"]["Fn::GetAtt"][0]
            assert redrive["deadLetterTargetArn"].endswith(":" + stack.template.queues[dlq_id].name)
            assert int(redrive["maxReceiveCount"]) == props["RedrivePolicy"]["maxReceiveCount"]
        else:
            assert "RedrivePolicy" not in attributes


def test_buckets_exist_with_versioning_and_the_upload_notification(stack, raw_resources):
    s3 = stack.client("s3")
    declared = _of_type(raw_resources, "AWS::S3::Bucket")
    names = {b["Name"] for b in s3.list_buckets()["Buckets"]}
    assert {stack.bucket(lid) for lid in declared} <= names
    notification = s3.get_bucket_notification_configuration(Bucket=stack.bucket("DataBucket"))
    [queue_config] = notification["QueueConfigurations"]
    declared_config = declared["DataBucket"]["NotificationConfiguration"]["QueueConfigurations"][0]
    assert queue_config["Events"] == [declared_config["Event"]]
    assert queue_config["QueueArn"].endswith(":" + stack.template.queues["ClassifyQueue"].name)
    rules = queue_config["Filter"]["Key"]["FilterRules"]
    assert [(r["Name"].lower(), r["Value"]) for r in rules] == [("prefix", "uploads/")]
    for lid in declared:
        versioning = s3.get_bucket_versioning(Bucket=stack.bucket(lid))
        assert versioning.get("Status") == declared[lid]["VersioningConfiguration"]["Status"]


def test_function_environment_names_only_resources_of_the_stack(stack):
    # GIVEN the environment the stack gives every function
    env = stack.template.function_environment()

    # THEN each resource name in it exists in the running stack
    assert env["DATA_BUCKET"] == stack.bucket("DataBucket")
    tables = set(stack.client("dynamodb").list_tables()["TableNames"])
    assert {env["PREDICTIONS_TABLE"], env["RUNS_TABLE"], env["MODELS_TABLE"], env["DECISIONS_TABLE"]} <= tables
