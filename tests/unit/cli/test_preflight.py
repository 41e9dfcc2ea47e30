"""`imgclf preflight`: each check against moto, botocore stubs or a fake runner, and the command around them."""

from __future__ import annotations

import json
import subprocess
from contextlib import contextmanager

import boto3
import pytest
from botocore.stub import Stubber

from imgclf_cli import preflight
from imgclf_cli.main import build_parser, main
from imgclf_cli.preflight import (
    FAIL,
    OK,
    WARN,
    Check,
    Options,
    Target,
    check_api_logging,
    check_docker,
    check_lambda_concurrency,
    check_parameters,
    check_python,
    check_sam,
    check_target,
    check_training_image,
    check_training_quota,
    find_target,
    reservations,
    run_checks,
)
from imgclf_local.template import REGION, StackTemplate, load_template

ACCOUNT = "123456789012"  # moto's account
FUNCTION_NAMES = ("imgclf-dev-api", "imgclf-dev-classifier")
MANIFEST = json.dumps({
    "schemaVersion": 2,
    "mediaType": "application/vnd.docker.distribution.manifest.v2+json",
    "config": {"mediaType": "application/vnd.docker.container.image.v1+json", "size": 2,
               "digest": "sha256:" + "a" * 64},
    "layers": [],
})


def reserve(count) -> dict:
    """ReservedConcurrentExecutions as template.yaml writes it: only when ReserveConcurrency is true."""
    return {"Fn::If": ["ReservesConcurrency", count, {"Ref": "AWS::NoValue"}]}


def small_template() -> dict:
    """The shape of template.yaml that preflight reads, small enough to see at a glance."""
    return {
        "Parameters": {
            "Stage": {"Type": "String", "Default": "dev"},
            "ReserveConcurrency": {"Type": "String", "Default": "false", "AllowedValues": ["true", "false"]},
            "ClassifierMaxConcurrency": {"Type": "Number", "Default": 10},
            "ApiGatewayLogsRole": {"Type": "String", "Default": "create",
                                   "AllowedValues": ["create", "existing", "none"]},
            "TrainingInstanceType": {"Type": "String", "Default": "ml.g4dn.xlarge"},
            "UseSpotTraining": {"Type": "String", "Default": "true", "AllowedValues": ["true", "false"]},
            "TrainingImageUri": {"Type": "String", "Default": ""},
        },
        "Conditions": {"ReservesConcurrency": {"Fn::Equals": [{"Ref": "ReserveConcurrency"}, "true"]}},
        "Globals": {"Function": {"Runtime": "python3.12"}},
        "Resources": {
            "ApiFunction": {"Type": "AWS::Serverless::Function", "Properties": {
                "FunctionName": {"Fn::Sub": "imgclf-${Stage}-api"},
                "ReservedConcurrentExecutions": reserve(20),
            }},
            "ClassifierFunction": {"Type": "AWS::Serverless::Function", "Properties": {
                "FunctionName": {"Fn::Sub": "imgclf-${Stage}-classifier"},
                "PackageType": "Image",
                "ReservedConcurrentExecutions": reserve({"Ref": "ClassifierMaxConcurrency"}),
                "Events": {"Uploads": {"Type": "SQS", "Properties": {
                    "Queue": "arn:aws:sqs:us-east-1:123456789012:uploads",
                    "ScalingConfig": {"MaximumConcurrency": {"Ref": "ClassifierMaxConcurrency"}},
                }}},
            }},
            "TrainingImageRepository": {"Type": "AWS::ECR::Repository", "Properties": {
                "RepositoryName": {"Fn::Sub": "imgclf-${Stage}-training"},
            }},
        },
    }


def template(**parameters: str) -> StackTemplate:
    return StackTemplate(small_template(), parameters={"Stage": "dev", **parameters}, stack_name="imgclf-dev")


def target(stack_status: str | None = None) -> Target:
    return Target(REGION, ACCOUNT, stack_status)


@contextmanager
def stubbed(service: str):
    """A client whose answers the test gives, for what moto does not serve."""
    client = boto3.client(service, region_name=REGION)
    with Stubber(client) as stubber:
        yield client, stubber
        stubber.assert_no_pending_responses()


def account_settings(total: int, unreserved: int) -> dict:
    return {"AccountLimit": {"ConcurrentExecutions": total, "UnreservedConcurrentExecutions": unreserved}}


def fake_runner(answers: dict[str, tuple[int, str]]):
    """Answers by program (argv[0]); a program it does not know is missing, as a shell would say (127)."""
    calls = []

    def run(argv: list[str]) -> subprocess.CompletedProcess:
        calls.append(argv)
        code, output = answers.get(argv[0], (127, ""))
        return subprocess.CompletedProcess(argv, code, output if code == 0 else "", "" if code == 0 else output)

    run.calls = calls
    return run


HEALTHY_MACHINE = {"docker": (0, "27.3.1"), "python3.12": (0, "Python 3.12.8"), "sam": (0, "SAM CLI, version 1.170.0")}


class Session:
    """A boto3 session that hands out the given (stubbed) clients and moto's for the rest."""

    def __init__(self, region: str | None, **clients):
        self.region_name, self.clients = region, clients

    def client(self, service: str, region_name: str):
        return self.clients.get(service.replace("-", "_")) or boto3.client(service, region_name=region_name)


# ---------------------------------------------------------------- target
def test_the_target_names_region_account_stack_and_stage_of_a_new_stack(mocked_aws):
    sts, cloudformation = boto3.client("sts"), boto3.client("cloudformation")

    check = check_target(find_target(sts, cloudformation, REGION, "imgclf-dev"), Options())

    assert check.status == OK
    assert check.detail == f"{REGION}, account {ACCOUNT}, stack imgclf-dev (new), stage dev"


def test_an_existing_stack_makes_the_deploy_an_update(mocked_aws):
    cloudformation = boto3.client("cloudformation")
    cloudformation.create_stack(StackName="imgclf-dev", TemplateBody=json.dumps(
        {"Resources": {"Queue": {"Type": "AWS::SQS::Queue"}}}))

    found = find_target(boto3.client("sts"), cloudformation, REGION, "imgclf-dev")

    assert found.stack_exists
    assert "(exists, CREATE_COMPLETE: an update)" in check_target(found, Options()).detail


@pytest.mark.parametrize("stage", ["Dev", "dev--a", "dev-", "1dev", "dev_a", "abcdefghijklm"])
def test_a_stage_that_cannot_name_the_ecr_repository_fails(stage):
    check = check_target(target(), Options(stage=stage))

    assert check.status == FAIL
    assert "--stage" in check.fix


def test_a_stack_whose_first_create_failed_must_be_deleted_first():
    check = check_target(target("ROLLBACK_COMPLETE"), Options())

    assert check.status == FAIL
    assert check.fix.startswith("sam delete --stack-name imgclf-dev")


def test_a_change_set_never_executed_is_a_new_stack_and_one_being_updated_must_be_waited_for():
    review = check_target(target("REVIEW_IN_PROGRESS"), Options())
    updating = check_target(target("UPDATE_IN_PROGRESS"), Options())

    assert (review.status, updating.status) == (OK, FAIL)
    assert "(new)" in review.detail


@pytest.fixture
def no_aws_configuration(monkeypatch, tmp_path):
    """Neither credentials nor a region anywhere boto3 looks, and no instance metadata to wait for."""
    for key in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_SECURITY_TOKEN",
                "AWS_PROFILE", "AWS_DEFAULT_REGION", "AWS_REGION", "AWS_ENDPOINT_URL"):
        monkeypatch.delenv(key, raising=False)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "credentials"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")


def test_missing_credentials_fail_the_target_with_the_configure_fix(no_aws_configuration):
    session = boto3.session.Session(region_name=REGION)

    checks = run_checks(session, Options(skip_machine=True), raw_template=small_template())

    assert [(c.name, c.status) for c in checks] == [("target", FAIL)]
    assert "no valid AWS credentials" in checks[0].detail and "aws configure" in checks[0].fix


def test_no_region_fails_the_target_and_says_how_to_set_one(no_aws_configuration):
    session = boto3.session.Session()

    checks = run_checks(session, Options(skip_machine=True), raw_template=small_template())

    assert [(c.name, c.status, c.detail) for c in checks] == [("target", FAIL, "no AWS region configured")]
    assert "--region REGION" in checks[0].fix


def test_a_profile_that_is_not_configured_fails_the_target(no_aws_configuration, monkeypatch, capsys):
    monkeypatch.setenv("AWS_PROFILE", "nowhere")

    code = main(["preflight", "--skip-machine"])

    assert code == 1
    assert "FAIL  target               The config profile (nowhere) could not be found" in capsys.readouterr().out


# ---------------------------------------------------------------- parameters
def test_a_value_outside_the_allowed_values_fails_before_anything_is_checked():
    result = check_parameters(Options(parameters={"ReserveConcurrency": "yes"}), small_template())

    assert isinstance(result, Check) and result.status == FAIL
    assert "ReserveConcurrency=yes" in result.detail


def test_an_unknown_parameter_fails():
    result = check_parameters(Options(parameters={"Nope": "1"}), small_template())

    assert isinstance(result, Check) and "Nope" in result.detail


# ---------------------------------------------------------------- lambda concurrency
def test_by_default_no_function_reserves_concurrency():
    assert reservations(template()) == {"imgclf-dev-api": 0, "imgclf-dev-classifier": 0}


def test_the_default_parameters_pass_a_new_account_with_a_quota_of_10():
    with stubbed("lambda") as (client, stub):
        stub.add_response("get_account_settings", account_settings(10, 10))

        check = check_lambda_concurrency(client, template(), stack_exists=False)

    assert check.status == WARN  # not FAIL: the deploy works, the classifier just shares 10 with the API
    assert check.detail.startswith("10 total, 10 unreserved; the template reserves 0")


def test_reserving_concurrency_on_a_quota_of_10_fails_with_the_parameter_and_quota_fixes():
    with stubbed("lambda") as (client, stub):
        stub.add_response("get_account_settings", account_settings(10, 10))

        check = check_lambda_concurrency(client, template(ReserveConcurrency="true"), stack_exists=False)

    assert check.status == FAIL
    assert "the template reserves 30" in check.detail
    assert "ReserveConcurrency=false" in check.fix and "--quota-code L-B99A9384" in check.fix


def test_a_small_account_warns_that_the_upload_queue_competes_for_it():
    with stubbed("lambda") as (client, stub):
        stub.add_response("get_account_settings", account_settings(50, 50))

        check = check_lambda_concurrency(client, template(ClassifierMaxConcurrency="8"), stack_exists=False)

    assert check.status == WARN
    assert "run 8 classifiers at once" in check.detail
    assert check.fix.startswith("aws service-quotas request-service-quota-increase --service-code lambda")


def test_reservations_in_a_large_account_are_ok():
    with stubbed("lambda") as (client, stub):
        stub.add_response("get_account_settings", account_settings(1000, 1000))

        check = check_lambda_concurrency(client, template(ReserveConcurrency="true"), stack_exists=False)

    assert check == Check("lambda concurrency", OK, "1000 total, 1000 unreserved; the template reserves 30")


def test_an_update_counts_back_what_the_stack_already_reserves():
    # 110 unreserved minus 30 would leave 80 of the 100 Lambda keeps, but 25 of the 30 are the stack's already
    with stubbed("lambda") as (client, stub):
        stub.add_response("get_account_settings", account_settings(1000, 110))
        stub.add_response("get_function_concurrency", {"ReservedConcurrentExecutions": 25},
                          {"FunctionName": "imgclf-dev-api"})
        stub.add_client_error("get_function_concurrency", "ResourceNotFoundException",
                              expected_params={"FunctionName": "imgclf-dev-classifier"})

        check = check_lambda_concurrency(client, template(ReserveConcurrency="true"), stack_exists=True)

    assert check.status == OK
    assert "(25 already reserved by the stack)" in check.detail


def test_the_real_template_reserves_only_when_asked_and_then_fails_a_quota_of_10():
    if "ReserveConcurrency" not in load_template().get("Parameters", {}):
        pytest.skip("template.yaml has no ReserveConcurrency parameter yet")
    default = StackTemplate(parameters={"Stage": "dev"}, stack_name="imgclf-dev")
    reserving = StackTemplate(parameters={"Stage": "dev", "ReserveConcurrency": "true"}, stack_name="imgclf-dev")

    with stubbed("lambda") as (client, stub):
        stub.add_response("get_account_settings", account_settings(10, 10))
        check = check_lambda_concurrency(client, reserving, stack_exists=False)

    assert sum(reservations(default).values()) == 0 and sum(reservations(reserving).values()) > 0
    assert check.status == FAIL


# ---------------------------------------------------------------- api gateway logging
def _set_account_role(role_arn: str) -> None:
    boto3.client("apigateway").update_account(
        patchOperations=[{"op": "replace", "path": "/cloudwatchRoleArn", "value": role_arn}])


def test_an_existing_role_that_the_account_lacks_fails_with_both_fixes(mocked_aws):
    check = check_api_logging(boto3.client("apigateway"), template(ApiGatewayLogsRole="existing"), target(),
                              "imgclf-dev")

    assert check.status == FAIL
    assert "ApiGatewayLogsRole=create" in check.fix
    assert "aws apigateway update-account --patch-operations op=replace,path=/cloudwatchRoleArn,value=" in check.fix


def test_an_existing_role_that_the_account_has_is_ok(mocked_aws):
    _set_account_role(f"arn:aws:iam::{ACCOUNT}:role/apigateway-logs")

    check = check_api_logging(boto3.client("apigateway"), template(ApiGatewayLogsRole="existing"), target(),
                              "imgclf-dev")

    assert check.status == OK and "role/apigateway-logs" in check.detail


def test_creating_a_role_where_the_account_has_one_warns_and_suggests_existing(mocked_aws):
    _set_account_role(f"arn:aws:iam::{ACCOUNT}:role/apigateway-logs")

    check = check_api_logging(boto3.client("apigateway"), template(), target(), "imgclf-dev")

    assert check.status == WARN
    assert check.fix == "--parameter-overrides ApiGatewayLogsRole=existing"


def test_on_an_update_the_stacks_own_role_is_no_reason_to_warn(mocked_aws):
    _set_account_role(f"arn:aws:iam::{ACCOUNT}:role/imgclf-dev-ApiGatewayCloudWatchRole-ABC123")

    check = check_api_logging(boto3.client("apigateway"), template(), target("UPDATE_COMPLETE"), "imgclf-dev")

    assert check.status == OK


@pytest.mark.parametrize("choice", ["create", "none"])
def test_creating_a_role_or_no_logs_is_ok_in_an_account_without_one(mocked_aws, choice):
    check = check_api_logging(boto3.client("apigateway"), template(ApiGatewayLogsRole=choice), target(),
                              "imgclf-dev")

    assert check.status == OK


# ---------------------------------------------------------------- sagemaker training quota
def _quota(name: str, value: float, code: str = "L-0123ABCD") -> dict:
    return {"QuotaName": name, "Value": value, "QuotaCode": code, "ServiceCode": "sagemaker"}


def test_a_spot_quota_of_zero_fails_with_the_increase_request():
    with stubbed("service-quotas") as (client, stub):
        stub.add_response("list_service_quotas", {"Quotas": [_quota("ml.m5.large for spot training job usage", 4)],
                                                  "NextToken": "page-2"}, {"ServiceCode": "sagemaker"})
        stub.add_response("list_service_quotas",
                          {"Quotas": [_quota("ml.g4dn.xlarge for spot training job usage", 0, "L-SPOT0001")]},
                          {"ServiceCode": "sagemaker", "NextToken": "page-2"})

        check = check_training_quota(client, template())

    assert check.status == FAIL
    assert check.fix.startswith("aws service-quotas request-service-quota-increase --service-code sagemaker "
                                "--quota-code L-SPOT0001 --desired-value 1")
    assert "UseSpotTraining=false" in check.fix


def test_on_demand_training_reads_the_on_demand_quota():
    with stubbed("service-quotas") as (client, stub):
        stub.add_response("list_service_quotas", {"Quotas": [
            _quota("ml.g5.xlarge for spot training job usage", 0),
            _quota("ml.g5.xlarge for training job usage", 2),
        ]})

        check = check_training_quota(client, template(UseSpotTraining="false", TrainingInstanceType="ml.g5.xlarge"))

    assert check == Check("training quota", OK, "'ml.g5.xlarge for training job usage' = 2")


def test_a_quota_never_adjusted_is_read_from_the_aws_defaults():
    with stubbed("service-quotas") as (client, stub):
        stub.add_response("list_service_quotas", {"Quotas": []})
        stub.add_response("list_aws_default_service_quotas",
                          {"Quotas": [_quota("ml.g4dn.xlarge for spot training job usage", 0)]})

        check = check_training_quota(client, template())

    assert check.status == FAIL


def test_a_quota_that_is_not_listed_warns_and_says_where_to_look():
    with stubbed("service-quotas") as (client, stub):
        stub.add_response("list_service_quotas", {"Quotas": []})
        stub.add_response("list_aws_default_service_quotas", {"Quotas": []})

        check = check_training_quota(client, template())

    assert check.status == WARN
    assert "Service Quotas console" in check.fix


def test_a_denied_quota_lookup_warns_and_says_where_to_look():
    with stubbed("service-quotas") as (client, stub):
        stub.add_client_error("list_service_quotas", "AccessDeniedException")

        check = check_training_quota(client, template())

    assert check.status == WARN
    assert "AccessDeniedException" in check.detail and "Service Quotas console" in check.fix


# ---------------------------------------------------------------- training image
def test_before_the_first_deploy_the_repository_is_missing_and_the_push_is_the_fix(mocked_aws):
    check = check_training_image(boto3.client("ecr"), template(), target())

    assert check.status == WARN and check.detail.startswith("first deploy")
    assert check.fix == "push the image with `scripts/push-training-image.sh dev` before the first training run"


def test_a_repository_without_latest_warns_with_the_push_script(mocked_aws):
    ecr = boto3.client("ecr")
    ecr.create_repository(repositoryName="imgclf-dev-training")
    ecr.put_image(repositoryName="imgclf-dev-training", imageManifest=MANIFEST, imageTag="abc123")

    check = check_training_image(ecr, template(), target())

    assert check.status == WARN and "scripts/push-training-image.sh dev" in check.fix


def test_a_pushed_latest_image_is_ok_with_its_date_and_digest(mocked_aws):
    ecr = boto3.client("ecr")
    ecr.create_repository(repositoryName="imgclf-dev-training")
    digest = ecr.put_image(repositoryName="imgclf-dev-training", imageManifest=MANIFEST,
                           imageTag="latest")["image"]["imageId"]["imageDigest"]

    check = check_training_image(ecr, template(), target())

    assert check.status == OK
    assert check.detail.startswith("imgclf-dev-training:latest pushed ") and check.detail.endswith(digest)


def test_a_pinned_image_in_this_account_must_exist(mocked_aws):
    ecr = boto3.client("ecr")
    ecr.create_repository(repositoryName="imgclf-dev-training")
    ecr.put_image(repositoryName="imgclf-dev-training", imageManifest=MANIFEST, imageTag="abc123")
    registry = f"{ACCOUNT}.dkr.ecr.{REGION}.amazonaws.com/imgclf-dev-training"

    present = check_training_image(ecr, template(TrainingImageUri=f"{registry}:abc123"), target())
    missing = check_training_image(ecr, template(TrainingImageUri=f"{registry}:def456"), target())

    assert (present.status, missing.status) == (OK, FAIL)
    assert "TrainingImageUri" in missing.fix


def test_a_pinned_image_elsewhere_cannot_be_checked(mocked_aws):
    uri = f"210987654321.dkr.ecr.{REGION}.amazonaws.com/shared-training:v1"

    check = check_training_image(boto3.client("ecr"), template(TrainingImageUri=uri), target())

    assert check.status == WARN and "cannot check" in check.detail


# ---------------------------------------------------------------- machine
def test_docker_missing_or_stopped_fails_and_a_running_daemon_is_ok():
    missing = check_docker(fake_runner({}))
    stopped = check_docker(fake_runner({"docker": (1, "Cannot connect to the Docker daemon")}))
    running = check_docker(fake_runner({"docker": (0, "27.3.1\n")}))

    assert (missing.status, stopped.status, running) == (FAIL, FAIL, Check("docker", OK, "daemon 27.3.1"))
    assert "start Docker" in stopped.fix and "containerised build" in stopped.fix


def test_building_in_a_container_needs_no_local_python():
    runner = fake_runner({})

    check = check_python(runner, "python3.12", build_in_container=True)

    assert check.status == OK and runner.calls == []


def test_building_here_without_the_runtimes_python_fails():
    check = check_python(fake_runner({}), "python3.12", build_in_container=False)

    assert check.status == FAIL
    assert "install Python 3.12" in check.fix and "--no-build-in-container" in check.fix


def test_the_python_to_look_for_is_the_templates_runtime():
    raw = small_template()
    raw["Globals"]["Function"]["Runtime"] = "python3.13"
    runner = fake_runner({**HEALTHY_MACHINE, "python3.13": (0, "Python 3.13.1")})

    checks = run_checks(Session(None), Options(build_in_container=False), runner, raw_template=raw)

    assert Check("python3.13", OK, "Python 3.13.1") in checks
    assert ["python3.13", "--version"] in runner.calls


def test_the_projects_own_sam_is_preferred_and_none_at_all_warns(tmp_path):
    own = str(tmp_path / ".tools" / "sam" / "bin" / "sam")

    found = check_sam(fake_runner({own: (0, "SAM CLI, version 1.170.0"), "sam": (0, "SAM CLI, version 1.1")}),
                      tmp_path)
    missing = check_sam(fake_runner({}), tmp_path)

    assert found == Check("sam cli", OK, f"SAM CLI, version 1.170.0 ({own})")
    assert (missing.status, missing.fix) == (WARN, "make tools")


# ---------------------------------------------------------------- all checks and the command
def test_a_new_account_with_the_default_parameters_has_no_failures(mocked_aws):
    with stubbed("lambda") as (lambda_client, lambda_stub), stubbed("service-quotas") as (quotas, quotas_stub):
        lambda_stub.add_response("get_account_settings", account_settings(1000, 1000))
        quotas_stub.add_response("list_service_quotas",
                                 {"Quotas": [_quota("ml.g4dn.xlarge for spot training job usage", 1)]})
        session = Session(REGION, **{"lambda": lambda_client, "service_quotas": quotas})

        checks = run_checks(session, Options(), fake_runner(HEALTHY_MACHINE), raw_template=small_template())

    assert [(c.name, c.status) for c in checks] == [
        ("target", OK), ("lambda concurrency", OK), ("api logging", OK), ("training quota", OK),
        ("training image", WARN), ("docker", OK), ("python3.12", OK), ("sam cli", OK),
    ]


def test_a_refused_call_makes_its_check_inconclusive_not_the_run(mocked_aws):
    with stubbed("lambda") as (lambda_client, lambda_stub), stubbed("service-quotas") as (quotas, quotas_stub):
        lambda_stub.add_client_error("get_account_settings", "AccessDeniedException")
        quotas_stub.add_response("list_service_quotas",
                                 {"Quotas": [_quota("ml.g4dn.xlarge for spot training job usage", 1)]})
        session = Session(REGION, **{"lambda": lambda_client, "service_quotas": quotas})

        checks = run_checks(session, Options(skip_machine=True), raw_template=small_template())

    assert [c.name for c in checks] == ["target", "lambda concurrency", "api logging", "training quota",
                                        "training image"]
    assert checks[1].status == WARN and "AccessDeniedException" in checks[1].detail


def test_preflight_help_works_through_the_imgclf_parser(capsys):
    with pytest.raises(SystemExit) as exit_:
        build_parser().parse_args(["preflight", "--help"])

    assert exit_.value.code == 0
    assert "--parameter-overrides" in capsys.readouterr().out


def test_parameter_overrides_read_like_sam_deploys():
    args = build_parser().parse_args(["preflight", "--parameter-overrides",
                                      'UseSpotTraining="false" ReserveConcurrency=true', "AlarmEmail=ops@example.com",
                                      "--no-build-in-container"])

    options = preflight.options_from(args)

    assert options.parameters == {"UseSpotTraining": "false", "ReserveConcurrency": "true",
                                  "AlarmEmail": "ops@example.com"}
    assert (options.stage, options.stack_name, options.build_in_container) == ("dev", "imgclf-dev", False)


def test_a_stage_given_twice_differently_is_refused(capsys):
    code = main(["preflight", "--stage", "dev", "--parameter-overrides", "Stage=prod"])

    assert code == 2 and "disagree" in capsys.readouterr().err


@pytest.mark.parametrize(("statuses", "exit_code"), [((OK, WARN), 0), ((OK, FAIL, WARN), 1)])
def test_the_exit_status_is_1_exactly_when_a_check_fails(monkeypatch, capsys, statuses, exit_code):
    checks = [Check(f"check {i}", status, "found", "" if status == OK else "do this")
              for i, status in enumerate(statuses)]
    monkeypatch.setattr(preflight, "run_checks", lambda session, options: checks)

    code = main(["preflight", "--region", REGION])

    assert code == exit_code
    assert capsys.readouterr().out.splitlines()[1] == f"{statuses[1]:<6}check 1              found; fix: do this"


def test_json_prints_one_object_with_every_check(monkeypatch, capsys):
    monkeypatch.setattr(preflight, "run_checks", lambda session, options: [Check("docker", FAIL, "stopped", "start")])

    main(["preflight", "--region", REGION, "--stage", "test", "--json"])

    assert json.loads(capsys.readouterr().out) == {
        "stage": "test", "stack_name": "imgclf-test", "failed": True,
        "checks": [{"name": "docker", "status": "FAIL", "detail": "stopped", "fix": "start"}],
    }


def test_the_stage_rule_is_the_templates():
    stage = load_template()["Parameters"]["Stage"]

    assert stage.get("AllowedPattern") == preflight.STAGE_PATTERN
    assert stage.get("MaxLength") == preflight.STAGE_MAX_LENGTH

