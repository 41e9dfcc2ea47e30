"""The runs table: one item per training run, from request to outcome."""

from __future__ import annotations

import secrets
from datetime import UTC, datetime

from . import aws, ddb
from .errors import NotFound

# Training job names allow [a-zA-Z0-9-] and 63 characters; run ids stay well inside that.
RUN_ID_FORMAT = "%Y%m%d-%H%M%S"


def now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds")


def new_run_id(now: datetime | None = None) -> str:
    """A sortable, unique run id such as 20261129-231500-3f9a."""
    now = now or datetime.now(UTC)
    return f"{now.strftime(RUN_ID_FORMAT)}-{secrets.token_hex(2)}"


class Runs:
    """Create, read and update run records."""

    def __init__(self, table_name: str):
        self.table_name = table_name

    def create(self, run_id: str, **fields) -> dict:
        item = {"run_id": run_id, "status": "Pending", "created_at": now_iso(), **fields}
        ddb.put_item(self.table_name, item, ConditionExpression="attribute_not_exists(run_id)")
        return item

    def get(self, run_id: str) -> dict:
        item = ddb.get_item(self.table_name, {"run_id": run_id})
        if not item:
            raise NotFound(f"no training run {run_id!r}")
        return item

    def update(self, run_id: str, **fields) -> None:
        """Set fields of an existing run (None values remove nothing; they are skipped)."""
        fields = {k: v for k, v in fields.items() if v is not None}
        fields["updated_at"] = now_iso()
        names = {f"#f{i}": name for i, name in enumerate(fields)}
        values = {f":v{i}": value for i, value in enumerate(fields.values())}
        with aws.translated(f"update run {run_id}"):
            ddb.table(self.table_name).update_item(
                Key={"run_id": run_id},
                UpdateExpression="SET " + ", ".join(f"#f{i} = :v{i}" for i in range(len(fields))),
                ConditionExpression="attribute_exists(run_id)",
                ExpressionAttributeNames=names,
                ExpressionAttributeValues=ddb.to_dynamo(values),
            )
