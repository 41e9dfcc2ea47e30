"""Run the template's Step Functions definitions on the local stack: the subset of ASL they use, for real.

moto stores state machines but does not run them, so the local stack interprets the same
`infra/statemachine/*.asl.json` that AWS runs, with the template's DefinitionSubstitutions: Task states
invoke the functions in-process (lambda:invoke) or train through SageMaker's local contract
(createTrainingJob.sync); Map runs its items (inline, or distributed over an S3 listing); Choice, Pass,
Succeed and Fail behave as in AWS; Retry and Catch match error names the way Step Functions does.
"""

from __future__ import annotations

import copy
import json
import logging
import re
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Callable

from .template import REPO_ROOT

log = logging.getLogger("imgclf.local.states")

_NO_RESULT = object()


class StatesError(Exception):
    """A state failed with an error name and cause, as Step Functions reports them."""

    def __init__(self, error: str, cause: str = ""):
        super().__init__(f"{error}: {cause}")
        self.error, self.cause = error, cause


# ---------------------------------------------------------------- JSONPath, the part ASL uses
def _path_parts(path: str) -> list[str]:
    if path in ("$", "$$"):
        return []
    if not (path.startswith("$.") or path.startswith("$$.")):
        raise StatesError("States.Runtime", f"unsupported path {path!r}")
    return [p for p in re.split(r"\.", path.split(".", 1)[1]) if p]


def read_path(document: Any, path: str, context: dict) -> Any:
    """The value at a reference path such as $.a.b or $$.Map.Item.Value."""
    value = context if path.startswith("$$") else document
    for part in _path_parts(path):
        match = re.fullmatch(r"(\w[\w-]*)\[(\d+)\]", part)
        try:
            value = value[match.group(1)][int(match.group(2))] if match else value[part]
        except (KeyError, IndexError, TypeError):
            raise StatesError("States.Runtime", f"the path {path!r} matches nothing in {document!r}") from None
    return value


def write_path(document: Any, path: str | None, result: Any) -> Any:
    """The document with the result placed at ResultPath (null discards the result)."""
    if path is None:
        return document
    if path == "$":
        return result
    document = copy.deepcopy(document) if isinstance(document, dict) else {}
    target = document
    parts = _path_parts(path)
    for part in parts[:-1]:
        target = target.setdefault(part, {})
    target[parts[-1]] = result
    return document


def fill(template: Any, document: Any, context: dict) -> Any:
    """Evaluate a Parameters/ItemSelector block: keys ending in .$ take their value from a path."""
    if isinstance(template, dict):
        out = {}
        for key, value in template.items():
            if key.endswith(".$"):
                out[key[:-2]] = read_path(document, value, context)
            else:
                out[key] = fill(value, document, context)
        return out
    if isinstance(template, list):
        return [fill(v, document, context) for v in template]
    return template


# ---------------------------------------------------------------- choice rules
_COMPARISONS: dict[str, Callable[[Any, Any], bool]] = {
    "BooleanEquals": lambda a, b: a is b or a == b,
    "StringEquals": lambda a, b: a == b,
    "NumericEquals": lambda a, b: a == b,
    "NumericLessThan": lambda a, b: a < b,
    "NumericGreaterThan": lambda a, b: a > b,
    "NumericLessThanEquals": lambda a, b: a <= b,
    "NumericGreaterThanEquals": lambda a, b: a >= b,
}


def choice_matches(rule: dict, document: Any, context: dict) -> bool:
    if "And" in rule:
        return all(choice_matches(r, document, context) for r in rule["And"])
    if "Or" in rule:
        return any(choice_matches(r, document, context) for r in rule["Or"])
    if "Not" in rule:
        return not choice_matches(rule["Not"], document, context)
    try:
        value = read_path(document, rule["Variable"], context)
    except StatesError:
        return "IsPresent" in rule and rule["IsPresent"] is False
    if "IsPresent" in rule:
        return rule["IsPresent"] is True
    for name, compare in _COMPARISONS.items():
        if name in rule:
            return compare(value, rule[name])
    raise StatesError("States.Runtime", f"unsupported choice rule {rule}")


def _error_matches(names: list[str], error: str) -> bool:
    return "States.ALL" in names or error in names


# ---------------------------------------------------------------- the interpreter
class StateMachine:
    """One state machine definition with its substitutions and the integrations that run its tasks."""

    def __init__(self, definition: dict, integrations: dict[str, Callable[[Any], Any]], *,
                 retry_scale: float = 0.0, s3=None, listener: Callable[[dict], None] | None = None):
        self.definition = definition
        self.integrations = integrations
        # Locally a retry need not wait as long as in AWS; the attempts and their order are what matter.
        self.retry_scale = retry_scale
        self.s3 = s3
        # Told of each state entered and exited, as the execution history in the Step Functions console shows.
        self.listener = listener
        self.history: list[dict] = []

    @classmethod
    def from_template(cls, template, logical_id: str, integrations: dict[str, Callable[[Any], Any]],
                      **options: Any) -> StateMachine:
        """The definition a template's state machine deploys, with its substitutions applied."""
        props = template.properties(logical_id)
        text = (REPO_ROOT / props["DefinitionUri"]).read_text()
        for name, value in props.get("DefinitionSubstitutions", {}).items():
            text = text.replace("${" + name + "}", str(value))
        leftover = re.findall(r"\$\{(\w+)\}", text)
        if leftover:
            raise ValueError(f"{logical_id}: substitutions missing for {sorted(set(leftover))}")
        return cls(json.loads(text), integrations, **options)

    def execute(self, input_: Any, name: str | None = None) -> Any:
        """Run to the end; return the output, or raise StatesError as a failed execution would."""
        name = name or str(uuid.uuid4())
        context = {"Execution": {"Id": f"arn:aws:states:local:execution:{name}", "Name": name, "Input": input_,
                                 "StartTime": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}}
        return self._run(self.definition, input_, context)

    def _run(self, machine: dict, document: Any, context: dict) -> Any:
        name = machine["StartAt"]
        while True:
            state = machine["States"][name]
            kind = state["Type"]
            self.history.append({"state": name, "type": kind})
            self._tell("entered", name, kind)
            log.info("state %s (%s)", name, kind)
            if kind == "Succeed":
                return self._output(state, document, context)
            if kind == "Fail":
                raise StatesError(state.get("Error", "States.Fail"), state.get("Cause", ""))
            if kind == "Choice":
                name = next((c["Next"] for c in state["Choices"] if choice_matches(c, document, context)),
                            state.get("Default"))
                if name is None:
                    raise StatesError("States.NoChoiceMatched", f"no choice of {state} matched")
                continue
            try:
                document = self._step(state, document, context)
            except StatesError as exc:
                handler = next((c for c in state.get("Catch", []) if _error_matches(c["ErrorEquals"], exc.error)),
                               None)
                if handler is None:
                    raise
                document = write_path(document, handler.get("ResultPath", "$"),
                                      {"Error": exc.error, "Cause": exc.cause})
                name = handler["Next"]
                continue
            self._tell("exited", name, kind, output=document)
            if state.get("End"):
                return document
            name = state["Next"]

    def _tell(self, phase: str, name: str, kind: str, **details: Any) -> None:
        if self.listener:
            self.listener({"phase": phase, "state": name, "type": kind, **details})

    def _step(self, state: dict, document: Any, context: dict) -> Any:
        """Input processing, the state's work with its retries, and output processing."""
        effective = read_path(document, state.get("InputPath", "$"), context) if state.get("InputPath", "$") else {}
        if state["Type"] == "Pass":
            result = state.get("Result", fill(state["Parameters"], effective, context)
                               if "Parameters" in state else effective)
        elif state["Type"] == "Task":
            payload = fill(state["Parameters"], effective, context) if "Parameters" in state else effective
            result = self._with_retries(state, lambda: self._task(state["Resource"], payload))
        elif state["Type"] == "Map":
            result = self._with_retries(state, lambda: self._map(state, effective, context))
        else:
            raise StatesError("States.Runtime", f"unsupported state type {state['Type']}")
        if "ResultSelector" in state:
            result = fill(state["ResultSelector"], result, context)
        document = write_path(document, state.get("ResultPath", "$"), result)
        return self._output(state, document, context)

    @staticmethod
    def _output(state: dict, document: Any, context: dict) -> Any:
        path = state.get("OutputPath", "$")
        return {} if path is None else read_path(document, path, context)

    def _with_retries(self, state: dict, work: Callable[[], Any]) -> Any:
        attempts: dict[int, int] = {}
        while True:
            try:
                return work()
            except StatesError as exc:
                index, rule = next(((i, r) for i, r in enumerate(state.get("Retry", []))
                                    if _error_matches(r["ErrorEquals"], exc.error)), (None, None))
                if rule is None:
                    raise
                attempts[index] = attempts.get(index, 0) + 1
                if attempts[index] > rule.get("MaxAttempts", 3):
                    raise
                delay = rule.get("IntervalSeconds", 1) * rule.get("BackoffRate", 2.0) ** (attempts[index] - 1)
                time.sleep(delay * self.retry_scale)

    def _task(self, resource: str, payload: Any) -> Any:
        integration = self.integrations.get(resource)
        if integration is None:
            raise StatesError("States.Runtime", f"no local integration for {resource}")
        try:
            return integration(payload)
        except StatesError:
            raise
        except Exception as exc:  # a function error carries its type as the error name, as in AWS
            raise StatesError(type(exc).__name__, str(exc)) from exc

    def _map(self, state: dict, document: Any, context: dict) -> list:
        items = self._items(state, document, context)
        selector = state.get("ItemSelector") or state.get("Parameters")
        processor = state.get("ItemProcessor") or state.get("Iterator")
        batcher = state.get("ItemBatcher")
        if batcher:
            size = batcher.get("MaxItemsPerBatch", 1)
            batch_input = fill(batcher.get("BatchInput", {}), document, context)
            items = [{"Items": items[i:i + size], "BatchInput": batch_input} for i in range(0, len(items), size)]

        def run_item(index_item: tuple[int, Any]) -> Any:
            index, item = index_item
            item_context = {**context, "Map": {"Item": {"Index": index, "Value": item}}}
            item_input = fill(selector, document, item_context) if selector and not batcher else item
            return self._run(processor, item_input, item_context)

        workers = max(1, min(int(state.get("MaxConcurrency") or 4), 4))
        with ThreadPoolExecutor(max_workers=workers) as pool:
            return list(pool.map(run_item, enumerate(items)))

    def _items(self, state: dict, document: Any, context: dict) -> list:
        reader = state.get("ItemReader")
        if not reader:
            return read_path(document, state.get("ItemsPath", "$"), context)
        if reader["Resource"] != "arn:aws:states:::s3:listObjectsV2":
            raise StatesError("States.Runtime", f"unsupported ItemReader {reader['Resource']}")
        params = fill(reader["Parameters"], document, context)
        items = []
        for page in self.s3.get_paginator("list_objects_v2").paginate(**params):
            items += [{"Key": o["Key"], "Size": o["Size"], "Etag": o["ETag"],
                       "LastModified": o["LastModified"].isoformat()} for o in page.get("Contents", [])]
        return items


def local_integrations(template, invoke: Callable[[str, dict], Any], sagemaker) -> dict[str, Callable[[Any], Any]]:
    """The service integrations the definitions use, served by in-process functions and local SageMaker."""
    functions_by_arn = {template.get_att(lid, "Arn"): lid for lid in template.functions}

    def lambda_invoke(payload: dict) -> dict:
        logical_id = functions_by_arn.get(payload["FunctionName"])
        if logical_id is None:
            raise StatesError("Lambda.ResourceNotFoundException", f"no function {payload['FunctionName']}")
        result = invoke(logical_id, payload.get("Payload", {}))
        return {"StatusCode": 200, "ExecutedVersion": "$LATEST", "Payload": result}

    def train_sync(request: dict) -> dict:
        sagemaker.start(request)
        description = sagemaker.describe(request["TrainingJobName"])
        if description["TrainingJobStatus"] != "Completed":
            raise StatesError("States.TaskFailed", json.dumps(description))
        return description

    return {
        "arn:aws:states:::lambda:invoke": lambda_invoke,
        "arn:aws:states:::sagemaker:createTrainingJob.sync": train_sync,
    }
