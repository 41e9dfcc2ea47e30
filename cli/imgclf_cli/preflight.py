"""`imgclf preflight`: check an AWS account and this machine before `sam deploy` creates anything."""

from __future__ import annotations

import argparse
import json
import re
import shlex
import subprocess
import sys
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import UTC
from functools import partial
from pathlib import Path

from botocore.exceptions import BotoCoreError, ClientError

from imgclf_local.template import REPO_ROOT, StackTemplate, TemplateError

OK, WARN, FAIL = "ok", "warn", "FAIL"

# The stage is part of the ECR repository name imgclf-<stage>-training (no "--", no trailing "-") and of
# S3 bucket names that also carry the account and region, so it must stay short.
STAGE_PATTERN = r"^[a-z][a-z0-9]*(-[a-z0-9]+)*$"
STAGE_MAX_LENGTH = 12
STAGE_RULE = "lower-case letters and digits in words joined by single hyphens, at most 12 characters"

# Lambda keeps this much of the account's concurrency unreserved, or all of it when the quota is smaller
# ("below its minimum value of [10]" on a quota of 10, "minus 100" in the Lambda guide on the usual 1000).
UNRESERVED_MINIMUM = 100
LAMBDA_CONCURRENCY_QUOTA = "L-B99A9384"
SMALL_ACCOUNT_LIMIT = 100
CREDENTIALS_FIX = "`aws configure` (or `aws sso login`, or export AWS_PROFILE=NAME) for an identity that may deploy"
FUNCTION = "AWS::Serverless::Function"
TRAINING_REPOSITORY = "TrainingImageRepository"
ECR_URI = re.compile(r"^(?P<account>\d{12})\.dkr\.ecr\.(?P<region>[a-z0-9-]+)\.amazonaws\.com(?:\.cn)?/"
                     r"(?P<repository>[^:@]+)(?::(?P<tag>[^@]+))?(?:@(?P<digest>sha256:[0-9a-f]{64}))?$")

TARGET, PARAMETERS, CONCURRENCY, API_LOGGING = "target", "parameters", "lambda concurrency", "api logging"
TRAINING_QUOTA, TRAINING_IMAGE, DOCKER, SAM = "training quota", "training image", "docker", "sam cli"

Runner = Callable[[list[str]], subprocess.CompletedProcess]


@dataclass(frozen=True)
class Check:
    """One finding: its status, what was found and, unless it is ok, the exact fix."""

    name: str
    status: str
    detail: str
    fix: str = ""


@dataclass(frozen=True)
class Options:
    """What the deploy would be: where, with which parameters, and how it would build."""

    stage: str = "dev"
    stack_name: str = ""
    region: str | None = None
    parameters: dict[str, str] = field(default_factory=dict)
    build_in_container: bool = True
    skip_machine: bool = False

    def __post_init__(self):
        if not self.stack_name:
            object.__setattr__(self, "stack_name", f"imgclf-{self.stage}")

    @property
    def template_parameters(self) -> dict[str, str]:
        return {**self.parameters, "Stage": self.stage}


@dataclass(frozen=True)
class Target:
    """The account and region the stack would go to, and the stack's status if it exists already."""

    region: str
    account: str
    stack_status: str | None

    @property
    def stack_exists(self) -> bool:
        # A stack in REVIEW_IN_PROGRESS is a change set never executed: no resources, and sam deploy creates it anew.
        return self.stack_status not in (None, "REVIEW_IN_PROGRESS")


# ---------------------------------------------------------------- 1. target
def find_target(sts, cloudformation, region: str, stack_name: str) -> Target:
    """Who the credentials are, and whether the stack is there already."""
    account = sts.get_caller_identity()["Account"]
    try:
        status = cloudformation.describe_stacks(StackName=stack_name)["Stacks"][0]["StackStatus"]
    except ClientError as exc:
        if "does not exist" not in exc.response["Error"].get("Message", ""):
            raise
        status = None
    return Target(region, account, status)


def check_target(target: Target, options: Options) -> Check:
    """Echo where the deploy goes; FAIL on a stage AWS will refuse or a stack that cannot be updated."""
    state = f"exists, {target.stack_status}: an update" if target.stack_exists else "new"
    found = f"{target.region}, account {target.account}, stack {options.stack_name} ({state}), stage {options.stage}"
    if not valid_stage(options.stage):
        return Check(TARGET, FAIL, f"{found}: the stage must be {STAGE_RULE}", "--stage NAME, e.g. --stage dev")
    if target.stack_status == "ROLLBACK_COMPLETE":
        return Check(TARGET, FAIL, f"{found}: a stack whose first create failed cannot be updated",
                     f"sam delete --stack-name {options.stack_name} --region {target.region}")
    if target.stack_exists and target.stack_status.endswith("_IN_PROGRESS"):
        return Check(TARGET, FAIL, f"{found}: another operation is still running",
                     f"wait for it: aws cloudformation describe-stacks --stack-name {options.stack_name}")
    return Check(TARGET, OK, found)


def valid_stage(stage: str) -> bool:
    return len(stage) <= STAGE_MAX_LENGTH and re.fullmatch(STAGE_PATTERN, stage) is not None


def no_target(region: str | None, error: Exception | None = None) -> Check:
    """The target line when there is no region or no usable identity, so nothing in the account can be checked."""
    if not region:
        return Check(TARGET, FAIL, "no AWS region configured",
                     "--region REGION, or `aws configure set region REGION`, or export AWS_REGION=REGION")
    return Check(TARGET, FAIL, f"{region}: no valid AWS credentials ({error})", CREDENTIALS_FIX)


def check_parameters(options: Options, raw: dict | None = None) -> StackTemplate | Check:
    """The template (template.yaml unless given) resolved with the deploy's parameters, or why they are wrong."""
    try:
        template = StackTemplate(raw, parameters=options.template_parameters, stack_name=options.stack_name)
    except TemplateError as exc:
        return Check(PARAMETERS, FAIL, str(exc), "fix --parameter-overrides to name the template's parameters")
    for name, spec in template.raw.get("Parameters", {}).items():
        allowed = [str(v) for v in spec.get("AllowedValues", [])]
        if allowed and template.parameters[name] not in allowed:
            return Check(PARAMETERS, FAIL, f"{name}={template.parameters[name]} is not one of {allowed}",
                         f"--parameter-overrides {name}={allowed[0]} (or another of {allowed})")
    return template


# ---------------------------------------------------------------- 2. lambda concurrency
def reservations(template: StackTemplate) -> dict[str, int]:
    """Reserved concurrency per function name, as the template sets it with these parameters (0: none)."""
    wanted = {}
    for logical_id in template.of_type(FUNCTION):
        props = template.properties(logical_id)
        name = props.get("FunctionName") or template.physical_name(logical_id)
        wanted[name] = int(props.get("ReservedConcurrentExecutions", 0))
    return wanted


def held_reservations(lambda_client, function_names) -> int:
    """What the existing functions reserve now; the update hands it back before reserving again."""
    held = 0
    for name in function_names:
        try:
            held += lambda_client.get_function_concurrency(FunctionName=name).get("ReservedConcurrentExecutions", 0)
        except lambda_client.exceptions.ResourceNotFoundException:
            pass
    return held


def queue_concurrency(template: StackTemplate) -> int:
    """How many environments SQS event sources may run at once (their MaximumConcurrency)."""
    total = 0
    for logical_id in template.of_type(FUNCTION):
        for event in (template.properties(logical_id).get("Events") or {}).values():
            if event.get("Type") == "SQS":
                total += int(event.get("Properties", {}).get("ScalingConfig", {}).get("MaximumConcurrency", 0))
    return total


def check_lambda_concurrency(lambda_client, template: StackTemplate, stack_exists: bool) -> Check:
    """FAIL when the reservations would take the account below Lambda's unreserved minimum; warn on a small quota."""
    limit = lambda_client.get_account_settings()["AccountLimit"]
    total, unreserved = limit["ConcurrentExecutions"], limit["UnreservedConcurrentExecutions"]
    wanted = reservations(template)
    held = held_reservations(lambda_client, wanted) if stack_exists else 0
    reserve = sum(wanted.values())
    found = f"{total} total, {unreserved} unreserved; the template reserves {reserve}"
    if held:
        found += f" ({held} already reserved by the stack)"
    left, minimum = unreserved + held - reserve, min(UNRESERVED_MINIMUM, total)
    more = (f"aws service-quotas request-service-quota-increase --service-code lambda "
            f"--quota-code {LAMBDA_CONCURRENCY_QUOTA} --desired-value 1000 --region {lambda_client.meta.region_name}")
    if left < minimum:
        return Check(CONCURRENCY, FAIL, f"{found}, leaving {left} of the {minimum} Lambda keeps unreserved",
                     f"--parameter-overrides ReserveConcurrency=false, or {more}")
    if total < SMALL_ACCOUNT_LIMIT:
        queued = queue_concurrency(template)
        return Check(CONCURRENCY, WARN,
                     f"{found}; the upload queue may run {queued} classifiers at once (SQS MaximumConcurrency) "
                     f"and they compete with the API and the other functions for {total}", more)
    return Check(CONCURRENCY, OK, found)


# ---------------------------------------------------------------- 3. api gateway logging
def check_api_logging(apigateway, template: StackTemplate, target: Target, stack_name: str) -> Check:
    """The ApiGatewayLogsRole choice against the account's API Gateway CloudWatch role."""
    choice = template.parameters.get("ApiGatewayLogsRole")
    if choice is None:
        return Check(API_LOGGING, OK, "the template has no ApiGatewayLogsRole parameter: nothing to check")
    role = apigateway.get_account().get("cloudwatchRoleArn")
    found = f"ApiGatewayLogsRole={choice}; the account's role: {role or 'none'}"
    if choice == "existing" and not role:
        return Check(API_LOGGING, FAIL, found,
                     "--parameter-overrides ApiGatewayLogsRole=create, or set one: aws apigateway update-account "
                     "--patch-operations op=replace,path=/cloudwatchRoleArn,value=ARN")
    # CloudFormation names the role it creates <stack>-<logical id>-<suffix>: on an update it is the stack's own.
    own_role = target.stack_exists and role and role.rsplit("/", 1)[-1].startswith(f"{stack_name}-")
    if choice == "create" and role and not own_role:
        return Check(API_LOGGING, WARN, f"{found}: the stack would replace this account-wide setting with its own role",
                     "--parameter-overrides ApiGatewayLogsRole=existing")
    return Check(API_LOGGING, OK, f"{found}: no API access or execution logs" if choice == "none" else found)


# ---------------------------------------------------------------- 4. sagemaker training quota
def find_quota(quotas, service_code: str, quota_name: str) -> dict | None:
    """A quota by name: the applied value, else AWS's default for the account."""
    for operation in ("list_service_quotas", "list_aws_default_service_quotas"):
        for page in quotas.get_paginator(operation).paginate(ServiceCode=service_code):
            for quota in page["Quotas"]:
                if quota["QuotaName"] == quota_name:
                    return quota
    return None


def training_quota_name(template: StackTemplate) -> str:
    instance = template.parameters["TrainingInstanceType"]
    spot = template.parameters.get("UseSpotTraining") == "true"
    return f"{instance} for spot training job usage" if spot else f"{instance} for training job usage"


def check_training_quota(quotas, template: StackTemplate) -> Check:
    """FAIL when the account may not run a single training job on the chosen instance type."""
    name = training_quota_name(template)
    by_hand = (f"look it up in the Service Quotas console ({quotas.meta.region_name}): "
               f"AWS services > Amazon SageMaker > '{name}'")
    try:
        quota = find_quota(quotas, "sagemaker", name)
    except ClientError as exc:
        return Check(TRAINING_QUOTA, WARN, f"could not read the quota '{name}': {exc}", by_hand)
    if quota is None:
        return Check(TRAINING_QUOTA, WARN, f"no SageMaker quota named '{name}'", by_hand)
    found = f"'{name}' = {quota['Value']:g}"
    if quota["Value"] < 1:
        return Check(TRAINING_QUOTA, FAIL, f"{found}: no training job can start",
                     f"aws service-quotas request-service-quota-increase --service-code sagemaker "
                     f"--quota-code {quota['QuotaCode']} --desired-value 1 --region {quotas.meta.region_name}; "
                     f"or another TrainingInstanceType, or UseSpotTraining=false")
    return Check(TRAINING_QUOTA, OK, found)


# ---------------------------------------------------------------- 5. training image
def check_training_image(ecr, template: StackTemplate, target: Target) -> Check:
    """The image training jobs will pull: the pinned TrainingImageUri, or latest in the stack's repository."""
    uri = template.parameters.get("TrainingImageUri", "")
    if uri:
        return check_pinned_image(ecr, uri, target)
    return check_stack_repository(ecr, template.physical_name(TRAINING_REPOSITORY), template.parameters["Stage"])


def check_pinned_image(ecr, uri: str, target: Target) -> Check:
    """A TrainingImageUri must exist when it is in this account's ECR; elsewhere it cannot be checked from here."""
    match = ECR_URI.match(uri)
    if not match or (match["account"], match["region"]) != (target.account, target.region):
        return Check(TRAINING_IMAGE, WARN, f"{uri} is not in this account's ECR in {target.region}: cannot check it",
                     "make sure SageMaker can pull it (repository policy for other accounts), or push it here")
    image_id = {"imageDigest": match["digest"]} if match["digest"] else {"imageTag": match["tag"] or "latest"}
    try:
        image = ecr.describe_images(repositoryName=match["repository"], imageIds=[image_id])["imageDetails"][0]
    except (ecr.exceptions.RepositoryNotFoundException, ecr.exceptions.ImageNotFoundException) as exc:
        return Check(TRAINING_IMAGE, FAIL, f"{uri}: {exc.response['Error']['Message']}",
                     "push it, or fix --parameter-overrides TrainingImageUri=URI (empty: the stack's repository)")
    return Check(TRAINING_IMAGE, OK, f"{uri} {_pushed(image)}")


def check_stack_repository(ecr, repository: str, stage: str) -> Check:
    """Training without a pinned image pulls latest from the stack's repository, which someone must push."""
    push = f"scripts/push-training-image.sh {stage}"
    try:
        image = ecr.describe_images(repositoryName=repository, imageIds=[{"imageTag": "latest"}])["imageDetails"][0]
    except ecr.exceptions.RepositoryNotFoundException:
        return Check(TRAINING_IMAGE, WARN, f"first deploy: the stack creates the repository {repository}",
                     f"push the image with `{push}` before the first training run")
    except ecr.exceptions.ImageNotFoundException:
        return Check(TRAINING_IMAGE, WARN, f"{repository} has no latest image", f"`{push}` before training")
    return Check(TRAINING_IMAGE, OK, f"{repository}:latest {_pushed(image)}")


def _pushed(image: dict) -> str:
    return f"pushed {image['imagePushedAt'].astimezone(UTC):%Y-%m-%d %H:%M} UTC, {image['imageDigest']}"


# ---------------------------------------------------------------- 6. machine
def run_command(argv: list[str], timeout_s: float = 20) -> subprocess.CompletedProcess:
    """Run a program for its output; a missing program answers 127 and one that hangs 124, like a shell."""
    try:
        return subprocess.run(argv, capture_output=True, text=True, timeout=timeout_s, check=False)
    except OSError as exc:
        return subprocess.CompletedProcess(argv, 127, "", str(exc))
    except subprocess.TimeoutExpired:
        return subprocess.CompletedProcess(argv, 124, "", f"no answer within {timeout_s:g} s")


def check_docker(runner: Runner) -> Check:
    """The classifier is an image function and the default build runs in containers: both need a Docker daemon."""
    result = runner(["docker", "info", "--format", "{{.ServerVersion}}"])
    why = "the classifier image and the containerised build need it"
    if result.returncode == 127:
        return Check(DOCKER, FAIL, "no docker CLI on PATH", f"install Docker and start it; {why}")
    if result.returncode != 0 or not result.stdout.strip():
        last = (result.stderr.strip().splitlines() or ["no answer"])[-1]
        return Check(DOCKER, FAIL, f"the Docker daemon is not reachable: {last}",
                     f"start Docker (Docker Desktop, or `sudo systemctl start docker`); {why}")
    return Check(DOCKER, OK, f"daemon {result.stdout.strip()}")


def python_runtimes(template: StackTemplate) -> list[str]:
    """The Python runtimes `sam build` needs for the zip functions and layers."""
    globals_runtime = template.resolve(template.raw.get("Globals", {}).get("Function", {}).get("Runtime"))
    runtimes = {template.resources[lid].get("Metadata", {}).get("BuildMethod")
                for lid in template.of_type("AWS::Serverless::LayerVersion")}
    for logical_id in template.of_type(FUNCTION):
        props = template.properties(logical_id)
        if props.get("PackageType") != "Image":
            runtimes.add(props.get("Runtime", globals_runtime))
    return sorted(r for r in runtimes if isinstance(r, str) and r.startswith("python"))


def check_python(runner: Runner, runtime: str, build_in_container: bool) -> Check:
    """Building outside a container needs the functions' Python on PATH (sam build looks for e.g. python3.12)."""
    if build_in_container:
        return Check(runtime, OK, f"not needed: sam builds the {runtime} functions in a container")
    result = runner([runtime, "--version"])
    if result.returncode != 0:
        return Check(runtime, FAIL, f"no {runtime} on PATH; the template's zip functions use runtime {runtime}",
                     f"install Python {runtime.removeprefix('python')}, or build in a container "
                     "(drop --no-build-in-container)")
    return Check(runtime, OK, (result.stdout or result.stderr).strip())


def check_sam(runner: Runner, repo_root: Path) -> Check:
    """The sam CLI that `make deploy` uses: the project's own under .tools, else one on PATH."""
    for sam in (str(repo_root / ".tools" / "sam" / "bin" / "sam"), "sam"):
        result = runner([sam, "--version"])
        if result.returncode == 0:
            return Check(SAM, OK, f"{result.stdout.strip()} ({sam})")
    return Check(SAM, WARN, "no sam CLI in .tools/sam or on PATH", "make tools")


def machine_checks(runner: Runner, template: StackTemplate | None, options: Options, repo_root: Path) -> list[Check]:
    checks = [check_docker(runner)]
    if template is not None:
        checks += [check_python(runner, runtime, options.build_in_container) for runtime in python_runtimes(template)]
    return checks + [check_sam(runner, repo_root)]


# ---------------------------------------------------------------- all of it
def _guarded(name: str, check: Callable[..., Check], *args) -> Check:
    """One account check; a refused or failed call makes it inconclusive instead of ending the run."""
    try:
        return check(*args)
    except (BotoCoreError, ClientError) as exc:
        return Check(name, WARN, f"could not check: {exc}", "allow the call for this identity, or check by hand")


def account_checks(session, region: str | None, options: Options, template: StackTemplate | None) -> list[Check]:
    """The target line, then, with a usable identity and template, the account's limits and settings."""
    if not region:
        return [no_target(region)]
    client = partial(session.client, region_name=region)
    try:
        target = find_target(client("sts"), client("cloudformation"), region, options.stack_name)
    except (BotoCoreError, ClientError) as exc:
        return [no_target(region, exc)]
    if template is None:
        return [check_target(target, options)]
    return [
        check_target(target, options),
        _guarded(CONCURRENCY, check_lambda_concurrency, client("lambda"), template, target.stack_exists),
        _guarded(API_LOGGING, check_api_logging, client("apigateway"), template, target, options.stack_name),
        _guarded(TRAINING_QUOTA, check_training_quota, client("service-quotas"), template),
        _guarded(TRAINING_IMAGE, check_training_image, client("ecr"), template, target),
    ]


def run_checks(session, options: Options, runner: Runner = run_command, repo_root: Path = REPO_ROOT,
               raw_template: dict | None = None) -> list[Check]:
    """Every check, in order: the target, the parameters if they are wrong, the account, then this machine."""
    resolved = check_parameters(options, raw_template)
    template = resolved if isinstance(resolved, StackTemplate) else None
    target, *account = account_checks(session, options.region or session.region_name, options, template)
    checks = [target, *([] if template else [resolved]), *account]
    if not options.skip_machine:
        checks += machine_checks(runner, template, options, repo_root)
    return checks


def format_check(check: Check) -> str:
    line = f"{check.status:<6}{check.name:<21}{check.detail}"
    return f"{line}; fix: {check.fix}" if check.fix and check.status != OK else line


def report(checks: list[Check], options: Options, as_json: bool) -> str:
    if as_json:
        return json.dumps({"stage": options.stage, "stack_name": options.stack_name,
                           "failed": any(c.status == FAIL for c in checks),
                           "checks": [asdict(c) for c in checks]}, indent=2)
    return "\n".join(format_check(c) for c in checks)


# ---------------------------------------------------------------- command line
def _overrides(text: str) -> list[tuple[str, str]]:
    """KEY=VALUE pairs as sam deploy reads them: several per argument, values quoted or not."""
    pairs = []
    for token in shlex.split(text):
        key, sep, value = token.partition("=")
        if not sep or not key:
            raise argparse.ArgumentTypeError(f"expected KEY=VALUE, got {token!r}")
        pairs.append((key, value))
    return pairs


def options_from(args: argparse.Namespace) -> Options:
    parameters = dict(pair for group in args.parameter_overrides for pair in group)
    stage = args.stage or parameters.get("Stage", "dev")
    if parameters.get("Stage", stage) != stage:
        raise ValueError(f"--stage {stage} and Stage={parameters['Stage']} disagree; give the stage once")
    return Options(stage=stage, stack_name=args.stack_name or "", region=args.region, parameters=parameters,
                   build_in_container=args.build_in_container, skip_machine=args.skip_machine)


def run(args: argparse.Namespace) -> int:
    import boto3

    try:
        options = options_from(args)
    except ValueError as exc:
        print(f"preflight: {exc}", file=sys.stderr)
        return 2
    try:
        checks = run_checks(boto3.session.Session(), options)
    except BotoCoreError as exc:  # e.g. AWS_PROFILE names a profile that is not configured
        checks = [Check(TARGET, FAIL, str(exc), CREDENTIALS_FIX)]
    print(report(checks, options, args.json))
    return 1 if any(c.status == FAIL for c in checks) else 0


def add_parser(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser("preflight", help="check the AWS account and this machine before sam deploy",
                            description=__doc__)
    parser.add_argument("--stage", help="deployment stage (default: dev)")
    parser.add_argument("--stack-name", help="default: imgclf-<stage>")
    parser.add_argument("--region", help="default: the region of the AWS configuration")
    parser.add_argument("--parameter-overrides", nargs="+", type=_overrides, default=[], metavar="KEY=VALUE",
                        help="template parameters, as for sam deploy")
    parser.add_argument("--build-in-container", action=argparse.BooleanOptionalAction, default=True,
                        help="sam build --use-container (default) or with this machine's Python")
    parser.add_argument("--skip-machine", action="store_true", help="check the account only (no docker, python, sam)")
    parser.add_argument("--json", action="store_true", default=argparse.SUPPRESS,
                        help="print the results as one JSON object")
    parser.set_defaults(func=run)
