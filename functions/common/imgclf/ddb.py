"""DynamoDB access: value conversion, and calls whose errors come out as the project's (see aws.translated)."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from . import aws


def table(name: str):
    """The DynamoDB table resource for a table name from the settings."""
    return aws.resource("dynamodb").Table(name)


def to_dynamo(value: Any) -> Any:
    """Convert floats (which DynamoDB refuses) to Decimal, recursively."""
    if isinstance(value, float):
        return Decimal(repr(value))
    if isinstance(value, dict):
        return {k: to_dynamo(v) for k, v in value.items() if v is not None}
    if isinstance(value, (list, tuple)):
        return [to_dynamo(v) for v in value]
    return value


def from_dynamo(value: Any) -> Any:
    """Convert Decimal back to int or float, recursively, for JSON answers."""
    if isinstance(value, Decimal):
        return int(value) if value == value.to_integral_value() else float(value)
    if isinstance(value, dict):
        return {k: from_dynamo(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, set)):
        return [from_dynamo(v) for v in value]
    return value


def get_item(table_name: str, key: dict) -> dict | None:
    """One item, or None, with plain Python numbers."""
    with aws.translated(f"get {table_name}"):
        item = table(table_name).get_item(Key=key, ConsistentRead=True).get("Item")
    return from_dynamo(item) if item else None


def put_item(table_name: str, item: dict, **kwargs: Any) -> None:
    with aws.translated(f"put {table_name}"):
        table(table_name).put_item(Item=to_dynamo(item), **kwargs)


def query_page(table_name: str, limit: int, start_key: dict | None = None, **kwargs: Any) -> tuple[list, dict | None]:
    """One page of a query: items and the key to continue from."""
    if start_key:
        kwargs["ExclusiveStartKey"] = start_key
    with aws.translated(f"query {table_name}"):
        page = table(table_name).query(Limit=limit, **kwargs)
    return from_dynamo(page.get("Items", [])), page.get("LastEvaluatedKey")


def scan_all(table_name: str, **kwargs: Any) -> list[dict]:
    """Every item of a small table (the model registry)."""
    items: list[dict] = []
    with aws.translated(f"scan {table_name}"):
        while True:
            page = table(table_name).scan(**kwargs)
            items.extend(page.get("Items", []))
            if "LastEvaluatedKey" not in page:
                break
            kwargs["ExclusiveStartKey"] = page["LastEvaluatedKey"]
    return from_dynamo(items)
