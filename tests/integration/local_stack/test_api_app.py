"""The local stack serves the API with an app of its own, whose launcher runs collections on the stack."""

from __future__ import annotations

import threading

import requests

from imgclf_api import app as app_module
from imgclf_local.stack import LocalStack


def test_a_collection_requested_through_the_api_runs_the_collector_of_the_stack():
    # GIVEN a stack whose collector records the events it is invoked with
    invoked, done = [], threading.Event()

    def collector(event, context):
        invoked.append(event)
        done.set()
        return {"accepted": 0}

    default_services = app_module.app.services
    with LocalStack(handlers={"CollectorFunction": collector}, pumps=False) as stack:
        # WHEN a collection of one label is requested over HTTP
        response = requests.post(f"{stack.api.url}/datasets", timeout=30,
                                 json={"name": "local-ds", "labels": ["ants"], "per_label": 3})
        stack.launcher.wait(timeout=30)

    # THEN the stack's launcher invoked its collector, and the module's app kept its own services
    assert response.status_code == 202, response.text
    assert done.is_set()
    assert [(e["dataset"], e["label"], e["count"]) for e in invoked] == [("local-ds", "ants", 3)]
    assert app_module.app.services is default_services
