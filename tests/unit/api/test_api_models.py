"""GET /models, POST /models/{version}/promote and POST /models/rollback over the model registry."""

from __future__ import annotations

import pytest

from imgclf.registry import ModelRegistry


@pytest.fixture
def registry(api_env) -> ModelRegistry:
    registry = ModelRegistry(api_env.models_table)
    for version, error_rate in (("20261128-000000-aaaa", 0.10), ("20261129-000000-bbbb", 0.20)):
        registry.register(version, artifacts={"model.onnx": "0" * 64}, metrics={"error_rate": error_rate},
                          classes=["ants", "bees"], dataset="ants-bees")
    return registry


def test_the_list_shows_every_version_and_which_is_active(api, registry):
    registry.promote("20261128-000000-aaaa")

    listing = api.get("/models").json()

    assert listing["active"] == "20261128-000000-aaaa"
    assert {v["version"]: v["active"] for v in listing["versions"]} == {
        "20261128-000000-aaaa": True, "20261129-000000-bbbb": False}
    assert listing["versions"][0]["metrics"] == {"error_rate": 0.2}


def test_before_any_promotion_nothing_is_active(api, registry):
    assert api.get("/models").json()["active"] is None


def test_promoting_records_the_signed_caller_when_by_is_not_given(api, registry):
    # WHEN a version is promoted without a body, over an IAM-signed request
    response = api.post("/models/20261128-000000-aaaa/promote")

    # THEN it is active and the caller's ARN is recorded
    assert response.status == 200
    assert response.json()["version"] == "20261128-000000-aaaa"
    assert response.json()["promoted_by"] == "arn:aws:iam::123456789012:user/ops"
    assert registry.active().version == "20261128-000000-aaaa"


def test_a_worse_version_is_refused_unless_forced(api, registry):
    # GIVEN the better version is active
    registry.promote("20261128-000000-aaaa")

    # WHEN the worse one is promoted, then forced
    refused = api.post("/models/20261129-000000-bbbb/promote", json_body={})
    forced = api.post("/models/20261129-000000-bbbb/promote", json_body={"force": True, "by": "alice"})

    # THEN the first is a conflict and the second goes through
    assert refused.status == 409
    assert refused.error["code"] == "conflict"
    assert forced.status == 200
    assert forced.json() | {"promoted_at": None} == {"version": "20261129-000000-bbbb",
                                                      "previous": "20261128-000000-aaaa", "promoted_at": None,
                                                      "promoted_by": "alice", "classes": ["ants", "bees"]}


def test_an_unknown_version_is_404(api, registry):
    for version in ("20000101-000000-0000", "@active"):
        response = api.post(f"/models/{version}/promote")
        assert response.status == 404


def test_rollback_returns_to_the_previous_version(api, registry):
    registry.promote("20261128-000000-aaaa")
    registry.promote("20261129-000000-bbbb", force=True)

    response = api.post("/models/rollback", json_body={"by": "bob"})

    assert response.status == 200
    assert response.json()["version"] == "20261128-000000-aaaa"
    assert registry.active().version == "20261128-000000-aaaa"


def test_rollback_without_a_previous_version_is_409(api, registry):
    registry.promote("20261128-000000-aaaa")

    response = api.post("/models/rollback")

    assert response.status == 409
    assert "no previous" in response.error["message"]


def test_an_unknown_field_in_the_promotion_body_is_422(api, registry):
    assert api.post("/models/20261128-000000-aaaa/promote", json_body={"forse": True}).status == 422
