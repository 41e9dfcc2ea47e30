"""`imgclf teardown` deletes the stack, empties and deletes what it retains, and keeps the account setting.

moto 5.2.5 honours `DeletionPolicy: Retain` when it deletes a stack, but not `RetainExceptOnCreate` (it deletes
those resources), so the stacks here use Retain; teardown treats both alike. moto's CloudFormation also ignores a
bucket's VersioningConfiguration and LoggingConfiguration, so the tests turn versioning on with the S3 API.
"""

from __future__ import annotations

import io
import json
from datetime import UTC, datetime

import boto3
import pytest
from botocore.exceptions import ClientError
from botocore.stub import Stubber

from imgclf_cli import teardown
from imgclf_cli.main import build_parser
from imgclf_local.template import REGION, load_template

FAST = teardown.Pace(poll_s=0, max_wait_s=5, retry_s=(0, 0))
STACK = "imgclf-unit"

KEY = {"KeySchema": [{"AttributeName": "id", "KeyType": "HASH"}],
       "AttributeDefinitions": [{"AttributeName": "id", "AttributeType": "S"}], "BillingMode": "PAY_PER_REQUEST"}
TEMPLATE = {
    "Resources": {
        "LogBucket": {"Type": "AWS::S3::Bucket", "DeletionPolicy": "Retain"},
        # No BucketName: CloudFormation makes one up, so teardown can only find it through the stack.
        "DataBucket": {"Type": "AWS::S3::Bucket", "DeletionPolicy": "Retain",
                       "Properties": {"VersioningConfiguration": {"Status": "Enabled"},
                                      "LoggingConfiguration": {"DestinationBucketName": {"Ref": "LogBucket"},
                                                               "LogFilePrefix": "s3-access/"}}},
        "RunsTable": {"Type": "AWS::DynamoDB::Table", "DeletionPolicy": "Retain",
                      "Properties": {"TableName": "unit-runs", **KEY}},
        "WorkQueue": {"Type": "AWS::SQS::Queue"},
    }
}


def _args(*argv: str):
    return build_parser().parse_args(["teardown", "--stack-name", STACK, *argv])


def _physical_ids(stack_name: str = STACK) -> dict[str, str]:
    cfn = boto3.client("cloudformation", region_name=REGION)
    return {r["LogicalResourceId"]: r["PhysicalResourceId"]
            for r in cfn.list_stack_resources(StackName=stack_name)["StackResourceSummaries"]}


def _stack_exists(name: str = STACK) -> bool:
    try:
        boto3.client("cloudformation", region_name=REGION).describe_stacks(StackName=name)
    except ClientError:
        return False
    return True


def _bucket_exists(name: str) -> bool:
    return name in [b["Name"] for b in boto3.client("s3", region_name=REGION).list_buckets()["Buckets"]]


def _table_exists(name: str) -> bool:
    return name in boto3.client("dynamodb", region_name=REGION).list_tables()["TableNames"]


def _fill_versions(bucket: str) -> None:
    """Three versions of one key, a delete marker on it, and a second key."""
    s3 = boto3.client("s3", region_name=REGION)
    s3.put_bucket_versioning(Bucket=bucket, VersioningConfiguration={"Status": "Enabled"})
    for body in (b"1", b"2", b"3"):
        s3.put_object(Bucket=bucket, Key="uploads/cat.jpg", Body=body)
    s3.delete_object(Bucket=bucket, Key="uploads/cat.jpg")
    s3.put_object(Bucket=bucket, Key="models/v1/model.onnx", Body=b"onnx")


@pytest.fixture
def stack(mocked_aws) -> dict[str, str]:
    """The small stack above, deployed in moto, with a versioned bucket full of versions; its physical ids."""
    boto3.client("cloudformation", region_name=REGION).create_stack(StackName=STACK,
                                                                    TemplateBody=json.dumps(TEMPLATE))
    ids = _physical_ids()
    _fill_versions(ids["DataBucket"])
    boto3.client("dynamodb", region_name=REGION).put_item(TableName=ids["RunsTable"], Item={"id": {"S": "r1"}})
    return ids


def test_teardown_deletes_the_stack_and_empties_and_deletes_the_retained_buckets_and_table(stack, capsys):
    # GIVEN the stack with a retained versioned bucket (versions and a delete marker), its log bucket and a table

    # WHEN it is torn down without a prompt
    status = teardown.run(_args("--yes"), pace=FAST)

    # THEN the stack, the buckets and the table are gone, and the summary says so
    out = capsys.readouterr().out
    assert status == 0
    assert not _stack_exists()
    assert not _bucket_exists(stack["DataBucket"]) and not _bucket_exists(stack["LogBucket"])
    assert not _table_exists("unit-runs")
    assert f"deleted bucket {stack['DataBucket']} (5 object versions and delete markers)" in out
    assert "deleted table unit-runs" in out
    assert "[4/4] summary: 4 deleted, 0 kept, 0 failed" in out


def test_the_bucket_receiving_access_logs_is_deleted_after_the_bucket_writing_them(stack, capsys):
    # GIVEN the stack whose data bucket writes access logs to its log bucket, listed first in the template

    # WHEN it is torn down
    teardown.run(_args("--yes"), pace=FAST)

    # THEN the data bucket goes first
    out = capsys.readouterr().out
    assert out.index(f"deleted bucket {stack['DataBucket']}") < out.index(f"deleted bucket {stack['LogBucket']}")


def test_keep_data_deletes_the_stack_only_and_reports_what_it_kept(stack, capsys):
    # GIVEN the stack with its retained bucket and table

    # WHEN it is torn down with --keep-data
    status = teardown.run(_args("--yes", "--keep-data"), pace=FAST)

    # THEN the stack is gone, the bucket still holds every version, the table still exists, and both are reported
    out = capsys.readouterr().out
    versions = boto3.client("s3", region_name=REGION).list_object_versions(Bucket=stack["DataBucket"])
    assert status == 0
    assert not _stack_exists()
    assert len(versions["Versions"]) + len(versions["DeleteMarkers"]) == 5
    assert _table_exists("unit-runs")
    assert f"kept: AWS::S3::Bucket {stack['DataBucket']} (DataBucket): --keep-data" in out
    assert "kept: AWS::DynamoDB::Table unit-runs (RunsTable): --keep-data" in out


def test_a_missing_stack_falls_back_to_the_names_template_yaml_gives(mocked_aws, capsys):
    # GIVEN no stack, but the data bucket and the runs table that template.yaml names for stage "unit"
    s3 = boto3.client("s3", region_name=REGION)
    data_bucket = "imgclf-unit-data-123456789012-us-east-1"
    s3.create_bucket(Bucket=data_bucket)
    _fill_versions(data_bucket)
    boto3.client("dynamodb", region_name=REGION).create_table(TableName="imgclf-unit-runs", **KEY)

    # WHEN the stage is torn down
    status = teardown.run(build_parser().parse_args(["teardown", "--stage", "unit", "--yes"]),
                          pace=FAST, template=load_template())

    # THEN it says the names come from the template, deletes what exists, and finds the rest already gone
    out = capsys.readouterr().out
    assert status == 0
    assert "no stack imgclf-unit" in out and "as template.yaml names them (there is no such stack)" in out
    assert not _bucket_exists(data_bucket)
    assert not _table_exists("imgclf-unit-runs")
    assert out.index(f"deleted bucket {data_bucket}") < out.index(
        "bucket imgclf-unit-logs-123456789012-us-east-1 was already gone")
    assert "table imgclf-unit-predictions was already gone" in out


def test_a_yaml_stack_template_with_retain_except_on_create_is_read_from_the_stack(mocked_aws, capsys):
    # GIVEN a stack deployed from YAML with short-form intrinsics and the template's own deletion policy
    body = """
Resources:
  LogBucket:
    Type: AWS::S3::Bucket
    DeletionPolicy: RetainExceptOnCreate
  DataBucket:
    Type: AWS::S3::Bucket
    DeletionPolicy: RetainExceptOnCreate
    Properties:
      BucketName: !Sub renamed-data-${AWS::AccountId}
      LoggingConfiguration:
        DestinationBucketName: !Ref LogBucket
"""
    boto3.client("cloudformation", region_name=REGION).create_stack(StackName=STACK, TemplateBody=body)
    job = teardown.Teardown(boto3.session.Session(region_name=REGION), FAST)

    # WHEN teardown surveys it
    survey = job.survey(STACK, "dev")

    # THEN both buckets are found by their stack names, and the log bucket is known as the logs' target
    assert [r.physical_id for r in survey.buckets] == [_physical_ids()["LogBucket"], "renamed-data-123456789012"]
    assert survey.log_targets == {"LogBucket"}
    assert "named by the stack" in capsys.readouterr().out


def test_without_cloudformation_get_template_the_policies_come_from_the_local_template(stack, capsys):
    # GIVEN a caller that may not read the deployed template
    job = teardown.Teardown(boto3.session.Session(region_name=REGION), FAST)

    def denied(**kwargs):
        raise ClientError({"Error": {"Code": "AccessDenied", "Message": "not allowed"}}, "GetTemplate")

    job.cfn.get_template = denied

    # WHEN teardown surveys the stack
    survey = job.survey(STACK, "dev", template=TEMPLATE)

    # THEN it says so, and still finds the retained resources by the stack's physical ids
    out = capsys.readouterr().out
    assert "the caller needs cloudformation:GetTemplate" in out
    assert {r.physical_id for r in survey.retained} == {stack["LogBucket"], stack["DataBucket"], "unit-runs"}


def test_without_yes_on_a_non_tty_it_refuses_with_status_2_and_deletes_nothing(stack, monkeypatch, capsys):
    # GIVEN stdin that is not a terminal
    monkeypatch.setattr("sys.stdin", io.StringIO(f"{STACK}\n"))

    # WHEN teardown runs without --yes
    status = teardown.run(_args(), pace=FAST)

    # THEN it refuses, and the stack, bucket and table remain
    assert status == 2
    assert "without --yes" in capsys.readouterr().err
    assert _stack_exists()
    assert _bucket_exists(stack["DataBucket"])
    assert _table_exists("unit-runs")


def test_at_a_terminal_a_wrong_stack_name_refuses_and_deletes_nothing(stack, monkeypatch, capsys):
    # GIVEN a terminal where the user types another name
    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True

    monkeypatch.setattr("sys.stdin", Terminal("imgclf-prod\n"))

    # WHEN teardown runs without --yes
    status = teardown.run(_args(), pace=FAST)

    # THEN it refuses, and the stack remains
    assert status == 2
    assert "nothing was deleted" in capsys.readouterr().err
    assert _stack_exists()


def test_a_bucket_deleted_before_emptying_counts_as_already_gone(stack, capsys):
    # GIVEN the retained bucket was emptied and deleted by hand (S3 answers NoSuchBucket)
    boto3.resource("s3", region_name=REGION).Bucket(stack["DataBucket"]).object_versions.delete()
    boto3.client("s3", region_name=REGION).delete_bucket(Bucket=stack["DataBucket"])

    # WHEN the stack is torn down
    status = teardown.run(_args("--yes"), pace=FAST)

    # THEN that is not an error, and the table is still deleted
    out = capsys.readouterr().out
    assert status == 0
    assert f"bucket {stack['DataBucket']} was already gone" in out
    assert not _table_exists("unit-runs")


def test_a_log_arriving_after_emptying_is_removed_on_the_next_try(mocked_aws, capsys):
    # GIVEN a bucket that receives one more access log between being emptied and being deleted
    s3 = boto3.client("s3", region_name=REGION)
    s3.create_bucket(Bucket="unit-logs")
    _fill_versions("unit-logs")
    job = teardown.Teardown(boto3.session.Session(region_name=REGION), FAST)
    real_delete = job.s3.delete_bucket
    late = ["s3-access/2026-01-01-00-00-00-ABC"]

    def delete_after_a_late_log(**kwargs):
        if late:
            s3.put_object(Bucket="unit-logs", Key=late.pop(), Body=b"log")
        return real_delete(**kwargs)

    job.s3.delete_bucket = delete_after_a_late_log

    # WHEN the bucket is deleted
    job.delete_data(teardown.Survey("s", None, [teardown.Retained("LogBucket", "AWS::S3::Bucket", "unit-logs")],
                                    [], "test"))

    # THEN it is emptied again and deleted
    out = capsys.readouterr().out
    assert not _bucket_exists("unit-logs")
    assert "received more objects" in out
    assert "deleted bucket unit-logs (6 object versions and delete markers)" in out


def test_the_companion_stack_is_deleted_with_the_images_in_its_repository(stack, capsys):
    # GIVEN a SAM companion stack whose ECR repository holds an image
    repository = "imgclfunit1a2b3c4d/classifierfunction0f1e2d3crepo"
    companion = f"{STACK}-1a2b3c4d-CompanionStack"
    boto3.client("cloudformation", region_name=REGION).create_stack(StackName=companion, TemplateBody=json.dumps({
        "Resources": {"ClassifierRepo": {"Type": "AWS::ECR::Repository",
                                         "Properties": {"RepositoryName": repository}}}}))
    manifest = {"schemaVersion": 2, "mediaType": "application/vnd.docker.distribution.manifest.v2+json",
                "config": {}, "layers": []}
    boto3.client("ecr", region_name=REGION).put_image(repositoryName=repository, imageTag="latest",
                                                      imageManifest=json.dumps(manifest))

    # WHEN the stack is torn down
    status = teardown.run(_args("--yes"), pace=FAST)

    # THEN both stacks are gone
    out = capsys.readouterr().out
    assert status == 0
    assert not _stack_exists(companion)
    assert f"[2/4] deleted {STACK}, {companion}" in out


def test_the_api_gateway_logging_role_is_kept_with_the_commands_to_remove_it(mocked_aws, capsys):
    # GIVEN a stack that created the account's API Gateway CloudWatch role
    role = {"Type": "AWS::IAM::Role", "DeletionPolicy": "Retain", "Properties": {"AssumeRolePolicyDocument": {
        "Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "sts:AssumeRole",
                                                "Principal": {"Service": "apigateway.amazonaws.com"}}]}}}
    boto3.client("cloudformation", region_name=REGION).create_stack(
        StackName=STACK, TemplateBody=json.dumps({"Resources": {"ApiGatewayCloudWatchRole": role}}))
    role_name = _physical_ids()["ApiGatewayCloudWatchRole"]

    # WHEN the stack is torn down
    status = teardown.run(_args("--yes"), pace=FAST)

    # THEN the role is left in place, and the summary says why and how to remove it
    out = capsys.readouterr().out
    assert status == 0
    assert boto3.client("iam").get_role(RoleName=role_name)
    assert "other APIs in this account and region may use; to remove it anyway" in out
    assert "aws apigateway update-account --region us-east-1 --patch-operations " \
           "op=replace,path=/cloudwatchRoleArn,value=" in out
    assert f"aws iam delete-role --role-name {role_name}" in out


def test_a_stack_that_fails_to_delete_shows_the_reasons(aws_credentials):
    # GIVEN CloudFormation reports DELETE_FAILED because a resource could not be deleted
    job = teardown.Teardown(boto3.session.Session(region_name=REGION), FAST)
    stack_id = f"arn:aws:cloudformation:{REGION}:123456789012:stack/{STACK}/1"
    now = datetime.now(UTC)
    stubber = Stubber(job.cfn)
    stubber.add_response("delete_stack", {}, {"StackName": stack_id})
    stubber.add_response("describe_stacks", {"Stacks": [
        {"StackName": STACK, "StackId": stack_id, "CreationTime": now, "StackStatus": "DELETE_FAILED"}]})
    event = {"StackId": stack_id, "StackName": STACK, "Timestamp": now, "ResourceType": "AWS::S3::Bucket"}
    stubber.add_response("describe_stack_events", {"StackEvents": [
        {**event, "EventId": "2", "LogicalResourceId": "SiteBucket", "ResourceStatus": "DELETE_FAILED",
         "ResourceStatusReason": "The bucket you tried to delete is not empty"},
        {**event, "EventId": "1", "LogicalResourceId": STACK, "ResourceType": "AWS::CloudFormation::Stack",
         "ResourceStatus": "DELETE_IN_PROGRESS", "ResourceStatusReason": "User Initiated"}]})

    # WHEN the stack is deleted
    with stubber, pytest.raises(teardown.TeardownError) as failure:
        job.delete_stacks(teardown.Survey(STACK, stack_id, [], [], "test"))

    # THEN the error names the resource and CloudFormation's reason
    assert "DELETE_FAILED" in str(failure.value)
    assert "SiteBucket (AWS::S3::Bucket): The bucket you tried to delete is not empty" in str(failure.value)


def test_access_denied_names_the_missing_permission():
    # GIVEN S3 denies a call

    # WHEN it happens inside aws_call
    with pytest.raises(teardown.TeardownError) as failure, teardown.aws_call("s3:DeleteBucket", "bucket b"):
        raise ClientError({"Error": {"Code": "AccessDenied", "Message": "Access Denied"}}, "DeleteBucket")

    # THEN the message says which permission is missing
    assert str(failure.value).startswith("access denied to bucket b: the caller needs s3:DeleteBucket")


def test_teardown_help_lists_its_options(capsys):
    # GIVEN the imgclf parser

    # WHEN teardown's help is asked for
    with pytest.raises(SystemExit) as done:
        build_parser().parse_args(["teardown", "--help"])

    # THEN it exits cleanly and lists every option
    out = capsys.readouterr().out
    assert done.value.code == 0
    for option in ("--stage", "--stack-name", "--region", "--keep-data", "--yes"):
        assert option in out
