"""Structured logging, metrics and tracing: Powertools, configured the same way in every function."""

from __future__ import annotations

import os

from aws_lambda_powertools import Logger, Metrics, Tracer

NAMESPACE = "imgclf"


def get_logger(service: str) -> Logger:
    """A JSON logger for one function; POWERTOOLS_SERVICE_NAME from the template wins."""
    return Logger(service=os.environ.get("POWERTOOLS_SERVICE_NAME", service))


def get_metrics(service: str) -> Metrics:
    """CloudWatch embedded-metric-format metrics in the project's namespace."""
    return Metrics(namespace=os.environ.get("POWERTOOLS_METRICS_NAMESPACE", NAMESPACE), service=service)


def get_tracer(service: str) -> Tracer:
    """X-Ray tracer; disabled outside Lambda unless POWERTOOLS_TRACE_DISABLED says otherwise."""
    return Tracer(service=service)
