"""AWS resources for tests, built from template.yaml so that the tests and the stack cannot drift apart."""

from __future__ import annotations

from imgclf_local.template import Bucket, StackTemplate

# A bucket for tests that need one but not the template's (the collector's, the manifest's).
BUCKET = "imgclf-test-data"


def create_tables(dynamodb, template: StackTemplate) -> dict[str, str]:
    """Every DynamoDB table of the template, with its keys and indexes; their names by logical id."""
    for table in template.tables.values():
        indexes = {"GlobalSecondaryIndexes": table.global_secondary_indexes} if table.global_secondary_indexes else {}
        dynamodb.create_table(TableName=table.name, KeySchema=table.key_schema,
                              AttributeDefinitions=table.attribute_definitions, BillingMode=table.billing_mode,
                              **indexes)
    return {logical_id: table.name for logical_id, table in template.tables.items()}


def create_bucket(s3, bucket: Bucket) -> str:
    """One of the template's buckets, versioned where the template says so (notifications left out)."""
    s3.create_bucket(Bucket=bucket.name)
    if bucket.versioned:
        s3.put_bucket_versioning(Bucket=bucket.name, VersioningConfiguration={"Status": "Enabled"})
    return bucket.name


def prediction_record(stack, key: str) -> dict | None:
    """The prediction record of an object in a stack's data bucket, None before there is one."""
    from imgclf import ddb

    return ddb.get_item(stack.table("PredictionsTable"), {"image": f"s3://{stack.bucket()}/{key}"})
