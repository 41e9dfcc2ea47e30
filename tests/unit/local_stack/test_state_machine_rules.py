"""The template's EventBridge rules that start state machines, as the local stack reads and matches them."""

from __future__ import annotations

from imgclf_local.stack import LocalStack


def test_a_retrain_request_of_this_stage_starts_the_pipeline_with_its_input(stack_template):
    # GIVEN the template's rules that start state machines
    (rule,) = stack_template.state_machine_rules["TrainingPipeline"]
    request = LocalStack.event("imgclf.review", "Retrain Requested",
                               {"stage": "local", "dataset": "d", "input": {"dataset": "d", "labels": []}})

    # THEN the review's request of this stage matches, and the pipeline gets the event's detail.input
    assert rule.matches(request)
    assert rule.target_input(request) == {"dataset": "d", "labels": []}
    assert not rule.matches({**request, "detail": {**request["detail"], "stage": "prod"}})
    assert not rule.matches({**request, "source": "aws.sagemaker"})
