"""Read template.yaml and resolve what the embedded stack needs from it, so the two cannot drift apart."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

from cfnlint.decode import cfn_yaml

REPO_ROOT = Path(__file__).resolve().parents[2]
TEMPLATE_PATH = REPO_ROOT / "template.yaml"

ACCOUNT_ID = "123456789012"
REGION = "us-east-1"
NO_VALUE = object()


class TemplateError(ValueError):
    """The template uses something the embedded stack cannot resolve."""


def load_template(path: Path = TEMPLATE_PATH) -> dict:
    """Parse a CloudFormation YAML template with its short-form intrinsics as plain dicts."""
    return _plain(cfn_yaml.load(str(path)))


def _plain(node: Any) -> Any:
    # cfn-lint's nodes subclass dict/list/str and carry line marks; plain types compare and copy simply.
    if isinstance(node, dict):
        return {str(k): _plain(v) for k, v in node.items()}
    if isinstance(node, list):
        return [_plain(v) for v in node]
    if isinstance(node, str):
        return str(node)
    return node


@dataclass(frozen=True)
class Queue:
    logical_id: str
    name: str
    attributes: dict[str, str]
    dlq_logical_id: str | None = None
    max_receive_count: int | None = None

    @property
    def arn(self) -> str:
        return f"arn:aws:sqs:{REGION}:{ACCOUNT_ID}:{self.name}"


@dataclass(frozen=True)
class Table:
    logical_id: str
    name: str
    key_schema: list[dict]
    attribute_definitions: list[dict]
    global_secondary_indexes: list[dict]
    billing_mode: str


@dataclass(frozen=True)
class QueueNotification:
    queue_arn: str
    events: list[str]
    prefix: str = ""
    suffix: str = ""


@dataclass(frozen=True)
class Bucket:
    logical_id: str
    name: str
    versioned: bool
    queue_notifications: list[QueueNotification]


@dataclass(frozen=True)
class SqsTrigger:
    queue_logical_id: str
    batch_size: int
    batching_window_s: int
    report_batch_item_failures: bool


@dataclass(frozen=True)
class ApiRoute:
    path: str
    method: str
    event_name: str
    public: bool
    # NONE, AWS_IAM, or the name of one of the API's Cognito authorizers (StackTemplate.cognito_authorizers).
    authorizer: str = "NONE"


@dataclass(frozen=True)
class CognitoAuthorizer:
    """A Cognito user-pool authorizer of the API: which pool's id tokens it takes, from which header."""

    name: str
    pool_logical_id: str
    header: str = "Authorization"


@dataclass(frozen=True)
class EventRule:
    """An EventBridge rule of a function: the events whose pattern matches are delivered to it."""

    name: str
    pattern: dict
    input_path: str | None = None  # what of the event the target gets ($.detail...), the whole event when None

    def matches(self, event: dict) -> bool:
        return _pattern_matches(self.pattern, event)

    def target_input(self, event: dict) -> Any:
        """The part of a matched event its target receives (the rule's InputPath)."""
        value: Any = event
        for part in (self.input_path or "$").split(".")[1:]:
            value = value[part]
        return value


def _pattern_matches(pattern: dict, event: dict) -> bool:
    """EventBridge content filtering for what the template uses: exact values, prefixes, nested fields."""
    for field_name, expected in pattern.items():
        value = event.get(field_name) if isinstance(event, dict) else None
        if isinstance(expected, dict):
            if not isinstance(value, dict) or not _pattern_matches(expected, value):
                return False
            continue
        if not any(
            (isinstance(option, dict) and "prefix" in option and isinstance(value, str)
             and value.startswith(option["prefix"]))
            or option == value
            for option in expected
        ):
            return False
    return True


@dataclass(frozen=True)
class Function:
    logical_id: str
    name: str
    handler: str
    code_dir: Path
    environment: dict[str, str]
    timeout_s: int
    sqs_triggers: list[SqsTrigger] = field(default_factory=list)
    api_routes: list[ApiRoute] = field(default_factory=list)
    event_rules: list[EventRule] = field(default_factory=list)


class StackTemplate:
    """The resolved template: physical names, environment and event sources as the stack would create them."""

    def __init__(self, template: dict | None = None, *, parameters: dict[str, str] | None = None,
                 stack_name: str = "imgclf-local"):
        self.raw = template if template is not None else load_template()
        self.stack_name = stack_name
        self.parameters = self._parameter_values(parameters or {})
        self.resources: dict[str, dict] = self.raw.get("Resources", {})
        self.conditions = {name: self._condition(name) for name in self.raw.get("Conditions", {})}
        # Ids that only exist once the resource does (a Cognito pool's, its client's): set by the stack as it
        # creates them, and what Ref and GetAtt answer from then on.
        self.physical_ids: dict[str, str] = {}

    # ------------------------------------------------------------------ intrinsics
    def _parameter_values(self, overrides: dict[str, str]) -> dict[str, Any]:
        values = {}
        for name, spec in self.raw.get("Parameters", {}).items():
            if name in overrides:
                values[name] = str(overrides[name])
            elif "Default" in spec:
                values[name] = str(spec["Default"])
            else:
                raise TemplateError(f"parameter {name} has no default; pass a value")
        unknown = set(overrides) - set(values)
        if unknown:
            raise TemplateError(f"unknown parameters: {sorted(unknown)}")
        return values

    def _condition(self, name: str) -> bool:
        return bool(self.resolve(self.raw["Conditions"][name]))

    def pseudo(self, name: str) -> str:
        return {
            "AWS::AccountId": ACCOUNT_ID,
            "AWS::Region": REGION,
            "AWS::Partition": "aws",
            "AWS::URLSuffix": "amazonaws.com",
            "AWS::StackName": self.stack_name,
            "AWS::StackId": f"arn:aws:cloudformation:{REGION}:{ACCOUNT_ID}:stack/{self.stack_name}/local",
        }[name]

    def resolve(self, node: Any) -> Any:
        """Evaluate the intrinsic functions of a template fragment."""
        if isinstance(node, list):
            return [v for v in (self.resolve(i) for i in node) if v is not NO_VALUE]
        if not isinstance(node, dict):
            return node
        if len(node) == 1:
            (fn, arg), = node.items()
            handler = _INTRINSICS.get(fn)
            if handler:
                return handler(self, arg)
            if fn == "Condition":
                return self.conditions[arg] if hasattr(self, "conditions") else self._condition(arg)
        return {k: v for k, v in ((k, self.resolve(v)) for k, v in node.items()) if v is not NO_VALUE}

    def ref(self, name: str) -> Any:
        if name == "AWS::NoValue":
            return NO_VALUE
        if name.startswith("AWS::"):
            return self.pseudo(name)
        if name in self.parameters:
            return self.parameters[name]
        return self.physical_ref(name)

    def physical_ref(self, logical_id: str) -> str:
        """What Ref returns for a resource: a name, or a URL or ARN where CloudFormation says so."""
        resource = self._resource(logical_id)
        kind = resource["Type"]
        if logical_id in self.physical_ids:
            return self.physical_ids[logical_id]
        if kind == "AWS::SQS::Queue":
            return f"http://sqs.{REGION}.localhost/{ACCOUNT_ID}/{self.physical_name(logical_id)}"
        if kind in {"AWS::Serverless::StateMachine", "AWS::StepFunctions::StateMachine"}:
            return f"arn:aws:states:{REGION}:{ACCOUNT_ID}:stateMachine:{self.physical_name(logical_id)}"
        if kind in {"AWS::SNS::Topic"}:
            return f"arn:aws:sns:{REGION}:{ACCOUNT_ID}:{self.physical_name(logical_id)}"
        return self.physical_name(logical_id)

    def physical_name(self, logical_id: str) -> str:
        """The resource's explicit name property, or the name CloudFormation would generate."""
        resource = self._resource(logical_id)
        props = resource.get("Properties", {})
        for key in _NAME_PROPERTIES.get(resource["Type"], ()):
            if key in props:
                return str(self.resolve(props[key]))
        return f"{self.stack_name}-{logical_id}"

    def get_att(self, logical_id: str, attribute: str) -> str:
        resource = self._resource(logical_id)
        kind, name = resource["Type"], self.physical_name(logical_id)
        arns = {
            "AWS::S3::Bucket": f"arn:aws:s3:::{name}",
            "AWS::SQS::Queue": f"arn:aws:sqs:{REGION}:{ACCOUNT_ID}:{name}",
            "AWS::DynamoDB::Table": f"arn:aws:dynamodb:{REGION}:{ACCOUNT_ID}:table/{name}",
            "AWS::Serverless::Function": f"arn:aws:lambda:{REGION}:{ACCOUNT_ID}:function:{name}",
            "AWS::Serverless::StateMachine": f"arn:aws:states:{REGION}:{ACCOUNT_ID}:stateMachine:{name}",
            "AWS::IAM::Role": f"arn:aws:iam::{ACCOUNT_ID}:role/{name}",
            "AWS::Logs::LogGroup": f"arn:aws:logs:{REGION}:{ACCOUNT_ID}:log-group:{name}:*",
            "AWS::ECR::Repository": f"arn:aws:ecr:{REGION}:{ACCOUNT_ID}:repository/{name}",
        }
        if attribute == "Arn" and kind in arns:
            return arns[kind]
        if attribute == "Arn" and kind == "AWS::Cognito::UserPool":
            return f"arn:aws:cognito-idp:{REGION}:{ACCOUNT_ID}:userpool/{self.physical_ref(logical_id)}"
        if attribute in {"QueueName", "Name"}:
            return name
        if attribute == "QueueUrl":
            return self.physical_ref(logical_id)
        if attribute == "RepositoryUri":
            return f"{ACCOUNT_ID}.dkr.ecr.{REGION}.amazonaws.com/{name}"
        # SAM generates some resources (e.g. EventBridge rules of function events); give them a stable ARN.
        return f"arn:aws:local:{REGION}:{ACCOUNT_ID}:{logical_id}/{attribute}"

    def _resource(self, logical_id: str) -> dict:
        try:
            return self.resources[logical_id]
        except KeyError:
            if logical_id in self._generated_ids:
                return {"Type": "AWS::Local::Generated", "Properties": {}}
            raise TemplateError(f"reference to unknown resource {logical_id!r}") from None

    @cached_property
    def _generated_ids(self) -> set[str]:
        ids = set()
        for logical_id, resource in self.raw.get("Resources", {}).items():
            for event in resource.get("Properties", {}).get("Events", {}) or {}:
                ids.add(f"{logical_id}{event}")
        return ids

    def sub(self, arg: Any) -> str:
        template, variables = (arg, {}) if isinstance(arg, str) else (arg[0], arg[1])
        variables = {k: self.resolve(v) for k, v in variables.items()}

        def replace(match: re.Match) -> str:
            token = match.group(1)
            if token.startswith("!"):
                return "${" + token[1:] + "}"
            if token in variables:
                return str(variables[token])
            if "." in token:
                logical_id, attribute = token.split(".", 1)
                return str(self.get_att(logical_id, attribute))
            return str(self.ref(token))

        return re.sub(r"\$\{([^}]+)\}", replace, template)

    # ------------------------------------------------------------------ the model
    def of_type(self, *kinds: str) -> dict[str, dict]:
        return {lid: r for lid, r in self.resources.items() if r.get("Type") in kinds and self._wanted(r)}

    def _wanted(self, resource: dict) -> bool:
        condition = resource.get("Condition")
        return self.conditions[condition] if condition else True

    def properties(self, logical_id: str) -> dict:
        return self.resolve(self.resources[logical_id].get("Properties", {}))

    @cached_property
    def queues(self) -> dict[str, Queue]:
        queues = {}
        arn_to_id = {self.get_att(lid, "Arn"): lid for lid in self.of_type("AWS::SQS::Queue")}
        for lid in self.of_type("AWS::SQS::Queue"):
            props = self.properties(lid)
            attributes = {
                key: str(props[key])
                for key in _QUEUE_ATTRIBUTES
                if key in props
            }
            redrive = props.get("RedrivePolicy")
            queues[lid] = Queue(
                logical_id=lid,
                name=self.physical_name(lid),
                attributes=attributes,
                dlq_logical_id=arn_to_id[redrive["deadLetterTargetArn"]] if redrive else None,
                max_receive_count=int(redrive["maxReceiveCount"]) if redrive else None,
            )
        return queues

    @cached_property
    def tables(self) -> dict[str, Table]:
        tables = {}
        for lid in self.of_type("AWS::DynamoDB::Table"):
            props = self.properties(lid)
            tables[lid] = Table(
                logical_id=lid,
                name=self.physical_name(lid),
                key_schema=props["KeySchema"],
                attribute_definitions=props["AttributeDefinitions"],
                global_secondary_indexes=props.get("GlobalSecondaryIndexes", []),
                billing_mode=props.get("BillingMode", "PROVISIONED"),
            )
        return tables

    @cached_property
    def buckets(self) -> dict[str, Bucket]:
        buckets = {}
        for lid in self.of_type("AWS::S3::Bucket"):
            props = self.properties(lid)
            notifications = []
            for config in props.get("NotificationConfiguration", {}).get("QueueConfigurations", []):
                key_rules = config.get("Filter", {}).get("S3Key", {}).get("Rules", [])
                rules = {r["Name"].lower(): r["Value"] for r in key_rules}
                notifications.append(QueueNotification(
                    queue_arn=config["Queue"], events=[config["Event"]],
                    prefix=rules.get("prefix", ""), suffix=rules.get("suffix", ""),
                ))
            buckets[lid] = Bucket(
                logical_id=lid,
                name=self.physical_name(lid),
                versioned=props.get("VersioningConfiguration", {}).get("Status") == "Enabled",
                queue_notifications=notifications,
            )
        return buckets

    @cached_property
    def functions(self) -> dict[str, Function]:
        globals_ = self.raw.get("Globals", {}).get("Function", {})
        global_env = self.resolve(globals_.get("Environment", {}).get("Variables", {}))
        api_auth = self._default_authorizers()
        functions = {}
        for lid in self.of_type("AWS::Serverless::Function"):
            props = self.properties(lid)
            metadata = self.resources[lid].get("Metadata", {})
            if props.get("PackageType") == "Image":
                code_dir = REPO_ROOT / metadata["DockerContext"] / Path(metadata["Dockerfile"]).parent
                handler = _image_handler(code_dir / "Dockerfile")
            else:
                code_dir = REPO_ROOT / props["CodeUri"]
                handler = props["Handler"]
            env = {**global_env, **props.get("Environment", {}).get("Variables", {})}
            sqs, routes, rules = [], [], []
            for event_name, event in (props.get("Events") or {}).items():
                ev = event.get("Properties", {})
                if event["Type"] == "SQS":
                    sqs.append(SqsTrigger(
                        queue_logical_id=self._queue_id(ev["Queue"]),
                        batch_size=int(ev.get("BatchSize", 10)),
                        batching_window_s=int(ev.get("MaximumBatchingWindowInSeconds", 0)),
                        report_batch_item_failures="ReportBatchItemFailures" in ev.get("FunctionResponseTypes", []),
                    ))
                elif event["Type"] == "EventBridgeRule":
                    rules.append(EventRule(name=str(ev.get("RuleName", event_name)), pattern=ev["Pattern"]))
                elif event["Type"] == "Api":
                    authorizer = ev.get("Auth", {}).get("Authorizer") or api_auth.get(str(ev.get("RestApiId")), "NONE")
                    routes.append(ApiRoute(path=ev["Path"], method=ev["Method"].upper(), event_name=event_name,
                                           public=authorizer == "NONE", authorizer=str(authorizer)))
            functions[lid] = Function(
                logical_id=lid,
                name=self.physical_name(lid),
                handler=handler,
                code_dir=code_dir,
                environment={k: str(v) for k, v in env.items()},
                timeout_s=int(props.get("Timeout", globals_.get("Timeout", 3))),
                sqs_triggers=sqs,
                api_routes=routes,
                event_rules=rules,
            )
        return functions

    def _queue_id(self, arn: str) -> str:
        for lid, queue in self.queues.items():
            if queue.arn == arn:
                return lid
        raise TemplateError(f"event source {arn} is not a queue of this template")

    def _default_authorizers(self) -> dict[str, str]:
        return {
            self.physical_name(lid): self.properties(lid).get("Auth", {}).get("DefaultAuthorizer", "NONE")
            for lid in self.of_type("AWS::Serverless::Api")
        }

    @cached_property
    def cognito_authorizers(self) -> dict[str, CognitoAuthorizer]:
        """The APIs' Cognito authorizers by name, each with the logical id of its user pool."""
        found = {}
        for lid in self.of_type("AWS::Serverless::Api"):
            # Read unresolved: the pool's ARN exists only once the pool does; its logical id is what is needed.
            authorizers = self.resources[lid].get("Properties", {}).get("Auth", {}).get("Authorizers", {}) or {}
            for name, spec in authorizers.items():
                arn = spec.get("UserPoolArn")
                if arn is None:
                    continue
                pool_id = _user_pool_of(arn)
                if pool_id not in self.resources:
                    raise TemplateError(f"authorizer {name}: UserPoolArn must be !GetAtt <pool>.Arn or a !Sub "
                                        "ending in userpool/${<pool>}")
                header = (spec.get("Identity") or {}).get("Header", "Authorization")
                found[name] = CognitoAuthorizer(name=name, pool_logical_id=pool_id, header=str(header))
        return found

    @cached_property
    def state_machine_rules(self) -> dict[str, list[EventRule]]:
        """The EventBridge rules that start each state machine (its EventBridgeRule events), by logical id."""
        rules: dict[str, list[EventRule]] = {}
        for lid in self.of_type("AWS::Serverless::StateMachine"):
            for event_name, event in (self.properties(lid).get("Events") or {}).items():
                if event["Type"] == "EventBridgeRule":
                    ev = event.get("Properties", {})
                    rules.setdefault(lid, []).append(EventRule(name=str(ev.get("RuleName", event_name)),
                                                               pattern=ev["Pattern"], input_path=ev.get("InputPath")))
        return rules

    @cached_property
    def binary_media_types(self) -> list[str]:
        types: list[str] = []
        for lid in self.of_type("AWS::Serverless::Api"):
            types += [t.replace("~1", "/") for t in self.properties(lid).get("BinaryMediaTypes", [])]
        return types

    def function_environment(self) -> dict[str, str]:
        """The environment every function sees, merged; a name set to two values is an error."""
        merged: dict[str, str] = {}
        for function in self.functions.values():
            for key, value in function.environment.items():
                if key == "POWERTOOLS_SERVICE_NAME":
                    continue  # per function by design; the embedded stack sets it per invocation
                if merged.setdefault(key, value) != value:
                    raise TemplateError(f"environment variable {key} differs between functions")
        return merged


def _image_handler(dockerfile: Path) -> str:
    """The handler an image function runs: the Dockerfile's last CMD."""
    commands = re.findall(r'^CMD\s+\[\s*"([^"]+)"\s*\]', dockerfile.read_text(), flags=re.MULTILINE)
    if not commands:
        raise TemplateError(f"{dockerfile} has no CMD [\"module.handler\"]")
    return commands[-1]


def _fn_if(t: StackTemplate, arg: list) -> Any:
    name, when_true, when_false = arg
    return t.resolve(when_true if t.conditions[name] else when_false)


def _fn_join(t: StackTemplate, arg: list) -> str:
    return str(arg[0]).join(str(v) for v in t.resolve(arg[1]))


def _fn_get_att(t: StackTemplate, arg: Any) -> str:
    logical_id, attribute = arg.split(".", 1) if isinstance(arg, str) else arg
    return t.get_att(logical_id, attribute)


_INTRINSICS = {
    "Ref": lambda t, arg: t.ref(arg),
    "Fn::Sub": lambda t, arg: t.sub(arg),
    "Fn::GetAtt": _fn_get_att,
    "Fn::Join": _fn_join,
    "Fn::If": _fn_if,
    "Fn::Equals": lambda t, arg: str(t.resolve(arg[0])) == str(t.resolve(arg[1])),
    "Fn::Not": lambda t, arg: not t.resolve(arg[0]),
    "Fn::And": lambda t, arg: all(t.resolve(a) for a in arg),
    "Fn::Or": lambda t, arg: any(t.resolve(a) for a in arg),
    "Fn::Select": lambda t, arg: t.resolve(arg[1])[int(t.resolve(arg[0]))],
    "Fn::Split": lambda t, arg: str(t.resolve(arg[1])).split(arg[0]),
}

_QUEUE_ATTRIBUTES = ("VisibilityTimeout", "MessageRetentionPeriod", "DelaySeconds", "ReceiveMessageWaitTimeSeconds")

_NAME_PROPERTIES = {
    "AWS::S3::Bucket": ("BucketName",),
    "AWS::SQS::Queue": ("QueueName",),
    "AWS::DynamoDB::Table": ("TableName",),
    "AWS::Serverless::Function": ("FunctionName",),
    "AWS::Serverless::StateMachine": ("Name",),
    "AWS::Serverless::Api": ("Name",),
    "AWS::SNS::Topic": ("TopicName",),
    "AWS::IAM::Role": ("RoleName",),
    "AWS::Logs::LogGroup": ("LogGroupName",),
    "AWS::ECR::Repository": ("RepositoryName",),
    "AWS::Serverless::LayerVersion": ("LayerName",),
    "AWS::Cognito::UserPoolDomain": ("Domain",),
    "AWS::SSM::Parameter": ("Name",),
}


def _user_pool_of(arn) -> str | None:
    """The logical id of the user pool an authorizer's UserPoolArn names (!GetAtt Pool.Arn, or a !Sub of the ARN
    ending in userpool/${Pool}), or None."""
    if not isinstance(arn, dict):
        return None
    if "Fn::GetAtt" in arn:
        pool = arn["Fn::GetAtt"]
        return pool.split(".", 1)[0] if isinstance(pool, str) else pool[0]
    text = arn.get("Fn::Sub")
    match = re.search(r"userpool/\$\{([A-Za-z0-9]+)\}$", text) if isinstance(text, str) else None
    return match.group(1) if match else None
