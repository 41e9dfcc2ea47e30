"""Run a function's handler in this process the way Lambda would: resolved from the template, with a context."""

from __future__ import annotations

import importlib
import sys
import time
import uuid
from dataclasses import dataclass, field
from typing import Any, Callable

from .template import ACCOUNT_ID, REGION, Function


@dataclass
class LambdaContext:
    """The attributes and method of Lambda's context object that handlers and Powertools use."""

    function_name: str = "local"
    memory_limit_in_mb: int = 512
    timeout_s: int = 30
    aws_request_id: str = field(default_factory=lambda: str(uuid.uuid4()))
    function_version: str = "$LATEST"
    log_group_name: str = "/aws/lambda/local"
    log_stream_name: str = "local"
    _deadline: float = field(default=0.0, repr=False)

    def __post_init__(self) -> None:
        self._deadline = time.monotonic() + self.timeout_s

    @property
    def invoked_function_arn(self) -> str:
        return f"arn:aws:lambda:{REGION}:{ACCOUNT_ID}:function:{self.function_name}"

    def get_remaining_time_in_millis(self) -> int:
        return max(0, int((self._deadline - time.monotonic()) * 1000))


def load_handler(function: Function) -> Callable[[dict, Any], Any]:
    """Import the handler named by the template from the function's code folder."""
    code_dir = str(function.code_dir)
    if code_dir not in sys.path:
        sys.path.append(code_dir)
    module_name, _, attribute = function.handler.rpartition(".")
    module = importlib.import_module(module_name)
    return getattr(module, attribute)


def invoke(function: Function, event: dict, handler: Callable | None = None) -> Any:
    """Call a function's handler once with a fresh context."""
    handler = handler or load_handler(function)
    context = LambdaContext(function_name=function.name, timeout_s=function.timeout_s)
    return handler(event, context)
