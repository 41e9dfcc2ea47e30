"""Starting the work that runs elsewhere: collector invocations and executions of the training pipeline.

In AWS the collector runs as its own function and the pipeline as a Step Functions state machine. Where
training is local (TRAINING_BACKEND=local) nothing here can run them: the launcher only records what it was
asked to start, unless whoever builds the app passes a launcher of its own (the embedded local stack does).
"""

from __future__ import annotations

import json
import logging
import uuid
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Iterator, Protocol

from imgclf import aws
from imgclf.errors import ConfigError, NotFound, TransientError
from imgclf.settings import Settings

log = logging.getLogger(__name__)
# The source of the events the review puts on the default bus; the template's rules match it.
EVENT_SOURCE = "imgclf.review"
RETRAIN_REQUESTED = "Retrain Requested"


class PipelineLauncher(Protocol):
    """Starts the pipeline's work, collections and training pipelines, and returns at once with an id for each."""

    def collect(self, event: dict[str, Any]) -> str:
        """Start one collector invocation (one label) without waiting for it."""

    def start_pipeline(self, name: str, execution_input: dict[str, Any]) -> str:
        """Start one execution of the collect-train-promote state machine."""

    def add_upload(self, event: dict[str, Any]) -> dict[str, Any]:
        """Add one labeled upload to a dataset with the collector (its add_upload action), and wait for the answer."""

    def publish(self, detail_type: str, detail: dict[str, Any]) -> str:
        """Put one event of the review (source imgclf.review) on the default EventBridge bus."""


@dataclass
class AwsPipelineLauncher:
    """Asynchronous Lambda invocations of the collector, executions of the Step Functions state machine."""

    collector_function: str
    state_machine_arn: str
    lambda_client: Any = None
    sfn_client: Any = None
    events_client: Any = None

    @classmethod
    def from_settings(cls, settings: Settings) -> AwsPipelineLauncher:
        return cls(collector_function=settings.collector_function, state_machine_arn=settings.state_machine_arn)

    def collect(self, event: dict[str, Any]) -> str:
        client = self.lambda_client or aws.client("lambda")
        with _starting("invoke the collector"):
            # "Event" queues the invocation: Lambda retries it twice on failure and the API answers at once.
            response = client.invoke(FunctionName=self.collector_function, InvocationType="Event",
                                     Payload=json.dumps(event).encode())
        return response["ResponseMetadata"]["RequestId"]

    def start_pipeline(self, name: str, execution_input: dict[str, Any]) -> str:
        client = self.sfn_client or aws.client("stepfunctions")
        with _starting("start the training pipeline"):
            response = client.start_execution(stateMachineArn=self.state_machine_arn, name=name,
                                              input=json.dumps(execution_input))
        return response["executionArn"]

    def add_upload(self, event: dict[str, Any]) -> dict[str, Any]:
        client = self.lambda_client or aws.client("lambda")
        with _starting("invoke the collector"):
            response = client.invoke(FunctionName=self.collector_function, InvocationType="RequestResponse",
                                     Payload=json.dumps(event).encode())
        answer = json.loads(response["Payload"].read() or b"null")
        if response.get("FunctionError"):
            message = answer.get("errorMessage", "") if isinstance(answer, dict) else str(answer)
            raise TransientError(f"the collector could not add the upload: {message[:500]}")
        return answer

    def publish(self, detail_type: str, detail: dict[str, Any]) -> str:
        client = self.events_client or aws.client("events")
        with aws.translated("put an event on the default bus"):
            response = client.put_events(Entries=[{"Source": EVENT_SOURCE, "DetailType": detail_type,
                                                   "Detail": json.dumps(detail)}])
        entry = response["Entries"][0]
        if response.get("FailedEntryCount") or "EventId" not in entry:
            raise TransientError(f"EventBridge refused the event: {entry.get('ErrorMessage', entry)}")
        return entry["EventId"]


@dataclass
class RecordingPipelineLauncher:
    """Starts nothing and remembers what it was asked to start: where training is local, and a test double."""

    collected: list[dict[str, Any]] = field(default_factory=list)
    pipelines: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    events: list[tuple[str, dict[str, Any]]] = field(default_factory=list)

    def collect(self, event: dict[str, Any]) -> str:
        self.collected.append(event)
        log.warning("collection of %s/%s recorded, not run: nothing executes functions here",
                    event.get("dataset"), event.get("label"))
        return f"local-{uuid.uuid4()}"

    def start_pipeline(self, name: str, execution_input: dict[str, Any]) -> str:
        self.pipelines.append((name, execution_input))
        log.warning("pipeline execution %s recorded, not run: nothing executes state machines here", name)
        return f"local:execution:{name}"

    def add_upload(self, event: dict[str, Any]) -> dict[str, Any]:
        # The answer is needed now, and the collector's code is installed beside this one here: run it in-process.
        from imgclf_collector.handler import add_labeled_upload

        return add_labeled_upload(event)

    def publish(self, detail_type: str, detail: dict[str, Any]) -> str:
        self.events.append((detail_type, detail))
        log.warning("event %s recorded, not delivered: no rules run here", detail_type)
        return f"local-{uuid.uuid4()}"


def launcher_for(settings: Settings) -> PipelineLauncher:
    """The launcher of this environment: AWS services, unless training is local."""
    if settings.training_backend == "local":
        return RecordingPipelineLauncher()
    settings.require("collector_function", "state_machine_arn")
    return AwsPipelineLauncher.from_settings(settings)


@contextmanager
def _starting(what: str) -> Iterator[None]:
    """aws.translated, except that a missing function or state machine is a deployment fault, not a 404."""
    try:
        with aws.translated(what):
            yield
    except NotFound as exc:
        raise ConfigError(f"{what}: the function or state machine in the settings does not exist ({exc})") from exc
