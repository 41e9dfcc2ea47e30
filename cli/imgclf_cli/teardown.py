"""`imgclf teardown`: delete the stack, then empty and delete the buckets and tables it retains."""

from __future__ import annotations

import argparse
import json
import re
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

import boto3
import yaml
from botocore.exceptions import ClientError, NoRegionError, WaiterError

from imgclf_local.template import StackTemplate, TemplateError, load_template

RETAINING = {"Retain", "RetainExceptOnCreate"}
# One setting per account and region that other APIs may log through, so teardown leaves it alone.
ACCOUNT_SETTING = {"ApiGatewayCloudWatchRole", "ApiGatewayAccount"}
NAME_PROPERTY = {"AWS::S3::Bucket": "BucketName", "AWS::DynamoDB::Table": "TableName"}
GONE = {"NoSuchBucket", "ResourceNotFoundException", "NoSuchEntity", "RepositoryNotFoundException",
        "TableNotFoundException"}
DENIED = {"AccessDenied", "AccessDeniedException", "UnauthorizedOperation", "AuthorizationError",
          "UnauthorizedAccess", "AllAccessDisabled"}
# Every status but DELETE_COMPLETE: list_stacks would otherwise return years of deleted stacks.
LIVE_STACKS = [
    "CREATE_IN_PROGRESS", "CREATE_FAILED", "CREATE_COMPLETE", "ROLLBACK_IN_PROGRESS", "ROLLBACK_FAILED",
    "ROLLBACK_COMPLETE", "DELETE_IN_PROGRESS", "DELETE_FAILED", "UPDATE_IN_PROGRESS",
    "UPDATE_COMPLETE_CLEANUP_IN_PROGRESS", "UPDATE_COMPLETE", "UPDATE_FAILED", "UPDATE_ROLLBACK_IN_PROGRESS",
    "UPDATE_ROLLBACK_FAILED", "UPDATE_ROLLBACK_COMPLETE_CLEANUP_IN_PROGRESS", "UPDATE_ROLLBACK_COMPLETE",
    "REVIEW_IN_PROGRESS", "IMPORT_IN_PROGRESS", "IMPORT_COMPLETE", "IMPORT_ROLLBACK_IN_PROGRESS",
    "IMPORT_ROLLBACK_FAILED", "IMPORT_ROLLBACK_COMPLETE",
]
# What reading or resolving template.yaml raises when the file is missing, malformed or beyond the resolver.
TEMPLATE_ERRORS = (TemplateError, OSError, ValueError, KeyError, yaml.YAMLError)


class TeardownError(Exception):
    """A step failed in a way the user has to act on; the message says what happened and what is needed."""


@dataclass(frozen=True)
class Pace:
    """How often to poll CloudFormation and DynamoDB, and how long to wait before trying a bucket again."""

    poll_s: float = 10
    max_wait_s: float = 3600
    retry_s: tuple[float, ...] = (5, 15, 30, 60, 120)


@dataclass(frozen=True)
class Retained:
    logical_id: str
    kind: str
    physical_id: str

    def __str__(self) -> str:
        return f"{self.physical_id} ({self.logical_id})"


@dataclass
class Survey:
    """What step 1 found: the stack, its companion stacks, and the resources its deletion leaves behind."""

    stack_name: str
    stack_id: str | None
    retained: list[Retained]
    companions: list[dict]
    source: str
    log_targets: frozenset[str] = frozenset()  # logical ids of buckets that receive other buckets' access logs

    @property
    def buckets(self) -> list[Retained]:
        return [r for r in self.retained if r.kind == "AWS::S3::Bucket"]

    @property
    def tables(self) -> list[Retained]:
        return [r for r in self.retained if r.kind == "AWS::DynamoDB::Table"]

    @property
    def others(self) -> list[Retained]:
        return [r for r in self.retained if r.kind not in NAME_PROPERTY]


@dataclass
class Outcome:
    deleted: list[str] = field(default_factory=list)
    kept: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)


class _Call:
    code = ""

    @property
    def gone(self) -> bool:
        return self.code in GONE


def _code(exc: ClientError) -> str:
    return exc.response.get("Error", {}).get("Code", "")


def _explain(exc: ClientError, permission: str, target: str) -> str:
    """A ClientError as a sentence that names the missing permission where access was denied."""
    code, message = _code(exc), exc.response.get("Error", {}).get("Message", "")
    if code in DENIED:
        return f"access denied to {target}: the caller needs {permission} ({message})"
    return f"{permission} on {target} failed: {code}: {message}"


@contextmanager
def aws_call(permission: str, target: str, tolerate: frozenset[str] = frozenset()) -> Iterator[_Call]:
    """Turn a ClientError into TeardownError, except "already gone" and tolerated codes, kept in `.code`."""
    call = _Call()
    try:
        yield call
    except ClientError as exc:
        if _code(exc) not in GONE | tolerate:
            raise TeardownError(_explain(exc, permission, target)) from exc
        call.code = _code(exc)


def _say(text: str) -> None:
    print(text, flush=True)


class Teardown:
    """The steps of `imgclf teardown`, sharing one session's clients and a record of what each did."""

    def __init__(self, session: boto3.session.Session, pace: Pace | None = None):
        if not session.region_name:
            raise NoRegionError()
        self.region = session.region_name
        self.cfn = session.client("cloudformation")
        self.s3 = session.client("s3")
        self.s3_resource = session.resource("s3")
        self.dynamodb = session.client("dynamodb")
        self.ecr = session.client("ecr")
        self.sts = session.client("sts")
        self.pace = pace or Pace()
        self.outcome = Outcome()

    # ------------------------------------------------------------------ step 1
    def survey(self, stack_name: str, stage: str, template: dict | None = None) -> Survey:
        """Find the stack, its companion stacks, and the physical ids of what its deletion retains."""
        stack = self._describe_stack(stack_name)
        companions = self._companion_stacks(stack_name)
        if stack is None:
            template = _readable(template, f"no stack {stack_name}, and template.yaml cannot give the names")
            retained = self._template_retained(stack_name, stage, template)
            source = "as template.yaml names them (there is no such stack)"
        else:
            template, source = self._deployed_template(stack["StackId"], template)
            retained = self._stack_retained(stack["StackId"], _policies(template))
        survey = Survey(stack_name, stack and stack["StackId"], retained, companions, source,
                        _log_targets(template))
        found = f"stack {stack_name} ({stack['StackStatus']})" if stack else f"no stack {stack_name}"
        extra = f" and {len(companions)} companion stack(s)" if companions else ""
        _say(f"[1/4] {found}{extra}; retains {len(survey.buckets)} bucket(s), {len(survey.tables)} table(s) "
             f"and {len(survey.others)} other resource(s), named {source}")
        for resource in retained:
            _say(f"      {resource.kind:<24} {resource}")
        return survey

    def _describe_stack(self, stack_name: str) -> dict | None:
        try:
            return self.cfn.describe_stacks(StackName=stack_name)["Stacks"][0]
        except ClientError as exc:
            if _code(exc) == "ValidationError" and "does not exist" in str(exc):
                return None
            raise TeardownError(_explain(exc, "cloudformation:DescribeStacks", f"stack {stack_name}")) from exc

    def _companion_stacks(self, stack_name: str) -> list[dict]:
        # `sam deploy --resolve-image-repos` names it <stack[:104]>-<md5(stack)[:8]>-CompanionStack.
        pattern = re.compile(re.escape(stack_name[:104]) + r"-[0-9a-f]{8}-CompanionStack")
        found = []
        with aws_call("cloudformation:ListStacks", "the account's stacks"):
            for page in self.cfn.get_paginator("list_stacks").paginate(StackStatusFilter=LIVE_STACKS):
                found += [s for s in page["StackSummaries"] if pattern.fullmatch(s["StackName"])]
        return found

    def _stack_retained(self, stack_id: str, policies: dict[str, str]) -> list[Retained]:
        retained = []
        with aws_call("cloudformation:ListStackResources", f"stack {stack_id}"):
            for page in self.cfn.get_paginator("list_stack_resources").paginate(StackName=stack_id):
                for resource in page["StackResourceSummaries"]:
                    if (policies.get(resource["LogicalResourceId"]) in RETAINING
                            and resource.get("PhysicalResourceId")
                            and resource.get("ResourceStatus") != "DELETE_COMPLETE"):
                        retained.append(Retained(resource["LogicalResourceId"], resource["ResourceType"],
                                                 resource["PhysicalResourceId"]))
        return retained

    def _deployed_template(self, stack_id: str, template: dict | None) -> tuple[dict, str]:
        """The stack's own template, where the caller may read it, else template.yaml; and which it was."""
        try:
            body = self.cfn.get_template(StackName=stack_id, TemplateStage="Processed")["TemplateBody"]
            return _parse_template(body), "by the stack"
        except ClientError as exc:
            _say(f"      cannot read the deployed template ({_explain(exc, 'cloudformation:GetTemplate', 'it')}); "
                 "using the deletion policies of template.yaml")
        local = _readable(template, "cannot tell which resources the stack retains")
        return local, "by the stack (deletion policies from template.yaml)"

    def _template_retained(self, stack_name: str, stage: str, template: dict) -> list[Retained]:
        with aws_call("sts:GetCallerIdentity", "the caller's account"):
            account = self.sts.get_caller_identity()["Account"]
        try:
            resolved = _AccountTemplate(template, account=account, region=self.region,
                                        parameters={"Stage": stage}, stack_name=stack_name)
            retained = []
            for logical_id, resource in resolved.of_type(*NAME_PROPERTY).items():
                if resource.get("DeletionPolicy") not in RETAINING:
                    continue
                if NAME_PROPERTY[resource["Type"]] not in resource.get("Properties", {}):
                    self.outcome.kept.append(f"{logical_id}: CloudFormation generated its name, which only the "
                                             "stack knew; find it in the console")
                    continue
                retained.append(Retained(logical_id, resource["Type"], resolved.physical_name(logical_id)))
        except TEMPLATE_ERRORS as exc:
            raise TeardownError(f"no stack {stack_name}, and template.yaml cannot give the names: {exc}") from exc
        self.outcome.kept.append("the API Gateway CloudWatch role, if the stack created one: it is an account "
                                 "setting other APIs may use (`aws apigateway get-account` shows it)")
        return retained

    # ------------------------------------------------------------------ step 2
    def delete_stacks(self, survey: Survey) -> None:
        """Delete the stack, then its companion stacks (after emptying their ECR repositories)."""
        names = []
        if survey.stack_id:
            self._delete_stack(survey.stack_name, survey.stack_id)
            names.append(survey.stack_name)
        for companion in survey.companions:
            self._empty_repositories(companion["StackId"])
            self._delete_stack(companion["StackName"], companion["StackId"])
            names.append(companion["StackName"])
        self.outcome.deleted += [f"stack {name}" for name in names]
        _say(f"[2/4] deleted {', '.join(names)}" if names else "[2/4] no stack to delete")

    def _delete_stack(self, name: str, stack_id: str) -> None:
        with aws_call("cloudformation:DeleteStack", f"stack {name}"):
            self.cfn.delete_stack(StackName=stack_id)
        attempts = max(1, int(self.pace.max_wait_s / max(self.pace.poll_s, 1)))
        try:
            # By id, so a deleted stack reads DELETE_COMPLETE instead of "does not exist".
            self.cfn.get_waiter("stack_delete_complete").wait(
                StackName=stack_id, WaiterConfig={"Delay": self.pace.poll_s, "MaxAttempts": attempts})
        except WaiterError as exc:
            stacks = exc.last_response.get("Stacks") or [{}]
            status = stacks[0].get("StackStatus", "")
            if status == "DELETE_FAILED":
                reasons = "\n".join(f"      {line}" for line in self._failure_reasons(name, stack_id))
                raise TeardownError(f"stack {name} is DELETE_FAILED:\n{reasons}") from exc
            if "Error" in exc.last_response:
                error = ClientError(exc.last_response, "DescribeStacks")
                raise TeardownError(_explain(error, "cloudformation:DescribeStacks", f"stack {name}")) from exc
            raise TeardownError(f"stack {name} is still {status or 'being deleted'} after {self.pace.max_wait_s:.0f}s;"
                                " run teardown again once it is gone") from exc

    def _failure_reasons(self, name: str, stack_id: str) -> list[str]:
        """The reasons of the resources that failed to delete, from the events of this deletion."""
        reasons = []
        with aws_call("cloudformation:DescribeStackEvents", f"stack {name}"):
            for page in self.cfn.get_paginator("describe_stack_events").paginate(StackName=stack_id):
                for event in page["StackEvents"]:  # newest first
                    if event["LogicalResourceId"] == name and event["ResourceStatus"] == "DELETE_IN_PROGRESS":
                        return reasons or ["(no resource gave a reason)"]
                    if event["ResourceStatus"] == "DELETE_FAILED" and event["LogicalResourceId"] != name:
                        reasons.append(f"{event['LogicalResourceId']} ({event['ResourceType']}): "
                                       f"{event.get('ResourceStatusReason', 'no reason given')}")
        return reasons or ["(no resource gave a reason)"]

    def _empty_repositories(self, stack_id: str) -> None:
        # SAM's companion repositories lack EmptyOnDelete, so CloudFormation cannot delete them with images inside.
        with aws_call("cloudformation:ListStackResources", f"stack {stack_id}"):
            resources = [r for page in self.cfn.get_paginator("list_stack_resources").paginate(StackName=stack_id)
                         for r in page["StackResourceSummaries"]]
        for resource in resources:
            if resource["ResourceType"] != "AWS::ECR::Repository" or not resource.get("PhysicalResourceId"):
                continue
            repository = resource["PhysicalResourceId"]
            with aws_call("ecr:ListImages and ecr:BatchDeleteImage", f"repository {repository}"):
                for page in self.ecr.get_paginator("list_images").paginate(repositoryName=repository):
                    for start in range(0, len(page["imageIds"]), 100):
                        response = self.ecr.batch_delete_image(repositoryName=repository,
                                                               imageIds=page["imageIds"][start:start + 100])
                        if response.get("failures"):
                            failure = response["failures"][0]
                            raise TeardownError(f"could not delete images of repository {repository}: "
                                                f"{failure.get('failureCode')}: {failure.get('failureReason')}")

    # ------------------------------------------------------------------ step 3
    def delete_data(self, survey: Survey) -> None:
        """Empty and delete the retained buckets, delete the retained tables, report what stays."""
        _say(f"[3/4] deleting {len(survey.buckets)} bucket(s) and {len(survey.tables)} table(s)")
        for bucket in self._log_targets_last(survey.buckets, survey.log_targets):
            self._attempt(self._delete_bucket, bucket)
        for table in survey.tables:
            self._attempt(self._delete_table, table)
        self._keep_others(survey.others)

    def keep_data(self, survey: Survey) -> None:
        """Record, without touching them, what --keep-data leaves in place."""
        _say(f"[3/4] --keep-data: keeping {len(survey.buckets)} bucket(s) and {len(survey.tables)} table(s)")
        for resource in survey.buckets + survey.tables:
            self.outcome.kept.append(f"{resource.kind} {resource}: --keep-data")
        self._keep_others(survey.others)

    def _attempt(self, delete, resource: Retained) -> None:
        try:
            delete(resource)
        except TeardownError as exc:
            self.outcome.failed.append(str(exc))
            _say(f"      FAILED {exc}")

    def _log_targets_last(self, buckets: list[Retained], logical_targets: frozenset[str]) -> list[Retained]:
        """Buckets ordered so that one receiving another's access logs is deleted after it."""
        targets = {b.physical_id for b in buckets if b.logical_id in logical_targets}
        for bucket in buckets:
            try:
                logging = self.s3.get_bucket_logging(Bucket=bucket.physical_id).get("LoggingEnabled")
                if logging:
                    targets.add(logging["TargetBucket"])
                    # Our own deletes would otherwise be logged, and those logs land after we emptied the target.
                    self.s3.put_bucket_logging(Bucket=bucket.physical_id, BucketLoggingStatus={})
            except ClientError:
                pass  # the order is an optimisation; _delete_bucket retries a bucket that is still filling
        return sorted(buckets, key=lambda b: b.physical_id in targets)

    def _delete_bucket(self, bucket: Retained) -> None:
        name = bucket.physical_id
        removed = 0
        for attempt, wait_s in enumerate((0, *self.pace.retry_s)):
            if attempt:
                _say(f"      s3://{name} received more objects (late access logs); trying again in {wait_s:.0f}s")
                time.sleep(wait_s)
            with aws_call("s3:ListBucketVersions and s3:DeleteObjectVersion", f"bucket {name}") as emptying:
                removed += self._empty_bucket(name)
            if emptying.gone:
                self._gone(f"bucket {name}")
                return
            with aws_call("s3:DeleteBucket", f"bucket {name}", frozenset({"BucketNotEmpty"})) as deleting:
                self.s3.delete_bucket(Bucket=name)
            if deleting.gone:
                self._gone(f"bucket {name}")
                return
            if deleting.code == "BucketNotEmpty":
                continue
            self.outcome.deleted.append(f"bucket {name} ({removed} object versions and delete markers)")
            _say(f"      deleted bucket {name} ({removed} object versions and delete markers)")
            return
        raise TeardownError(f"bucket {name} kept receiving objects; run teardown again later to delete it")

    def _empty_bucket(self, name: str) -> int:
        """Delete every object version, delete marker and unfinished upload; return how many versions went."""
        bucket = self.s3_resource.Bucket(name)
        removed = 0
        for response in bucket.object_versions.delete():  # batches of up to 1000 keys
            removed += len(response.get("Deleted", []))
            errors = response.get("Errors", [])
            if errors:
                first = errors[0]
                needs = " (needs s3:DeleteObjectVersion)" if first.get("Code") in DENIED else ""
                raise TeardownError(f"could not delete {len(errors)} object version(s) of s3://{name}, e.g. "
                                    f"{first.get('Key')}: {first.get('Code')}: {first.get('Message')}{needs}")
        for upload in bucket.multipart_uploads.all():
            upload.abort()  # their parts are stored and billed, and invisible to object listings
        return removed

    def _delete_table(self, table: Retained) -> None:
        name = table.physical_id
        with aws_call("dynamodb:DeleteTable", f"table {name}") as call:
            self.dynamodb.delete_table(TableName=name)
        if call.gone:
            self._gone(f"table {name}")
            return
        attempts = max(1, int(self.pace.max_wait_s / max(self.pace.poll_s, 1)))
        try:
            self.dynamodb.get_waiter("table_not_exists").wait(
                TableName=name, WaiterConfig={"Delay": self.pace.poll_s, "MaxAttempts": attempts})
        except WaiterError as exc:
            if "Error" in exc.last_response:
                error = ClientError(exc.last_response, "DescribeTable")
                raise TeardownError(_explain(error, "dynamodb:DescribeTable", f"table {name}")) from exc
            raise TeardownError(f"table {name} still exists after {self.pace.max_wait_s:.0f}s") from exc
        self.outcome.deleted.append(f"table {name}")
        _say(f"      deleted table {name}")

    def _gone(self, what: str) -> None:
        self.outcome.deleted.append(f"{what} (already gone)")
        _say(f"      {what} was already gone")

    def _keep_others(self, others: list[Retained]) -> None:
        for resource in others:
            if resource.logical_id not in ACCOUNT_SETTING:
                self.outcome.kept.append(f"{resource.kind} {resource}: retained, and teardown does not delete "
                                         "this type")
                continue
            why = (f"{resource.kind} {resource}: the account's API Gateway CloudWatch logging setting, which other "
                   "APIs in this account and region may use")
            if resource.kind == "AWS::IAM::Role":
                role = resource.physical_id
                why += (
                    "; to remove it anyway, once no API logs through it:\n"
                    f"        aws apigateway update-account --region {self.region} "
                    "--patch-operations op=replace,path=/cloudwatchRoleArn,value=\n"
                    f"        aws iam list-attached-role-policies --role-name {role} --query "
                    "'AttachedPolicies[].PolicyArn' --output text | xargs -n1 aws iam detach-role-policy "
                    f"--role-name {role} --policy-arn\n"
                    f"        aws iam delete-role --role-name {role}")
            self.outcome.kept.append(why)

    # ------------------------------------------------------------------ step 4
    def summary(self) -> int:
        """Print what was deleted, kept and failed; the exit status."""
        outcome = self.outcome
        _say(f"[4/4] summary: {len(outcome.deleted)} deleted, {len(outcome.kept)} kept, "
             f"{len(outcome.failed)} failed")
        for title, lines in (("deleted", outcome.deleted), ("kept", outcome.kept), ("failed", outcome.failed)):
            for line in lines:
                _say(f"      {title}: {line}")
        return 1 if outcome.failed else 0


class _AccountTemplate(StackTemplate):
    """template.yaml resolved for a real account and region: the names a stack that is gone had given."""

    def __init__(self, template: dict, *, account: str, region: str, **kwargs):
        self.account, self.region = account, region
        super().__init__(template, **kwargs)

    def pseudo(self, name: str) -> str:
        return {"AWS::AccountId": self.account, "AWS::Region": self.region}.get(name) or super().pseudo(name)


def _parse_template(body: dict | str) -> dict:
    """A get_template body: boto3 decodes JSON ones; YAML ones arrive as text with short-form intrinsics."""
    if isinstance(body, dict):
        return body
    try:
        return json.loads(body)
    except ValueError:
        from cfnlint.decode import cfn_yaml

        return cfn_yaml.loads(body)


def _readable(template: dict | None, why: str) -> dict:
    """The given template, else template.yaml; TeardownError saying `why` it is needed if it cannot be read."""
    if template is not None:
        return template
    try:
        return load_template()
    except TEMPLATE_ERRORS as exc:
        raise TeardownError(f"{why}: {exc}") from exc


def _log_targets(template: dict) -> frozenset[str]:
    """Logical ids of the buckets that other buckets of the template write their access logs to."""
    targets = set()
    for resource in template.get("Resources", {}).values():
        destination = (resource.get("Properties") or {}).get("LoggingConfiguration", {}).get("DestinationBucketName")
        if isinstance(destination, dict) and "Ref" in destination:
            targets.add(str(destination["Ref"]))
    return frozenset(targets)


def _policies(template: dict) -> dict[str, str]:
    return {logical_id: str(resource["DeletionPolicy"])
            for logical_id, resource in template.get("Resources", {}).items()
            if isinstance(resource.get("DeletionPolicy"), str)}


def confirmed(survey: Survey, keep_data: bool) -> bool:
    """Ask the user to type the stack name; anything else is a no."""
    data = "but keeps the buckets and tables" if keep_data else (
        f"and EMPTIES AND DELETES the {len(survey.buckets)} bucket(s) and {len(survey.tables)} table(s) above")
    answer = input(f"This deletes stack {survey.stack_name} {data}. Type the stack name to go on: ")
    return answer.strip() == survey.stack_name


def run(args: argparse.Namespace, pace: Pace | None = None, template: dict | None = None) -> int:
    if not args.yes and not sys.stdin.isatty():
        print("refusing to tear down without --yes when no one can answer the prompt (stdin is not a terminal)",
              file=sys.stderr)
        return 2
    stack_name = args.stack_name or f"imgclf-{args.stage}"
    try:
        teardown = Teardown(boto3.session.Session(region_name=args.region), pace)
        survey = teardown.survey(stack_name, args.stage, template)
        if not args.yes and not confirmed(survey, args.keep_data):
            print("not confirmed; nothing was deleted", file=sys.stderr)
            return 2
        teardown.delete_stacks(survey)
        if args.keep_data:
            teardown.keep_data(survey)
        else:
            teardown.delete_data(survey)
    except NoRegionError:
        print("no region: pass --region or configure a default one", file=sys.stderr)
        return 1
    except TeardownError as exc:
        print(f"teardown stopped: {exc}", file=sys.stderr)
        return 1
    return teardown.summary()


def add_parser(sub) -> None:
    parser = sub.add_parser(
        "teardown", help="delete the stack and empty and delete the buckets and tables it retains",
        description="Delete the stack and its companion stack, then empty (every version) and delete the "
                    "buckets and tables it retains. The API Gateway CloudWatch role is kept: it is an account "
                    "setting.")
    parser.add_argument("--stage", default="dev", help="deployment stage (default: dev)")
    parser.add_argument("--stack-name", help="stack to delete (default: imgclf-<stage>)")
    parser.add_argument("--region", help="AWS region (default: the session's)")
    parser.add_argument("--keep-data", action="store_true",
                        help="delete the stacks only; keep the retained buckets and tables, and say which")
    parser.add_argument("--yes", action="store_true",
                        help="do not ask for the stack name first (required when stdin is not a terminal)")
    parser.set_defaults(func=run)
