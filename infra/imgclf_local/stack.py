"""The embedded local stack: moto on 127.0.0.1, the template's resources, SQS pumps and the API server."""

from __future__ import annotations

import json
import logging
import os
import threading
import time
import uuid
from datetime import UTC, datetime
from typing import Any, Callable

import boto3
import requests
from moto.server import ThreadedMotoServer

from .apigw import ApiServer, Router
from .cognito import authorizers as cognito_authorizers
from .cognito import create_user_pools, put_parameters
from .lambda_runtime import invoke as invoke_function
from .lambda_runtime import load_handler
from .pump import SqsPump
from .states import StateMachine, local_integrations
from .template import ACCOUNT_ID, REGION, Function, StackTemplate

log = logging.getLogger("imgclf.local")
logging.getLogger("werkzeug").setLevel(logging.WARNING)  # moto's request log drowns everything else
# Functions that AWS runs in separate environments share this process's boto3 clients here, so a Map of several
# collector invocations overflows the connection pool, harmlessly; in Lambda it cannot.
logging.getLogger("urllib3.connectionpool").setLevel(logging.ERROR)

FAKE_CREDENTIALS = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_SESSION_TOKEN": "testing",
    "AWS_DEFAULT_REGION": REGION,
    "AWS_REGION": REGION,
}

LOCAL_ENVIRONMENT = {
    # The collector may fetch from servers on this machine (the demo's image server); never set in AWS.
    "ALLOW_PRIVATE_ADDRESSES": "true",
    "POWERTOOLS_TRACE_DISABLED": "true",
    "POWERTOOLS_METRICS_DISABLED": "true",
    "TRAINING_BACKEND": "local",
}
# The function whose app this stack builds itself, to hand it the stack's launcher.
API_FUNCTION = "ApiFunction"


class LocalStack:
    """Starts and stops everything the functions need, with names and wiring read from template.yaml."""

    def __init__(self, template: StackTemplate | None = None, *, parameters: dict[str, str] | None = None,
                 api_port: int = 0, pumps: bool = True, api: bool = True, retry_visibility_s: int = 1,
                 extra_environment: dict[str, str] | None = None,
                 handlers: dict[str, Callable] | None = None):
        self.template = template or StackTemplate(parameters={"Stage": "local", **(parameters or {})})
        self.api_port = api_port
        self.with_pumps, self.with_api = pumps, api
        self.retry_visibility_s = retry_visibility_s
        self.extra_environment = extra_environment or {}
        self.moto: ThreadedMotoServer | None = None
        self.endpoint = ""
        self.api: ApiServer | None = None
        self.launcher = None
        self.pumps: list[SqsPump] = []
        self.queue_urls: dict[str, str] = {}
        # Callables that stand in for a function's handler (tests that watch what an event source delivers).
        self._handlers: dict[str, Callable] = dict(handlers or {})
        self._saved_env: dict[str, str | None] = {}
        self._handler_lock = threading.Lock()

    # ------------------------------------------------------------------ lifecycle
    def start(self) -> "LocalStack":
        self.moto = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
        self.moto.start()
        host, port = self.moto.get_host_and_port()
        self.endpoint = f"http://{host}:{port}"
        self._reset_moto()
        self._apply_environment()
        try:
            self.create_resources()
            if self.with_pumps:
                self._start_pumps()
            if self.with_api:
                self._start_api()
        except Exception:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        for pump in self.pumps:
            pump.stop()
        self.pumps = []
        if self.api:
            self.api.stop()
            self.api = None
        if self.moto:
            self._reset_moto()
            self.moto.stop()
            self.moto = None
        self._restore_environment()

    def __enter__(self) -> "LocalStack":
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()

    @classmethod
    def from_environment(cls) -> "LocalStack":
        """The stack another process runs (`imgclf local`), reached through the variables it printed; starts nothing."""
        from imgclf.settings import get_settings

        stack = cls(parameters={"Stage": get_settings().stage}, pumps=False, api=False)
        stack.endpoint = os.environ.get("AWS_ENDPOINT_URL", "")
        return stack

    def environment(self) -> dict[str, str]:
        """What a shell, boto3 or the AWS CLI needs to talk to this stack."""
        return {**FAKE_CREDENTIALS, "AWS_ENDPOINT_URL": self.endpoint, **self.template.function_environment(),
                **LOCAL_ENVIRONMENT, **self.extra_environment}

    def _apply_environment(self) -> None:
        for key, value in self.environment().items():
            self._saved_env.setdefault(key, os.environ.get(key))
            os.environ[key] = value
        self._reset_cached_clients()

    def _restore_environment(self) -> None:
        for key, value in self._saved_env.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
        self._saved_env = {}
        self._reset_cached_clients()

    def _reset_moto(self) -> None:
        # moto keeps its backends per process: a new stack must not see the previous one's resources.
        requests.post(f"{self.endpoint}/moto-api/reset", timeout=10).raise_for_status()

    @staticmethod
    def _reset_cached_clients() -> None:
        # Clients and settings are built once per process; a new endpoint means building them again.
        from imgclf import aws
        from imgclf.settings import reset_settings

        aws.reset()
        reset_settings()

    def client(self, service: str):
        """A boto3 client pointed at this stack."""
        return boto3.client(service, endpoint_url=self.endpoint or None, region_name=REGION)

    # ------------------------------------------------------------------ resources
    def create_resources(self) -> None:
        """Create queues, tables and buckets exactly as the template declares them."""
        sqs, dynamodb, s3 = self.client("sqs"), self.client("dynamodb"), self.client("s3")
        # Pools first: their ids are what the parameters (the review page's sign-in) resolve to.
        create_user_pools(self.template, self.client("cognito-idp"))
        put_parameters(self.template, self.client("ssm"))
        # Dead-letter queues first: a redrive policy must name an existing queue.
        queues = sorted(self.template.queues.values(), key=lambda q: q.dlq_logical_id is not None)
        for queue in queues:
            attributes = dict(queue.attributes)
            if queue.dlq_logical_id:
                attributes["RedrivePolicy"] = json.dumps({
                    "deadLetterTargetArn": self.template.queues[queue.dlq_logical_id].arn,
                    "maxReceiveCount": queue.max_receive_count,
                })
            self.queue_urls[queue.logical_id] = sqs.create_queue(QueueName=queue.name, Attributes=attributes)[
                "QueueUrl"
            ]
        for table in self.template.tables.values():
            kwargs: dict[str, Any] = {
                "TableName": table.name,
                "KeySchema": table.key_schema,
                "AttributeDefinitions": table.attribute_definitions,
                "BillingMode": table.billing_mode,
            }
            if table.global_secondary_indexes:
                kwargs["GlobalSecondaryIndexes"] = table.global_secondary_indexes
            dynamodb.create_table(**kwargs)
        for bucket in self.template.buckets.values():
            s3.create_bucket(Bucket=bucket.name)
            if bucket.versioned:
                s3.put_bucket_versioning(Bucket=bucket.name, VersioningConfiguration={"Status": "Enabled"})
            if bucket.queue_notifications:
                s3.put_bucket_notification_configuration(
                    Bucket=bucket.name,
                    NotificationConfiguration={"QueueConfigurations": [
                        {
                            "QueueArn": n.queue_arn,
                            "Events": n.events,
                            "Filter": {"Key": {"FilterRules": [
                                {"Name": name, "Value": value}
                                for name, value in (("prefix", n.prefix), ("suffix", n.suffix)) if value
                            ]}},
                        }
                        for n in bucket.queue_notifications
                    ]},
                )

    # ------------------------------------------------------------------ functions
    def function(self, logical_id: str) -> Function:
        return self.template.functions[logical_id]

    def handler(self, logical_id: str) -> Callable:
        """The imported handler of a function, loaded once like a warm execution environment."""
        with self._handler_lock:
            if logical_id not in self._handlers:
                self._handlers[logical_id] = load_handler(self.function(logical_id))
            return self._handlers[logical_id]

    def replace_handler(self, logical_id: str, handler: Callable) -> None:
        """Serve a function with another callable (tests that watch what the event source delivers)."""
        with self._handler_lock:
            self._handlers[logical_id] = handler

    def invoke(self, logical_id: str, event: dict) -> Any:
        """Invoke a function in-process, as `aws lambda invoke` would."""
        return invoke_function(self.function(logical_id), event, self.handler(logical_id))

    def _start_pumps(self) -> None:
        sqs = self.client("sqs")
        for logical_id, function in self.template.functions.items():
            for trigger in function.sqs_triggers:
                queue = self.template.queues[trigger.queue_logical_id]
                pump = SqsPump(
                    sqs, queue, self.queue_urls[queue.logical_id], trigger,
                    lambda event, lid=logical_id: self.invoke(lid, event),
                    retry_visibility_s=self.retry_visibility_s,
                )
                pump.start()
                self.pumps.append(pump)

    def _serve_api_here(self) -> None:
        """The API function with an app of its own, whose launcher is this stack's, so the collections and
        pipelines it starts run here; one request at a time, as one Lambda environment takes them (the server
        has a thread per request, and Powertools keeps the current request on its resolver class)."""
        if API_FUNCTION not in self.template.functions or API_FUNCTION in self._handlers:
            return
        try:
            from imgclf_api.app import build_app, lambda_handler_for
            from imgclf_api.services import ServicesFromEnvironment
        except ImportError:  # the API's code is not installed: serve what the template names
            return
        handle = lambda_handler_for(build_app(ServicesFromEnvironment(launcher=self.launcher)))
        one_at_a_time = threading.Lock()

        def serve(event: dict, context: Any) -> Any:
            with one_at_a_time:
                return handle(event, context)

        self.replace_handler(API_FUNCTION, serve)

    def _start_api(self) -> None:
        router = Router()
        for logical_id, function in self.template.functions.items():
            for route in function.api_routes:
                router.add(route, lambda event, lid=logical_id: self.invoke(lid, event))
        if not router.routes:
            return
        from .launcher import LocalPipelineLauncher

        self.launcher = LocalPipelineLauncher(self)
        self._serve_api_here()
        self.api = ApiServer(router, stage=self.template.parameters["Stage"],
                             binary_media_types=self.template.binary_media_types, port=self.api_port,
                             authorizers=cognito_authorizers(self.template, self.endpoint, self.client("cognito-idp")))
        self.api.start()

    def put_event(self, event: dict) -> list[Any]:
        """Deliver an EventBridge event to every function whose rule in the template matches it, and start every
        state machine whose rule does (in the background, as EventBridge starts an execution and moves on)."""
        results = []
        for logical_id, function in self.template.functions.items():
            if any(rule.matches(event) for rule in function.event_rules):
                results.append(self.invoke(logical_id, event))
        for logical_id, rules in self.template.state_machine_rules.items():
            for rule in rules:
                if rule.matches(event):
                    from .launcher import LocalPipelineLauncher

                    self.launcher = self.launcher or LocalPipelineLauncher(self)
                    # EventBridge names the executions it starts itself: a random id.
                    results.append(self.launcher.start_execution(logical_id, str(uuid.uuid4()),
                                                                 rule.target_input(event)))
        return results

    @staticmethod
    def event(source: str, detail_type: str, detail: dict, *, event_id: str | None = None,
              resources: list[str] | None = None) -> dict:
        """An EventBridge event as the bus delivers it to a rule's target."""
        return {
            "version": "0",
            "id": event_id or str(uuid.uuid4()),
            "detail-type": detail_type,
            "source": source,
            "account": ACCOUNT_ID,
            "time": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
            "region": REGION,
            "resources": resources or [],
            "detail": detail,
        }

    def sagemaker(self, **options: Any):
        """SageMaker's training contract on this machine; finished jobs are announced as EventBridge events."""
        from .sagemaker import LocalSageMaker

        def announce(description: dict) -> None:
            self.put_event({
                "version": "0",
                "id": str(uuid.uuid4()),
                "detail-type": "SageMaker Training Job State Change",
                "source": "aws.sagemaker",
                "account": ACCOUNT_ID,
                "time": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
                "region": REGION,
                "resources": [description["TrainingJobArn"]],
                "detail": description,
            })

        return LocalSageMaker(self.client("s3"), on_finish=announce, **options)

    def state_machine(self, logical_id: str, *, stream_training: bool = False, **options: Any) -> StateMachine:
        """A state machine of the template, run here: its tasks call this stack's functions and SageMaker."""
        integrations = local_integrations(self.template, self.invoke, self.sagemaker(stream_output=stream_training))
        return StateMachine.from_template(self.template, logical_id, integrations, s3=self.client("s3"), **options)

    def run_state_machine(self, logical_id: str, execution_input: Any, name: str | None = None,
                          **options: Any) -> Any:
        """One execution of a template's state machine, to the end: its output, or StatesError as AWS fails it."""
        # The one way the pipeline runs locally (the demo, `imgclf pipeline`, the API's starts), as the state machine
        # is the one way it runs in AWS. Options: stream_training (train.py's output on this terminal), listener
        # (told of each state entered and exited), retry_scale.
        return self.state_machine(logical_id, **options).execute(execution_input, name=name)

    # ------------------------------------------------------------------ helpers for tools and tests
    def queue_url(self, logical_id: str) -> str:
        return self.queue_urls[logical_id]

    def bucket(self, logical_id: str = "DataBucket") -> str:
        return self.template.buckets[logical_id].name

    def table(self, logical_id: str) -> str:
        return self.template.tables[logical_id].name

    def wait_until(self, predicate: Callable[[], Any], timeout: float = 30, interval: float = 0.2) -> Any:
        """Poll until predicate returns something truthy; raise TimeoutError with what was waited for."""
        deadline = time.monotonic() + timeout
        while True:
            value = predicate()
            if value:
                return value
            if time.monotonic() > deadline:
                raise TimeoutError(f"gave up after {timeout}s waiting for {getattr(predicate, '__name__', predicate)}")
            time.sleep(interval)

    def describe(self) -> str:
        """A human summary of the endpoints and the environment to use them."""
        lines = [f"moto endpoint   {self.endpoint}"]
        if self.api:
            lines.append(f"API and page    {self.api.url}/")
        lines.append(f"data bucket     s3://{self.bucket()}")
        for lid, queue in self.template.queues.items():
            lines.append(f"queue           {queue.name} ({lid})")
        for table in self.template.tables.values():
            lines.append(f"table           {table.name}")
        lines.append("")
        lines.append("# point boto3, the AWS CLI or another `imgclf` at the stack:")
        environment = self.environment()
        for key in ("AWS_ENDPOINT_URL", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_DEFAULT_REGION", "STAGE",
                    "DATA_BUCKET", "PREDICTIONS_TABLE", "RUNS_TABLE", "MODELS_TABLE", "DECISIONS_TABLE",
                    "SIGN_IN_PARAMETER", "TRAINING_BACKEND"):
            lines.append(f"export {key}={environment[key]}")
        if self.template.cognito_authorizers:
            lines.append("# then make a reviewer to sign in on the review page with:")
            lines.append("#   imgclf reviewer add you@example.com --password 'Choose-A-Password-1'")
        return "\n".join(lines)
