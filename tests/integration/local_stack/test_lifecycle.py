"""The local stack starts clean and leaves the process as it found it."""

from __future__ import annotations

import os

from imgclf_local.stack import LocalStack


def test_stack_restores_the_environment_when_it_stops():
    before = os.environ.get("AWS_ENDPOINT_URL")
    with LocalStack(pumps=False, api=False) as stack:
        assert os.environ["AWS_ENDPOINT_URL"] == stack.endpoint
    assert os.environ.get("AWS_ENDPOINT_URL") == before


def test_a_new_stack_does_not_see_the_previous_stacks_objects():
    # GIVEN a stack in which an object was stored
    with LocalStack(pumps=False, api=False) as first:
        first.client("s3").put_object(Bucket=first.bucket(), Key="datasets/x.jpg", Body=b"x")

    # WHEN a second stack starts in the same process
    with LocalStack(pumps=False, api=False) as second:
        listed = second.client("s3").list_objects_v2(Bucket=second.bucket()).get("KeyCount")

    # THEN it starts empty
    assert listed == 0
