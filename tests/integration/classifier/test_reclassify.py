"""After a promotion, the reclassification state machine classifies existing uploads again, and only once."""

from __future__ import annotations

import pytest

from imgclf import ddb
from imgclf_local.stack import LocalStack
from tests.support.models import publish_model


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    cache = tmp_path_factory.mktemp("model-cache")
    with LocalStack(api=False, extra_environment={"MODEL_CACHE_DIR": str(cache), "MODEL_CHECK_SECONDS": "0"}) as stack:
        yield stack


def records(stack, keys: list[str]) -> list[dict]:
    return [ddb.get_item(stack.table("PredictionsTable"), {"image": f"s3://{stack.bucket()}/{k}"}) for k in keys]


def test_reclassification_moves_every_upload_to_the_new_model_once(stack, tiny_model, photo_jpeg):
    # GIVEN uploads classified by a first model, and one that is not an image
    publish_model(tiny_model, "v1")
    keys = [f"uploads/backfill/{i}.jpg" for i in range(12)]
    for key in keys:
        stack.client("s3").put_object(Bucket=stack.bucket(), Key=key, Body=photo_jpeg)
    stack.client("s3").put_object(Bucket=stack.bucket(), Key="uploads/backfill/text.jpg", Body=b"not an image")
    stack.wait_until(lambda: all(r and r.get("model_version") == "v1" for r in records(stack, keys)), timeout=120)
    before = {r["image"]: r for r in records(stack, keys)}

    # WHEN a second model is promoted and the reclassification runs, twice
    publish_model(tiny_model, "v2")
    first = stack.state_machine("ReclassifyMachine").execute({})
    machine = stack.state_machine("ReclassifyMachine")
    machine.execute({})
    second_batches = [h for h in machine.history if h["state"] == "ClassifyBatch"]

    # THEN every image carries the new version and keeps its place in the event order
    after = records(stack, keys)
    assert all(r["model_version"] == "v2" and r["status"] == "classified" for r in after)
    assert all(r.get("sequencer") == before[r["image"]].get("sequencer") for r in after)
    rejected = records(stack, ["uploads/backfill/text.jpg"])[0]
    assert rejected["status"] == "rejected"
    assert first == {}  # ResultPath null: progress is in the Map Run, not in the output
    assert len(second_batches) == 2  # 13 objects in batches of 10

    # AND the rerun touched nothing: the records are exactly as the first pass left them
    assert records(stack, keys) == after
