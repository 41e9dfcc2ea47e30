"""A deploy rehearsal: the SAM-transformed template created and deleted as a stack by moto's CloudFormation.

cfn-lint and checkov read the template; this creates it, so references, conditions, outputs and deletion
run end to end for several sets of parameter values.

What moto 5.2.5's CloudFormation does, read from moto/cloudformation/parsing.py:
- A type it has no model for is skipped: it logs "No Moto CloudFormation support for <type>", warns
  "Tried to parse <type> but it's not supported" and creates nothing, without evaluating the resource's
  properties. A Ref to such a resource resolves to None, which silently drops the referencing property; a
  Fn::GetAtt to it fails the stack. WaitCondition and WaitConditionHandle are skipped the same way by design.
  MODELLED and UNMODELLED below say which is which for this template, and the tests keep both lists true.
- Resources are created lazily, each when first referenced (DependsOn first), so a reference to an unknown
  logical id or a reference cycle fails the create, but the order is not CloudFormation's, a Ref to a resource
  whose condition is false resolves to None instead of failing, and references in Metadata are not followed.
  The static tests here check those: every reference names a resource the parameters create, and the API
  stage depends on the account's logging setting.
- Deleting a stack deletes every created resource except those with DeletionPolicy Retain;
  RetainExceptOnCreate is deleted, and UpdateReplacePolicy is ignored.

Workarounds in the harness, none of which changes what the template declares:
- sam package uploads code to an artifacts bucket; moto's Lambda reads it at create, so the harness puts
  placeholder zips at the keys the transformed template names.
- moto's AWS::ApiGateway::RestApi ignores Body, so the Deployment fails with "The REST API doesn't contain any
  methods". The harness imports the body with moto's own put_rest_api, as CloudFormation imports it, leaving
  out SAM's caller-credentials marker (arn:aws:iam::*:user/*), which moto refuses as a cross-account role.
- RetainExceptOnCreate is given to moto as Retain: on deleting a stack that was created, AWS treats the two
  alike, and moto knows only Retain.
"""

from __future__ import annotations

import copy
import io
import json
import re
import warnings
import zipfile
from dataclasses import dataclass, field
from functools import cache

import boto3
import pytest
from botocore.exceptions import ClientError
from moto.apigateway.models import RestAPI, apigateway_backends
from moto.cloudformation.parsing import NULL_MODELS, get_model_map

from imgclf_local.sam_transform import ARTIFACTS_BUCKET, transformed_template
from imgclf_local.template import ACCOUNT_ID, REGION, StackTemplate, load_template

# moto warns once per skipped resource; the rehearsal records those warnings and checks them against UNMODELLED.
pytestmark = pytest.mark.filterwarnings("ignore:Tried to parse .* not supported by moto:UserWarning")

STACK_NAME = "imgclf-rehearsal"
DECLARED_PARAMETERS = set(load_template().get("Parameters", {}))

# What moto creates for real, and what of it the rehearsal can check.
MODELLED = {
    "AWS::ApiGateway::Deployment": "deploys the imported API, which needs a method with an integration",
    "AWS::ApiGateway::RestApi": "with the routes and Lambda integrations of SAM's OpenAPI body",
    "AWS::CloudWatch::Dashboard": "name and body",
    "AWS::DynamoDB::Table": "name, key schema, attributes, indexes, billing mode",
    "AWS::ECR::Repository": "name and tag mutability; moto keeps scanning and encryption in CloudFormation's "
                            "casing, so they do not read back",
    "AWS::Events::Rule": "name, pattern and target",
    "AWS::IAM::Role": "name, trust policy, inline policies",
    "AWS::KMS::Key": "a key whose id the alarm topic uses",
    "AWS::Lambda::EventSourceMapping": "queue to function",
    "AWS::Lambda::Function": "name, role, environment, reserved concurrency; code is a placeholder zip",
    "AWS::Lambda::LayerVersion": "from the placeholder zip",
    "AWS::Lambda::Permission": "on the function's policy",
    "AWS::Logs::LogGroup": "name and retention",
    "AWS::S3::Bucket": "name and encryption; versioning, lifecycle, logging and notifications are not applied",
    "AWS::SNS::Topic": "name and KMS key",
    "AWS::SSM::Parameter": "name, type and value (the review page's sign-in settings)",
    "AWS::SQS::Queue": "name, timeouts and redrive policy",
    "AWS::StepFunctions::StateMachine": "name, role, definition; DefinitionSubstitutions ignored, checked here",
}

# What moto skips, and why that is acceptable.
UNMODELLED = {
    "AWS::ApiGateway::Account": "no moto model; an account-wide setting: its role is created, its ordering is "
                                "checked statically",
    "AWS::ApiGateway::ApiKey": "no moto model; present only with RequireApiKey=true, checked on the deployed set",
    "AWS::ApiGateway::Stage": "no moto model; its logging and throttling are asserted on the deployed template, "
                              "and ApiUrl carries the stage name",
    "AWS::ApiGateway::UsagePlan": "no moto model; present only with RequireApiKey=true, checked on the deployed "
                                  "set",
    "AWS::ApiGateway::UsagePlanKey": "no moto model; present only with RequireApiKey=true, checked on the "
                                     "deployed set",
    "AWS::CloudFormation::WaitConditionHandle": "moto skips it by design; it only orders the API after the "
                                                "account setting, checked statically",
    "AWS::CloudWatch::Alarm": "no moto model; its references are checked statically, metrics by cfn-lint",
    "AWS::Cognito::UserPool": "no moto model; the local stack creates the pool from the template's properties "
                              "on moto's Cognito API (infra/imgclf_local/cognito.py), whose tests sign in",
    "AWS::Cognito::UserPoolClient": "no moto model; created by the local stack from the template, as the pool",
    "AWS::Cognito::UserPoolDomain": "no moto model; created by the local stack from the template, as the pool",
    "AWS::S3::BucketPolicy": "no moto model; policies are checked by checkov, references statically",
    "AWS::SNS::Subscription": "no moto model; present only with AlarmEmail, checked on the deployed set",
    "AWS::SNS::TopicPolicy": "no moto model; policies are checked by checkov, references statically",
    "AWS::SQS::QueuePolicy": "no moto model; policies are checked by checkov, references statically",
}


@dataclass(frozen=True)
class Scenario:
    """Parameter values for one rehearsal, and what they should deploy."""

    name: str
    parameters: dict[str, str] = field(default_factory=dict)
    api_key: bool = False
    alarm_email: str = ""
    reserved_concurrency: bool = False
    logs_role: str = "create"
    training_image: str = ""

    @property
    def stage(self) -> str:
        return self.parameters.get("Stage", "dev")

    @property
    def api_logs(self) -> bool:
        return self.logs_role != "none"


DEFAULTS = Scenario("defaults")
EVERYTHING_ON = Scenario(
    "alarm-email-api-key-reserved-image",
    parameters={
        "AlarmEmail": "ops@example.com",
        "RequireApiKey": "true",
        "ReserveConcurrency": "true",
        "TrainingImageUri": f"{ACCOUNT_ID}.dkr.ecr.{REGION}.amazonaws.com/elsewhere:v7",
    },
    api_key=True,
    alarm_email="ops@example.com",
    reserved_concurrency=True,
    training_image=f"{ACCOUNT_ID}.dkr.ecr.{REGION}.amazonaws.com/elsewhere:v7",
)
EXISTING_LOGS_ROLE = Scenario("existing-logs-role", parameters={"ApiGatewayLogsRole": "existing"},
                              logs_role="existing")
NO_API_LOGS = Scenario("no-api-logs-prod", parameters={"ApiGatewayLogsRole": "none", "Stage": "prod"},
                       logs_role="none")


def _param(scenario: Scenario):
    missing = sorted(set(scenario.parameters) - DECLARED_PARAMETERS)
    return pytest.param(scenario, id=scenario.name,
                        marks=pytest.mark.skipif(bool(missing), reason=f"template.yaml has no parameter {missing}"))


SCENARIOS = [_param(s) for s in (DEFAULTS, EVERYTHING_ON, EXISTING_LOGS_ROLE, NO_API_LOGS)]
RUNNABLE = [s for s in (DEFAULTS, EVERYTHING_ON, EXISTING_LOGS_ROLE, NO_API_LOGS)
            if set(s.parameters) <= DECLARED_PARAMETERS]


@cache
def _transformed(parameters: tuple[tuple[str, str], ...]) -> dict:
    return transformed_template(dict(parameters))


def template_for(scenario: Scenario) -> dict:
    """The transformed template for a scenario, a fresh copy each time."""
    return copy.deepcopy(_transformed(tuple(sorted(scenario.parameters.items()))))


# Types whose physical id in moto, as in AWS, is their name (others are URLs, ARNs or generated ids).
_NAMED_BY_PHYSICAL_ID = {"AWS::S3::Bucket", "AWS::DynamoDB::Table", "AWS::IAM::Role", "AWS::Lambda::Function",
                         "AWS::Logs::LogGroup", "AWS::ECR::Repository"}


class DeployedValues(StackTemplate):
    """The template's intrinsics resolved as this stack resolves them: with the ids moto gave its resources."""

    def __init__(self, template: dict, parameters: dict[str, str], physical_ids: dict[str, str]):
        super().__init__(template, parameters=parameters, stack_name=STACK_NAME)
        self.physical_ids = physical_ids

    def physical_ref(self, logical_id: str) -> str:
        return self.physical_ids[logical_id]

    def physical_name(self, logical_id: str) -> str:
        if self.resources[logical_id]["Type"] in _NAMED_BY_PHYSICAL_ID:
            return self.physical_ids[logical_id]
        return super().physical_name(logical_id)


@dataclass
class Rehearsal:
    scenario: Scenario
    template: dict
    stack: dict
    physical_ids: dict[str, str]
    skipped_types: set[str]

    @property
    def outputs(self) -> dict[str, str]:
        return {o["OutputKey"]: o["OutputValue"] for o in self.stack.get("Outputs", [])}

    @property
    def conditions(self) -> dict[str, bool]:
        return StackTemplate(self.template, parameters=self.scenario.parameters).conditions

    @property
    def deployed(self) -> dict[str, dict]:
        """The resources the scenario's conditions keep, as the template declares them."""
        return deployed_resources(self.template, self.scenario)

    def of_type(self, kind: str) -> dict[str, dict]:
        return {lid: r for lid, r in self.deployed.items() if r["Type"] == kind}

    @property
    def rest_api_id(self) -> str:
        (logical_id,) = self.of_type("AWS::ApiGateway::RestApi")
        return self.physical_ids[logical_id]

    def value(self, node):
        """A fragment of the template resolved with this stack's parameters and physical ids."""
        return DeployedValues(self.template, self.scenario.parameters, self.physical_ids).resolve(node)


def deployed_resources(template: dict, scenario: Scenario) -> dict[str, dict]:
    conditions = StackTemplate(template, parameters=scenario.parameters).conditions
    return {lid: r for lid, r in template["Resources"].items()
            if "Condition" not in r or conditions[r["Condition"]]}


def _placeholder_zip() -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("README", "placeholder: the rehearsal creates the function, it never runs it")
    return buffer.getvalue()


def _upload_artifacts(template: dict) -> None:
    s3 = boto3.client("s3", region_name=REGION)
    s3.create_bucket(Bucket=ARTIFACTS_BUCKET)
    for resource in template["Resources"].values():
        props = resource.get("Properties", {})
        for code in (props.get("Code"), props.get("Content")):
            if code and code.get("S3Bucket") == ARTIFACTS_BUCKET:
                s3.put_object(Bucket=ARTIFACTS_BUCKET, Key=code["S3Key"], Body=_placeholder_zip())


def _without_caller_credentials(body: dict) -> dict:
    body = copy.deepcopy(body)
    for operations in body.get("paths", {}).values():
        for operation in operations.values():
            integration = operation.get("x-amazon-apigateway-integration", {})
            if integration.get("credentials") == "arn:aws:iam::*:user/*":
                del integration["credentials"]
    return body


@pytest.fixture
def rest_api_imports_its_body(monkeypatch):
    """moto's RestApi model ignores Body; import it as CloudFormation does (see the module docstring)."""
    create = RestAPI.create_from_cloudformation_json

    def create_with_body(cls, resource_name, cloudformation_json, account_id, region_name, **kwargs):
        api = create(resource_name, cloudformation_json, account_id, region_name, **kwargs)
        body = cloudformation_json["Properties"].get("Body")
        if body:
            apigateway_backends[account_id][region_name].put_rest_api(
                api.id, _without_caller_credentials(body), fail_on_warnings=False)
        return api

    monkeypatch.setattr(RestAPI, "create_from_cloudformation_json", classmethod(create_with_body))


@pytest.fixture
def rehearse(mocked_aws, rest_api_imports_its_body):
    """Create the transformed template as a stack in moto, for a scenario."""

    def run(scenario: Scenario) -> Rehearsal:
        template = template_for(scenario)
        _upload_artifacts(template)
        for resource in template["Resources"].values():
            if resource.get("DeletionPolicy") == "RetainExceptOnCreate":
                resource["DeletionPolicy"] = "Retain"
        cloudformation = boto3.client("cloudformation", region_name=REGION)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            stack_id = cloudformation.create_stack(
                StackName=STACK_NAME,
                TemplateBody=json.dumps(template),
                Parameters=[{"ParameterKey": k, "ParameterValue": v} for k, v in scenario.parameters.items()],
                Capabilities=["CAPABILITY_IAM", "CAPABILITY_NAMED_IAM", "CAPABILITY_AUTO_EXPAND"],
            )["StackId"]
        skipped = {m.group(1) for w in caught if (m := re.match(r"Tried to parse (\S+) but", str(w.message)))}
        resources = cloudformation.describe_stack_resources(StackName=stack_id)["StackResources"]
        return Rehearsal(
            scenario=scenario,
            template=template,
            stack=cloudformation.describe_stacks(StackName=stack_id)["Stacks"][0],
            physical_ids={r["LogicalResourceId"]: r.get("PhysicalResourceId", "")
                          for r in resources if r.get("LogicalResourceId")},
            skipped_types=skipped,
        )

    return run


def _exists(kind: str, physical_id: str) -> bool:
    """Whether moto has a resource of one of the types the tests look up by physical id."""
    probes = {
        "AWS::S3::Bucket": lambda: boto3.client("s3").head_bucket(Bucket=physical_id),
        "AWS::DynamoDB::Table": lambda: boto3.client("dynamodb").describe_table(TableName=physical_id),
        "AWS::SQS::Queue": lambda: boto3.client("sqs").get_queue_attributes(QueueUrl=physical_id),
        "AWS::Lambda::Function": lambda: boto3.client("lambda").get_function(FunctionName=physical_id),
        "AWS::StepFunctions::StateMachine": lambda: boto3.client("stepfunctions").describe_state_machine(
            stateMachineArn=physical_id),
        "AWS::IAM::Role": lambda: boto3.client("iam").get_role(RoleName=physical_id),
        "AWS::ECR::Repository": lambda: boto3.client("ecr").describe_repositories(repositoryNames=[physical_id]),
        "AWS::SNS::Topic": lambda: boto3.client("sns").get_topic_attributes(TopicArn=physical_id),
        "AWS::SSM::Parameter": lambda: boto3.client("ssm").get_parameter(Name=physical_id),
    }
    if kind == "AWS::Logs::LogGroup":
        groups = boto3.client("logs").describe_log_groups(logGroupNamePrefix=physical_id)["logGroups"]
        return any(g["logGroupName"] == physical_id for g in groups)
    try:
        probes[kind]()
    except ClientError:
        return False
    return True


def _references(node, conditions: dict[str, bool]) -> set[str]:
    """The logical ids and parameters a fragment refers to, following only the Fn::If branches taken."""
    if isinstance(node, list):
        return set().union(*(_references(item, conditions) for item in node))
    if not isinstance(node, dict):
        return set()
    if set(node) == {"Fn::If"}:
        name, when_true, when_false = node["Fn::If"]
        return _references(when_true if conditions[name] else when_false, conditions)
    if set(node) == {"Ref"}:
        return {node["Ref"]}
    if set(node) == {"Fn::GetAtt"}:
        target = node["Fn::GetAtt"]
        return {target.split(".")[0] if isinstance(target, str) else target[0]}
    if set(node) == {"Fn::Sub"}:
        text, variables = (node["Fn::Sub"], {}) if isinstance(node["Fn::Sub"], str) else node["Fn::Sub"]
        names = {m.split(".")[0] for m in re.findall(r"\$\{([^!}][^}]*)\}", text)} - set(variables)
        return names | _references(list(variables.values()), conditions)
    return set().union(*(_references(v, conditions) for v in node.values()))


def _depends_on(resource: dict) -> set[str]:
    depends = resource.get("DependsOn", [])
    return {depends} if isinstance(depends, str) else set(depends)


# ---------------------------------------------------------------------------------------- the type lists
def test_every_resource_type_is_either_modelled_or_explained(aws_credentials):
    # GIVEN every resource type the transformed template has, under every scenario
    types = {r["Type"] for s in RUNNABLE for r in template_for(s)["Resources"].values()}

    # WHEN they are compared with the two lists
    unclassified = types - MODELLED.keys() - UNMODELLED.keys()
    stale = (MODELLED.keys() | UNMODELLED.keys()) - types

    # THEN a new type must be placed in one of them, with a reason, and a type that left must leave the lists
    assert not unclassified, f"new resource types: add each to MODELLED or UNMODELLED with a reason: {unclassified}"
    assert not stale, f"no longer in the transformed template, remove from the lists: {stale}"
    assert MODELLED.keys().isdisjoint(UNMODELLED)


def test_the_lists_say_what_moto_models():
    # GIVEN moto's CloudFormation models; WHEN the lists are checked against them
    models = get_model_map()

    # THEN every MODELLED type has a model and no UNMODELLED one has, so a moto upgrade updates the lists
    assert {t for t in MODELLED if t not in models} == set()
    assert {t for t in UNMODELLED if t in models and t not in NULL_MODELS} == set()


# ---------------------------------------------------------------------------------------- static checks
@pytest.mark.parametrize("scenario", SCENARIOS)
def test_every_reference_names_a_parameter_or_a_resource_the_scenario_creates(aws_credentials, scenario):
    # GIVEN the transformed template and the resources its conditions keep
    template = template_for(scenario)
    conditions = StackTemplate(template, parameters=scenario.parameters).conditions
    deployed = deployed_resources(template, scenario)
    known = set(deployed) | set(template.get("Parameters", {}))

    # WHEN the references of every kept resource and shown output are collected
    dangling = {}
    for logical_id, resource in deployed.items():
        refs = _references([resource.get("Properties", {}), resource.get("Metadata", {})], conditions)
        refs |= _depends_on(resource)
        dangling[logical_id] = {r for r in refs if r not in known and not r.startswith("AWS::")}
    for key, output in template.get("Outputs", {}).items():
        if "Condition" not in output or conditions[output["Condition"]]:
            dangling[f"Outputs.{key}"] = {r for r in _references(output, conditions)
                                         if r not in known and not r.startswith("AWS::")}

    # THEN none names a resource that does not exist (CloudFormation refuses them; moto would drop a Ref)
    assert {k: v for k, v in dangling.items() if v} == {}


@pytest.mark.skipif("ApiGatewayLogsRole" not in DECLARED_PARAMETERS, reason="no ApiGatewayLogsRole parameter")
def test_api_stage_is_created_after_the_account_logging_setting(aws_credentials):
    # GIVEN the default deploy, which sets the account's API Gateway logging role
    template = template_for(DEFAULTS)
    conditions = StackTemplate(template).conditions
    resources = deployed_resources(template, DEFAULTS)
    (account,) = [lid for lid, r in resources.items() if r["Type"] == "AWS::ApiGateway::Account"]
    (stage,) = [lid for lid, r in resources.items() if r["Type"] == "AWS::ApiGateway::Stage"]

    # WHEN the stage's dependencies are followed: DependsOn and references, Metadata included
    seen, todo = set(), [stage]
    while todo:
        resource = resources[todo.pop()]
        for dependency in _depends_on(resource) | _references(
                [resource.get("Properties", {}), resource.get("Metadata", {})], conditions):
            if dependency in resources and dependency not in seen:
                seen.add(dependency)
                todo.append(dependency)

    # THEN the account setting is among them, so the stage never enables logging before the account allows it
    assert account in seen


# ---------------------------------------------------------------------------------------- the rehearsal
@pytest.mark.parametrize("scenario", SCENARIOS)
def test_stack_completes_and_every_output_resolves_to_a_resource_of_the_expected_shape(rehearse, scenario):
    # GIVEN the transformed template created as a stack
    rehearsal = rehearse(scenario)
    assert rehearsal.stack["StackStatus"] == "CREATE_COMPLETE"
    stage, api_id = re.escape(scenario.stage), rehearsal.rest_api_id
    names = {"stage": stage, "account": ACCOUNT_ID, "region": REGION, "api": re.escape(api_id)}
    shapes = {
        "ApiUrl": r"https://{api}\.execute-api\.{region}\.amazonaws\.com/{stage}/",
        "DataBucketName": r"imgclf-{stage}-data-{account}-{region}",
        "PredictionsTableName": r"imgclf-{stage}-predictions",
        "RunsTableName": r"imgclf-{stage}-runs",
        "ModelsTableName": r"imgclf-{stage}-models",
        "DecisionsTableName": r"imgclf-{stage}-decisions",
        "ClassifyDLQUrl": r"https://sqs\.{region}\.amazonaws\.com/{account}/imgclf-{stage}-classify-dlq",
        "PipelineArn": r"arn:aws:states:{region}:{account}:stateMachine:imgclf-{stage}-pipeline",
        "ReclassifyArn": r"arn:aws:states:{region}:{account}:stateMachine:imgclf-{stage}-reclassify",
        "TrainingImageRepositoryUri": r"{account}\.dkr\.ecr\.{region}\.amazonaws\.com/imgclf-{stage}-training",
        "CollectorFunctionName": r"imgclf-{stage}-collector",
        "ReviewSignInParameter": r"/imgclf/{stage}/review-sign-in",
        "DashboardUrl": r"https://{region}\.console\.amazonaws\.com/cloudwatch/home\?region={region}"
                        r"#dashboards:name=imgclf-{stage}-model-health",
    }
    conditions = rehearsal.conditions
    resources = rehearsal.template["Resources"]
    # An output naming a resource moto skips (UNMODELLED) has nothing to resolve to here.
    declared = {k for k, o in rehearsal.template["Outputs"].items()
                if ("Condition" not in o or conditions[o["Condition"]])
                and resources.get(o["Value"].get("Ref") if isinstance(o["Value"], dict) else None, {}).get("Type")
                not in UNMODELLED}

    # WHEN its outputs are read
    outputs = rehearsal.outputs

    # THEN every declared output is there with the shape of its kind, and a Ref output names a live resource
    assert set(outputs) == declared, "an output is missing, or a new output needs a shape here"
    assert set(shapes) >= declared, f"outputs without a shape: {declared - set(shapes)}"
    for key, value in outputs.items():
        assert re.fullmatch(shapes[key].format(**names), value), (key, value)
        target = rehearsal.template["Outputs"][key]["Value"]
        if set(target) == {"Ref"}:
            kind = rehearsal.template["Resources"][target["Ref"]]["Type"]
            assert value == rehearsal.physical_ids[target["Ref"]]
            assert _exists(kind, value), (key, value)


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_parameters_select_the_expected_resources(rehearse, scenario):
    # GIVEN a created stack
    rehearsal = rehearse(scenario)
    deployed = rehearsal.deployed
    types = {r["Type"] for r in deployed.values()}

    # WHEN what moto created, and what it skipped, is compared with what the conditions keep
    created = set(rehearsal.physical_ids)

    # THEN moto evaluated the conditions as the template says, and skipped only the unmodelled types
    assert created == {lid for lid, r in deployed.items() if r["Type"] in MODELLED}
    assert rehearsal.skipped_types == types & UNMODELLED.keys()

    # AND RequireApiKey decides the usage plan, its key, and the key on POST /classify
    key_types = {"AWS::ApiGateway::UsagePlan", "AWS::ApiGateway::ApiKey", "AWS::ApiGateway::UsagePlanKey"}
    assert key_types & types == (key_types if scenario.api_key else set())
    (api,) = rehearsal.of_type("AWS::ApiGateway::RestApi").values()
    classify = api["Properties"]["Body"]["paths"]["/classify"]["post"]
    assert any("api_key" in s for s in classify.get("security", [])) is scenario.api_key

    # AND AlarmEmail decides the e-mail subscription of the alarm topic
    subscriptions = rehearsal.of_type("AWS::SNS::Subscription").values()
    assert [rehearsal.value(s["Properties"]["Endpoint"]) for s in subscriptions] == (
        [scenario.alarm_email] if scenario.alarm_email else [])

    # AND ReserveConcurrency decides whether every function reserves concurrency
    lambda_ = boto3.client("lambda", region_name=REGION)
    for logical_id in rehearsal.of_type("AWS::Lambda::Function"):
        reserved = lambda_.get_function_concurrency(FunctionName=rehearsal.physical_ids[logical_id])
        assert ("ReservedConcurrentExecutions" in reserved) is scenario.reserved_concurrency, logical_id

    # AND ApiGatewayLogsRole decides the account setting, its role, the API log groups and the stage's logging
    assert ("AWS::ApiGateway::Account" in types) is (scenario.logs_role == "create")
    iam = boto3.client("iam", region_name=REGION)
    api_gateway_roles = [
        lid for lid in rehearsal.of_type("AWS::IAM::Role")
        if "apigateway.amazonaws.com" in json.dumps(
            iam.get_role(RoleName=rehearsal.physical_ids[lid])["Role"]["AssumeRolePolicyDocument"])
    ]
    assert bool(api_gateway_roles) is (scenario.logs_role == "create")
    api_id = rehearsal.rest_api_id
    api_groups = {f"/aws/apigateway/imgclf-{scenario.stage}-access",
                  f"API-Gateway-Execution-Logs_{api_id}/{scenario.stage}"}
    assert all(_exists("AWS::Logs::LogGroup", g) for g in api_groups) is scenario.api_logs
    assert any(_exists("AWS::Logs::LogGroup", g) for g in api_groups) is scenario.api_logs
    (stage,) = rehearsal.of_type("AWS::ApiGateway::Stage").values()
    assert ("AccessLogSetting" in stage["Properties"]) is scenario.api_logs
    levels = {m["LoggingLevel"] for m in stage["Properties"]["MethodSettings"]}
    assert levels == ({"ERROR"} if scenario.api_logs else {"OFF"})


def test_modelled_resources_exist_with_the_names_and_settings_of_the_template(rehearse):
    # GIVEN a stack created with the default parameters
    rehearsal = rehearse(DEFAULTS)
    ids, value = rehearsal.physical_ids, rehearsal.value
    retention = int(value({"Ref": "LogRetentionDays"}))

    # WHEN / THEN each bucket exists under its declared name, encrypted
    s3 = boto3.client("s3", region_name=REGION)
    for logical_id, bucket in rehearsal.of_type("AWS::S3::Bucket").items():
        assert ids[logical_id] == value(bucket["Properties"]["BucketName"])
        assert s3.get_bucket_encryption(Bucket=ids[logical_id])["ServerSideEncryptionConfiguration"]["Rules"]

    # each table has its name, key schema and indexes
    dynamodb = boto3.client("dynamodb", region_name=REGION)
    for logical_id, table in rehearsal.of_type("AWS::DynamoDB::Table").items():
        props = table["Properties"]
        described = dynamodb.describe_table(TableName=ids[logical_id])["Table"]
        assert described["TableName"] == value(props["TableName"])
        assert described["KeySchema"] == props["KeySchema"]
        assert ({i["IndexName"]: i["KeySchema"] for i in described.get("GlobalSecondaryIndexes", [])}
                == {i["IndexName"]: i["KeySchema"] for i in props.get("GlobalSecondaryIndexes", [])})
        assert described["BillingModeSummary"]["BillingMode"] == props["BillingMode"]

    # each queue has its name and timeouts, and a redrive policy to the DLQ it names
    sqs = boto3.client("sqs", region_name=REGION)
    queue_arns = {lid: sqs.get_queue_attributes(QueueUrl=ids[lid], AttributeNames=["QueueArn"])["Attributes"][
        "QueueArn"] for lid in rehearsal.of_type("AWS::SQS::Queue")}
    for logical_id, queue in rehearsal.of_type("AWS::SQS::Queue").items():
        props = queue["Properties"]
        attributes = sqs.get_queue_attributes(QueueUrl=ids[logical_id], AttributeNames=["All"])["Attributes"]
        assert queue_arns[logical_id].endswith(":" + value(props["QueueName"]))
        if "VisibilityTimeout" in props:
            assert int(attributes["VisibilityTimeout"]) == props["VisibilityTimeout"]
        if "RedrivePolicy" in props:
            redrive = json.loads(attributes["RedrivePolicy"])
            dlq = props["RedrivePolicy"]["deadLetterTargetArn"]["Fn::GetAtt"][0]
            assert redrive["deadLetterTargetArn"] == queue_arns[dlq]
            assert int(redrive["maxReceiveCount"]) == props["RedrivePolicy"]["maxReceiveCount"]
    assert any("RedrivePolicy" in q["Properties"] for q in rehearsal.of_type("AWS::SQS::Queue").values())

    # each role exists, under its declared name where it has one, trusting the service the template names
    iam = boto3.client("iam", region_name=REGION)
    for logical_id, role in rehearsal.of_type("AWS::IAM::Role").items():
        described = iam.get_role(RoleName=ids[logical_id])["Role"]
        if "RoleName" in role["Properties"]:
            assert described["RoleName"] == value(role["Properties"]["RoleName"])
        trust = role["Properties"]["AssumeRolePolicyDocument"]
        assert described["AssumeRolePolicyDocument"]["Statement"][0]["Principal"] == value(
            trust["Statement"][0]["Principal"])

    # each state machine has its name and role, and a substitution for every placeholder of its definition
    stepfunctions = boto3.client("stepfunctions", region_name=REGION)
    for logical_id, machine in rehearsal.of_type("AWS::StepFunctions::StateMachine").items():
        props = machine["Properties"]
        described = stepfunctions.describe_state_machine(stateMachineArn=ids[logical_id])
        assert described["name"] == value(props["StateMachineName"])
        assert described["roleArn"] == iam.get_role(RoleName=ids[props["RoleArn"]["Fn::GetAtt"][0]])["Role"]["Arn"]
        placeholders = set(re.findall(r"\$\{(\w+)\}", described["definition"]))
        assert placeholders <= set(props.get("DefinitionSubstitutions", {})), logical_id

    # each log group has its name and the stack's retention
    logs = boto3.client("logs", region_name=REGION)
    for logical_id, group in rehearsal.of_type("AWS::Logs::LogGroup").items():
        name = value(group["Properties"]["LogGroupName"])
        (described,) = [g for g in logs.describe_log_groups(logGroupNamePrefix=name)["logGroups"]
                        if g["logGroupName"] == name]
        assert described["retentionInDays"] == retention, logical_id
    functions = rehearsal.of_type("AWS::Lambda::Function")
    lambda_groups = {value(f["Properties"]["LoggingConfig"]["LogGroup"]) for f in functions.values()
                     if "LoggingConfig" in f["Properties"]}
    assert lambda_groups == {f"/aws/lambda/{ids[lid]}" for lid in functions}, "each function logs to its group"

    # the training image repository has its name and tag mutability
    ecr = boto3.client("ecr", region_name=REGION)
    for logical_id, repository in rehearsal.of_type("AWS::ECR::Repository").items():
        (described,) = ecr.describe_repositories(repositoryNames=[ids[logical_id]])["repositories"]
        assert described["repositoryName"] == value(repository["Properties"]["RepositoryName"])
        assert described["imageTagMutability"] == repository["Properties"]["ImageTagMutability"]

    # the alarm topic has its name and is encrypted with the stack's key
    sns = boto3.client("sns", region_name=REGION)
    for logical_id, topic in rehearsal.of_type("AWS::SNS::Topic").items():
        assert ids[logical_id].endswith(":" + value(topic["Properties"]["TopicName"]))
        attributes = sns.get_topic_attributes(TopicArn=ids[logical_id])["Attributes"]
        assert attributes["KmsMasterKeyId"] == value(topic["Properties"]["KmsMasterKeyId"])


@pytest.mark.parametrize("scenario", [_param(DEFAULTS), _param(EVERYTHING_ON)])
def test_functions_get_every_environment_reference_resolved(rehearse, scenario):
    # GIVEN a created stack
    rehearsal = rehearse(scenario)
    lambda_ = boto3.client("lambda", region_name=REGION)
    iam = boto3.client("iam", region_name=REGION)

    for logical_id, function in rehearsal.of_type("AWS::Lambda::Function").items():
        # WHEN a function is read back
        props = function["Properties"]
        configuration = lambda_.get_function(FunctionName=rehearsal.physical_ids[logical_id])["Configuration"]

        # THEN it has the declared name and role, and every environment variable, none dropped by a Ref to
        # something that was not created
        assert configuration["FunctionName"] == rehearsal.value(props["FunctionName"])
        role = props["Role"]["Fn::GetAtt"][0]
        assert configuration["Role"] == iam.get_role(RoleName=rehearsal.physical_ids[role])["Role"]["Arn"]
        variables = configuration.get("Environment", {}).get("Variables", {})
        assert set(variables) == set(props.get("Environment", {}).get("Variables", {})), logical_id
        assert all(v != "" for v in variables.values()), logical_id
        if "TRAINING_IMAGE_URI" in variables:
            repository = next(iter(rehearsal.of_type("AWS::ECR::Repository")))
            expected = scenario.training_image or (
                f"{ACCOUNT_ID}.dkr.ecr.{REGION}.amazonaws.com/{rehearsal.physical_ids[repository]}:latest")
            assert variables["TRAINING_IMAGE_URI"] == expected


def test_api_routes_of_the_template_reach_the_api_function(rehearse):
    # GIVEN the routes template.yaml declares as Api events, and a created stack
    declared = {
        (event["Properties"]["Path"], event["Properties"]["Method"].upper()): logical_id
        for logical_id, resource in load_template()["Resources"].items()
        if resource["Type"] == "AWS::Serverless::Function"
        for event in (resource["Properties"].get("Events") or {}).values()
        if event["Type"] == "Api"
    }
    rehearsal = rehearse(DEFAULTS)
    apigateway = boto3.client("apigateway", region_name=REGION)
    lambda_ = boto3.client("lambda", region_name=REGION)
    api_id = rehearsal.rest_api_id

    # WHEN the deployed API's resources and integrations are read
    deployed = {}
    for resource in apigateway.get_resources(restApiId=api_id, limit=500)["items"]:
        for method in resource.get("resourceMethods", {}):
            integration = apigateway.get_integration(restApiId=api_id, resourceId=resource["id"], httpMethod=method)
            deployed[(resource["path"], method)] = integration["uri"]

    # THEN every declared route is there, proxied to its function's real ARN
    assert set(deployed) == set(declared)
    for route, function_id in declared.items():
        arn = lambda_.get_function(FunctionName=rehearsal.physical_ids[function_id])["Configuration"]["FunctionArn"]
        assert f"/functions/{arn}/invocations" in deployed[route], route


def test_delete_completes_and_keeps_exactly_the_retained_resources(rehearse):
    # GIVEN a created stack, and which of its resources the template retains
    rehearsal = rehearse(DEFAULTS)
    source = deployed_resources(template_for(DEFAULTS), DEFAULTS)
    probed = {lid: r["Type"] for lid, r in source.items() if r["Type"] in {
        "AWS::S3::Bucket", "AWS::DynamoDB::Table", "AWS::SQS::Queue", "AWS::Lambda::Function",
        "AWS::StepFunctions::StateMachine", "AWS::IAM::Role", "AWS::Logs::LogGroup", "AWS::ECR::Repository",
        "AWS::SNS::Topic"}}
    retained = {lid for lid in probed if source[lid].get("DeletionPolicy") in {"Retain", "RetainExceptOnCreate"}}
    assert retained, "the template retains its data"

    # WHEN the stack is deleted
    cloudformation = boto3.client("cloudformation", region_name=REGION)
    cloudformation.delete_stack(StackName=rehearsal.stack["StackId"])

    # THEN it is gone, the retained resources stay and everything else went with it
    (stack,) = cloudformation.describe_stacks(StackName=rehearsal.stack["StackId"])["Stacks"]
    assert stack["StackStatus"] == "DELETE_COMPLETE"
    remaining = {lid for lid, kind in probed.items() if _exists(kind, rehearsal.physical_ids[lid])}
    assert remaining == retained
