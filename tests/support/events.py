"""Events as AWS sends them, from the recorded JSON under tests/events/, and a fake Lambda context."""

from __future__ import annotations

import json
from urllib.parse import quote_plus

from imgclf_local.lambda_runtime import LambdaContext

from . import REPO_ROOT

EVENTS_DIR = REPO_ROOT / "tests" / "events"


def load_event(name: str) -> dict:
    """A recorded event from tests/events/, by file name without .json."""
    return json.loads((EVENTS_DIR / f"{name}.json").read_text())


def s3_record(obj: dict, *, event_name: str = "ObjectCreated:Put") -> dict:
    """One S3 notification record shaped like tests/events/s3_put.json, for the given object fields."""
    record = load_event("s3_put")["Records"][0]
    record["eventName"] = event_name
    record["s3"]["bucket"]["name"] = obj["bucket"]
    record["s3"]["bucket"]["arn"] = f"arn:aws:s3:::{obj['bucket']}"
    record["s3"]["object"] = {
        "key": quote_plus(obj["key"], safe="/"), "size": obj["size"], "eTag": obj["eTag"],
        **{k: obj[k] for k in ("versionId", "sequencer") if obj.get(k)},
    }
    return record


def sqs_record(body: dict | str, message_id: str) -> dict:
    """One SQS record shaped like tests/events/sqs_s3_put.json carrying the given body."""
    record = load_event("sqs_s3_put")["Records"][0]
    record["messageId"] = message_id
    record["body"] = body if isinstance(body, str) else json.dumps(body)
    return record


def sqs_event(*items: dict | str) -> dict:
    """An SQS event: one message per object (notification fields, as s3_record takes) or raw body, ids m0, m1..."""
    return {"Records": [sqs_record(item if isinstance(item, str) else {"Records": [s3_record(item)]}, f"m{i}")
                        for i, item in enumerate(items)]}


def s3_event(*objs: dict) -> dict:
    """A direct S3 event naming the given objects."""
    return {"Records": [s3_record(obj) for obj in objs]}


def lambda_context(function_name: str = "test-function", timeout_s: int = 30) -> LambdaContext:
    """What Lambda passes a handler: a name, a request id and the time left."""
    return LambdaContext(function_name=function_name, timeout_s=timeout_s)
