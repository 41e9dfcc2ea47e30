"""What Lambda's asynchronous invocations and Step Functions executions do in AWS, done by the local stack."""

from __future__ import annotations

import logging
import threading
import uuid
from typing import Any

log = logging.getLogger("imgclf.local.launcher")


class LocalPipelineLauncher:
    """Runs collector invocations and pipeline executions in background threads of the local stack: the API's
    PipelineLauncher there."""

    def __init__(self, stack):
        self.stack = stack
        self.threads: list[threading.Thread] = []
        self.outcomes: dict[str, Any] = {}

    def collect(self, event: dict[str, Any]) -> str:
        request_id = str(uuid.uuid4())
        self._background(request_id, lambda: self.stack.invoke("CollectorFunction", event))
        return request_id

    def start_pipeline(self, name: str, execution_input: dict[str, Any]) -> str:
        self._background(name, lambda: self.stack.run_state_machine("TrainingPipeline", execution_input, name=name))
        return f"arn:aws:states:local:execution:{name}"

    def add_upload(self, event: dict[str, Any]) -> dict[str, Any]:
        # A RequestResponse invocation: the collector's answer comes back to the caller.
        return self.stack.invoke("CollectorFunction", event)

    def publish(self, detail_type: str, detail: dict[str, Any]) -> str:
        from imgclf_api.launcher import EVENT_SOURCE

        event_id = str(uuid.uuid4())
        self.stack.put_event(self.stack.event(EVENT_SOURCE, detail_type, detail, event_id=event_id))
        return event_id

    def start_execution(self, logical_id: str, name: str, execution_input: Any) -> str:
        """Start one execution of a template's state machine in the background (an EventBridge rule's target)."""
        self._background(name, lambda: self.stack.run_state_machine(logical_id, execution_input, name=name))
        return f"arn:aws:states:local:execution:{name}"

    def _background(self, name: str, work) -> None:
        def run() -> None:
            try:
                self.outcomes[name] = work()
            except Exception as exc:  # recorded as a failed execution is, and logged
                log.exception("%s failed", name)
                self.outcomes[name] = exc

        thread = threading.Thread(target=run, name=f"launch-{name}", daemon=True)
        self.threads.append(thread)
        thread.start()

    def wait(self, timeout: float | None = None) -> None:
        """Wait for everything started so far (tests)."""
        for thread in list(self.threads):
            thread.join(timeout)
