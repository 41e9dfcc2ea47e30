"""The local Step Functions interpreter follows ASL's rules for paths, retries, catches and choices."""

from __future__ import annotations

import pytest

from imgclf_local.states import StateMachine, StatesError, fill, read_path, write_path


def _machine(states: dict, start: str, integrations: dict) -> StateMachine:
    return StateMachine({"StartAt": start, "States": states}, integrations)


def test_paths_read_write_and_fill_like_asl():
    doc = {"a": {"b": [1, 2]}, "x": "y"}
    context = {"Map": {"Item": {"Value": "v"}}}
    assert read_path(doc, "$.a.b[1]", context) == 2
    assert read_path(doc, "$$.Map.Item.Value", context) == "v"
    assert write_path(doc, "$.r", 5) == {**doc, "r": 5} and "r" not in doc
    assert write_path(doc, None, 5) == doc
    assert fill({"k.$": "$.x", "n": {"m.$": "$$.Map.Item.Value"}}, doc, context) == {"k": "y", "n": {"m": "v"}}
    with pytest.raises(StatesError, match="matches nothing"):
        read_path(doc, "$.missing", context)


def test_a_retried_task_succeeds_on_a_later_attempt():
    calls = []

    def flaky(payload):
        calls.append(payload)
        if len(calls) < 3:
            raise TimeoutError("slow")
        return {"ok": True}

    machine = _machine({"T": {"Type": "Task", "Resource": "r", "End": True,
                              "Retry": [{"ErrorEquals": ["TimeoutError"], "MaxAttempts": 2}]}}, "T", {"r": flaky})
    assert machine.execute({"in": 1}) == {"ok": True}
    assert len(calls) == 3


def test_retries_stop_at_max_attempts_and_the_catch_takes_over():
    def broken(payload):
        raise ValueError("bad input")

    states = {
        "T": {"Type": "Task", "Resource": "r", "Next": "Ok", "ResultPath": "$.result",
              "Retry": [{"ErrorEquals": ["ValueError"], "MaxAttempts": 1}],
              "Catch": [{"ErrorEquals": ["States.ALL"], "ResultPath": "$.error", "Next": "Handled"}]},
        "Ok": {"Type": "Succeed"},
        "Handled": {"Type": "Pass", "End": True},
    }
    machine = _machine(states, "T", {"r": broken})
    output = machine.execute({"in": 1})
    assert output == {"in": 1, "error": {"Error": "ValueError", "Cause": "bad input"}}
    assert [h["state"] for h in machine.history] == ["T", "Handled"]


def test_choice_picks_the_first_matching_rule_or_the_default():
    states = {
        "C": {"Type": "Choice", "Default": "No",
              "Choices": [{"Variable": "$.promoted", "BooleanEquals": True, "Next": "Yes"}]},
        "Yes": {"Type": "Succeed"},
        "No": {"Type": "Fail", "Error": "Refused"},
    }
    assert _machine(states, "C", {}).execute({"promoted": True}) == {"promoted": True}
    with pytest.raises(StatesError, match="Refused"):
        _machine(states, "C", {}).execute({"promoted": False})


def test_map_runs_its_processor_per_item_with_the_item_selector():
    seen = []
    states = {"M": {"Type": "Map", "ItemsPath": "$.labels", "End": True,
                    "ItemSelector": {"dataset.$": "$.dataset", "label.$": "$$.Map.Item.Value"},
                    "ItemProcessor": {"StartAt": "T", "States": {
                        "T": {"Type": "Task", "Resource": "r", "End": True}}}}}
    machine = _machine(states, "M", {"r": lambda p: seen.append(p) or p["label"].upper()})
    assert machine.execute({"dataset": "d", "labels": ["a", "b"]}) == ["A", "B"]
    assert sorted(seen, key=lambda p: p["label"]) == [{"dataset": "d", "label": "a"}, {"dataset": "d", "label": "b"}]


def test_a_listener_hears_each_state_entered_and_each_finished_one_with_its_output():
    # GIVEN a task followed by a Succeed, and a listener
    heard = []
    states = {"T": {"Type": "Task", "Resource": "r", "ResultPath": "$.t", "Next": "Done"},
              "Done": {"Type": "Succeed"}}
    machine = StateMachine({"StartAt": "T", "States": states}, {"r": lambda payload: 7}, listener=heard.append)

    # WHEN it runs
    machine.execute({"in": 1})

    # THEN the listener heard the states in order, the task's exit with the document it passed on
    assert [(e["phase"], e["state"]) for e in heard] == [("entered", "T"), ("exited", "T"), ("entered", "Done")]
    assert heard[1]["output"] == {"in": 1, "t": 7}
