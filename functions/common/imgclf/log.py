"""Structured logging, metrics and tracing: Powertools, configured the same way in every function."""

from __future__ import annotations

import logging
import os

from aws_lambda_powertools import Logger, Metrics, Tracer

NAMESPACE = "imgclf"


def in_lambda() -> bool:
    """Whether this process is a Lambda execution environment (the runtime sets the function's name)."""
    return bool(os.environ.get("AWS_LAMBDA_FUNCTION_NAME"))


def get_logger(service: str) -> Logger:
    """A function's logger, JSON lines on stdout in Lambda; POWERTOOLS_SERVICE_NAME from the template wins."""
    name = os.environ.get("POWERTOOLS_SERVICE_NAME", service)
    if in_lambda():
        return Logger(service=name)
    # Elsewhere the code runs inside a program that owns the console (the imgclf command, pytest): like a
    # library's logger it prints nothing itself and passes its records up, printed once in that program's format.
    # Modules of one service share the handler, which holds the keys inject_lambda_context appends.
    shared = getattr(logging.getLogger(name), "powertools_handler", None)
    return Logger(service=name, logger_handler=shared or logging.NullHandler())


def get_metrics(service: str) -> Metrics:
    """CloudWatch embedded-metric-format metrics in the project's namespace."""
    return Metrics(namespace=os.environ.get("POWERTOOLS_METRICS_NAMESPACE", NAMESPACE), service=service)


def get_tracer(service: str) -> Tracer:
    """X-Ray tracer; disabled outside Lambda unless POWERTOOLS_TRACE_DISABLED says otherwise."""
    return Tracer(service=service)
