"""The CloudWatch dashboard and the reviewer pool in template.yaml: what they name exists."""

from __future__ import annotations

import json
import re

import pytest

from imgclf_local.template import REPO_ROOT, StackTemplate

FUNCTIONS = REPO_ROOT / "functions"


@pytest.fixture(scope="module")
def template() -> StackTemplate:
    return StackTemplate(parameters={"Stage": "local"})


def dashboard_metrics(template: StackTemplate) -> list[list]:
    body = json.loads(template.properties("ModelHealthDashboard")["DashboardBody"])
    return [metric for widget in body["widgets"] for metric in widget["properties"]["metrics"]
            if isinstance(metric[0], str)]


def test_the_dashboard_shows_the_issues_numbers(template):
    body = json.loads(template.properties("ModelHealthDashboard")["DashboardBody"])

    titles = " ".join(widget["properties"]["title"].lower() for widget in body["widgets"])

    for number in ("uploads per hour", "unknown rate", "queue", "live accuracy", "latency", "errors"):
        assert number in titles


def test_every_project_metric_on_the_dashboard_is_emitted_by_a_function(template):
    sources = "\n".join(path.read_text() for path in FUNCTIONS.rglob("*.py"))

    for namespace, name, *_ in dashboard_metrics(template):
        if namespace != "imgclf":
            continue
        assert re.search(rf"""name=["']{re.escape(name)}["']|["']{re.escape(name)}["']""", sources), (
            f"no function emits the metric {name}")


def test_the_dashboards_queues_and_functions_are_the_stacks(template):
    names = {q.name for q in template.queues.values()} | {f.name for f in template.functions.values()}

    for namespace, _, dimension, value, *_ in dashboard_metrics(template):
        if namespace in ("AWS/SQS", "AWS/Lambda"):
            assert dimension in ("QueueName", "FunctionName") and value in names


def test_the_hosted_sign_in_returns_to_the_review_page(template):
    client = template.properties("ReviewerPoolClient")

    assert client["GenerateSecret"] is False
    assert {"ALLOW_USER_PASSWORD_AUTH", "ALLOW_USER_SRP_AUTH"} <= set(client["ExplicitAuthFlows"])
    assert client["AllowedOAuthFlows"] == ["code"]
    assert all(url.endswith("/local/review") for url in client["CallbackURLs"])
