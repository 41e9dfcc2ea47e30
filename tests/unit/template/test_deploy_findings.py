"""Each finding of the first-deploy review, pinned so that it cannot come back (docs/operations.md lists them)."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import pytest

from imgclf_local.template import REPO_ROOT, StackTemplate, load_template

RAW = load_template()
RESOURCES = RAW["Resources"]
FUNCTIONS = {lid: r for lid, r in RESOURCES.items() if r["Type"] == "AWS::Serverless::Function"}
ECR_NAME = re.compile(r"^[a-z0-9]+(?:[._-][a-z0-9]+)*(?:/[a-z0-9]+(?:[._-][a-z0-9]+)*)*$")


def resolved(**parameters: str) -> StackTemplate:
    return StackTemplate(parameters={"Stage": "dev", **parameters})


def reserved_total(template: StackTemplate) -> int:
    return sum(int(template.properties(lid).get("ReservedConcurrentExecutions", 0)) for lid in FUNCTIONS)


# 1. API Gateway logs need the account's CloudWatch role.
def test_by_default_the_stack_sets_the_account_cloudwatch_role_before_the_stage_logs():
    # GIVEN the default parameters
    template = resolved()

    # WHEN the stack's API resources are resolved
    account = template.of_type("AWS::ApiGateway::Account")
    handle = template.properties("ApiLoggingReady")  # resolving checks the handle's reference too

    # THEN the account setting is created from the stack's own role, and the API waits for it
    assert list(account) == ["ApiGatewayAccount"]
    assert RESOURCES["ApiGatewayAccount"]["Properties"]["CloudWatchRoleArn"] == {
        "Fn::GetAtt": ["ApiGatewayCloudWatchRole", "Arn"]}
    assert RESOURCES["ImgclfApi"]["DependsOn"] == "ApiLoggingReady"
    assert RESOURCES["ApiLoggingReady"]["Metadata"]["AccountSetting"]["Fn::If"][0] == "CreatesApiLogsRole"
    assert handle == {}


@pytest.mark.parametrize("choice", ["existing", "none"])
def test_the_account_setting_is_left_alone_unless_asked(choice):
    assert not resolved(ApiGatewayLogsRole=choice).of_type("AWS::ApiGateway::Account", "AWS::IAM::Role") \
        .keys() & {"ApiGatewayAccount", "ApiGatewayCloudWatchRole"}


def test_without_a_cloudwatch_role_the_stage_enables_no_logging():
    # GIVEN an account whose API Gateway has no CloudWatch role
    props = resolved(ApiGatewayLogsRole="none").properties("ImgclfApi")

    # THEN the stage asks for neither access logs nor execution logs, which would fail its creation
    assert "AccessLogSetting" not in props
    assert {s["LoggingLevel"] for s in props["MethodSettings"]} == {"OFF"}
    assert not resolved(ApiGatewayLogsRole="none").of_type("AWS::Logs::LogGroup").keys() & {
        "ApiAccessLogs", "ApiExecutionLogs"}


@pytest.mark.parametrize("choice", ["create", "existing"])
def test_with_a_cloudwatch_role_the_stage_logs_errors_and_access(choice):
    props = resolved(ApiGatewayLogsRole=choice).properties("ImgclfApi")
    assert props["AccessLogSetting"]["DestinationArn"].endswith(":log-group:/aws/apigateway/imgclf-dev-access:*")
    assert {s["LoggingLevel"] for s in props["MethodSettings"]} == {"ERROR"}


# 2. Reserved concurrency on new accounts.
def test_by_default_no_function_reserves_concurrency():
    assert reserved_total(resolved()) == 0


def test_reserving_is_opt_in_and_bounded_by_the_classifier_setting():
    template = resolved(ReserveConcurrency="true", ClassifierMaxConcurrency="4")
    assert template.properties("ClassifierFunction")["ReservedConcurrentExecutions"] == "4"
    assert reserved_total(template) == 37 + 4


def test_the_upload_queue_bounds_the_classifier_without_a_reservation():
    event = resolved(ClassifierMaxConcurrency="7").properties("ClassifierFunction")["Events"]["Uploads"]
    assert event["Properties"]["ScalingConfig"]["MaximumConcurrency"] == "7"


# 3. A rolled-back first create must not leave named resources behind.
@pytest.mark.parametrize("logical_id", sorted(
    lid for lid, r in RESOURCES.items() if r.get("DeletionPolicy", "Delete") != "Delete"))
def test_kept_resources_are_not_kept_when_their_first_create_rolls_back(logical_id):
    assert RESOURCES[logical_id]["DeletionPolicy"] == "RetainExceptOnCreate"


def test_the_data_buckets_and_tables_are_still_kept_on_delete_and_replace():
    for lid in ("DataBucket", "LogBucket", "PredictionsTable", "RunsTable", "ModelsTable",
                "DecisionsTable"):
        assert RESOURCES[lid]["DeletionPolicy"] == "RetainExceptOnCreate"
        assert RESOURCES[lid]["UpdateReplacePolicy"] == "Retain"


# 4. sam build needs the functions' Python unless it builds in containers.
def test_sam_build_runs_in_containers_by_default():
    config = tomllib.loads((REPO_ROOT / "samconfig.toml").read_text())
    assert config["default"]["build"]["parameters"]["use_container"] is True
    makefile = (REPO_ROOT / "Makefile").read_text()
    assert "BUILD_IN_CONTAINER ?= 1" in makefile
    assert "--use-container" in makefile


# 5. Alarms must be able to publish to their topic.
def test_the_alarm_topic_uses_a_key_that_cloudwatch_may_use():
    key_id = RESOURCES["AlarmTopic"]["Properties"]["KmsMasterKeyId"]
    assert key_id == {"Ref": "AlarmKey"}, "the AWS-managed alias/aws/sns key refuses CloudWatch"
    statements = RESOURCES["AlarmKey"]["Properties"]["KeyPolicy"]["Statement"]
    cloudwatch = [s for s in statements if s["Principal"].get("Service") == "cloudwatch.amazonaws.com"]
    assert cloudwatch and {"kms:Decrypt", "kms:GenerateDataKey*"} <= set(cloudwatch[0]["Action"])


# 6. SageMaker mounts the output folders as root at start.
def test_the_training_image_starts_as_root_and_drops_it_in_the_entry_point():
    dockerfile = (REPO_ROOT / "training_job" / "Dockerfile").read_text()
    entry = (REPO_ROOT / "training_job" / "bin" / "train").read_text()
    assert not re.search(r"^USER\s", dockerfile, re.M), "a non-root USER cannot write SageMaker's mounted folders"
    for folder in ("/opt/ml/model", "/opt/ml/output", "/opt/ml/checkpoints"):
        assert folder in entry
    assert re.search(r"chown -R .*\n(.|\n)*exec setpriv --reuid=", entry)


# 8. One stage, and API keys only where a browser does not need to send one.
def test_sam_creates_no_extra_stage_named_stage():
    assert RESOURCES["ImgclfApi"]["Properties"]["OpenApiVersion"].startswith("3.")


def test_the_pages_never_require_an_api_key():
    # GIVEN a stack that requires API keys
    template = resolved(RequireApiKey="true")

    # WHEN the routes are resolved
    events = template.properties("ApiFunction")["Events"]

    # THEN only /classify requires the key; the pages a browser opens do not
    needing = {e["Properties"]["Path"] for e in events.values()
               if e["Properties"].get("Auth", {}).get("ApiKeyRequired") is True}
    assert needing == {"/classify"}


@pytest.mark.parametrize(("require", "plan"), [("false", "NONE"), ("true", "PER_API")])
def test_a_usage_plan_exists_only_where_keys_make_it_limit_something(require, plan):
    auth = resolved(RequireApiKey=require).properties("ImgclfApi")["Auth"]
    assert auth["UsagePlan"]["CreateUsagePlan"] == plan


# 9. The onnx image must not build the fastai stages.
def test_no_stage_before_the_onnx_target_installs_torch():
    dockerfile = (REPO_ROOT / "functions" / "classifier" / "Dockerfile").read_text()
    before_target = dockerfile.split("AS onnx", 1)[0]
    assert "AS onnx" in dockerfile
    assert "requirements-fastai" not in before_target and "TORCH_INDEX_URL" not in before_target


# 10. The documented policy of createTrainingJob.sync.
def test_the_pipeline_role_has_every_action_of_the_sync_integration():
    statements = [s for p in RESOURCES["TrainingPipeline"]["Properties"]["Policies"] if "Statement" in p
                  for s in p["Statement"]]
    actions = {a for s in statements for a in ([s["Action"]] if isinstance(s["Action"], str) else s["Action"])}
    assert {"sagemaker:CreateTrainingJob", "sagemaker:DescribeTrainingJob", "sagemaker:StopTrainingJob",
            "sagemaker:AddTags", "sagemaker:ListTags", "events:PutTargets", "events:PutRule",
            "events:DescribeRule", "iam:PassRole"} <= actions


# 11. Region and stack name.
def test_the_makefile_leaves_the_region_to_the_profile_and_names_the_stack_after_the_stage():
    makefile = (REPO_ROOT / "Makefile").read_text()
    assert not re.search(r"^export AWS_DEFAULT_REGION", makefile, re.M)
    assert "STACK ?= imgclf-$(STAGE)" in makefile
    deploy = makefile.split("\ndeploy:", 1)[1].split("\n\n", 1)[0]
    assert "--stack-name $(STACK)" in deploy and "Stage=$(STAGE)" in deploy
    assert deploy.startswith(" tools preflight")


# 12. The classifier's backend is the image's, not a parameter the image cannot honour.
def test_the_template_does_not_override_the_images_backend():
    assert "InferenceBackend" not in RAW["Parameters"]
    assert "MODEL_BACKEND" not in RAW["Globals"]["Function"]["Environment"]["Variables"]
    assert "MODEL_BACKEND" not in FUNCTIONS["ClassifierFunction"]["Properties"].get("Environment", {}).get(
        "Variables", {})
    dockerfile = (REPO_ROOT / "functions" / "classifier" / "Dockerfile").read_text()
    for target in ("onnx", "fastai"):
        stage = dockerfile.split(f"AS {target}\n", 1)[1].split("\nFROM ", 1)[0]
        assert f"ENV MODEL_BACKEND={target}" in stage


# 13. Clean-up and the runbook.
def test_the_training_repository_can_be_deleted_with_images_in_it():
    assert RESOURCES["TrainingImageRepository"]["Properties"]["EmptyOnDelete"] is True


def test_the_runbook_sends_json_payloads_as_raw_bytes():
    for doc in ("docs/operations.md", "README.md"):
        text = (REPO_ROOT / doc).read_text()
        assert not re.search(r"--payload file://", text), doc


# 14. Names, log retention, the retired Bing API.
@pytest.mark.parametrize("stage", ["dev", "prod", "a", "team-a", "x1-y2"])
def test_every_stage_the_pattern_admits_makes_a_valid_ecr_repository_name(stage):
    pattern = RAW["Parameters"]["Stage"]["AllowedPattern"]
    assert re.fullmatch(pattern, stage)
    assert ECR_NAME.fullmatch(f"imgclf-{stage}-training")


@pytest.mark.parametrize("stage", ["a-", "a--b", "-a", "A", "toolongstage13"])
def test_stages_that_would_break_a_name_are_refused(stage):
    spec = RAW["Parameters"]["Stage"]
    assert not re.fullmatch(spec["AllowedPattern"], stage) or len(stage) > spec["MaxLength"]


@pytest.mark.parametrize("logical_id", sorted(FUNCTIONS))
def test_every_function_logs_to_a_group_that_expires(logical_id):
    template = resolved()
    group_id = FUNCTIONS[logical_id]["Properties"]["LoggingConfig"]["LogGroup"]["Ref"]
    group = template.properties(group_id)
    assert group["LogGroupName"] == f"/aws/lambda/{template.physical_name(logical_id)}"
    assert group["RetentionInDays"] == str(RAW["Parameters"]["LogRetentionDays"]["Default"])


def test_every_declared_log_group_expires():
    for lid, resource in RESOURCES.items():
        if resource["Type"] == "AWS::Logs::LogGroup":
            assert resource["Properties"]["RetentionInDays"] == {"Ref": "LogRetentionDays"}, lid


def test_the_docs_say_bing_is_retired_wherever_they_offer_it():
    for doc in [REPO_ROOT / "README.md", *sorted(Path(REPO_ROOT / "docs").glob("*.md"))]:
        text = doc.read_text()
        if re.search(r"\bbing\b", text, re.I):
            assert "retired" in text.lower(), doc.name
