"""Training runs: the statuses a run may move between, how a start that fails is recorded, the pipeline's input."""

from __future__ import annotations

import re

import pytest

from imgclf.errors import AlreadyProcessed, Conflict, TransientError
from imgclf.runs import (
    COMPLETED,
    ENDED,
    FAILED,
    IN_PROGRESS,
    PENDING,
    STATUSES,
    STOPPED,
    TRANSITIONS,
    Runs,
    can_become,
    new_run_id,
    pipeline_input,
    start_run,
)
from imgclf.settings import get_settings


@pytest.fixture
def runs(template_tables) -> Runs:
    return Runs(get_settings().runs_table)


def test_every_status_has_its_transitions_and_none_leads_back_to_pending_or_in_progress():
    assert set(TRANSITIONS) == set(STATUSES)
    assert all(targets <= set(STATUSES) for targets in TRANSITIONS.values())
    assert not any(can_become(status, PENDING) for status in STATUSES)
    assert [status for status in STATUSES if can_become(status, IN_PROGRESS)] == [PENDING]


@pytest.mark.parametrize("start", [PENDING, IN_PROGRESS])
def test_a_run_on_its_way_may_end_in_any_outcome(start):
    assert all(can_become(start, outcome) for outcome in ENDED)


def test_an_outcome_may_be_recorded_again_or_differently():
    # The completion function hears of one job twice (its event and the state machine) and retries failures.
    assert all(can_become(ended, outcome) for ended in ENDED for outcome in ENDED)


def test_a_pending_run_moves_through_in_progress_to_completed(runs):
    # GIVEN a recorded run
    runs.create("r1", dataset="d")

    # WHEN its job starts and completes
    runs.update("r1", status=IN_PROGRESS)
    runs.update("r1", status=COMPLETED, metrics={"error_rate": 0.1})

    # THEN the record says so
    run = runs.get("r1")
    assert run["status"] == COMPLETED and run["metrics"] == {"error_rate": 0.1}


def test_a_transition_the_table_refuses_is_a_conflict_and_changes_nothing(runs):
    # GIVEN a run that has ended
    runs.create("r1", status=STOPPED)

    # WHEN something would mark it in progress again
    with pytest.raises(Conflict, match="is Stopped: it cannot become InProgress"):
        runs.update("r1", status=IN_PROGRESS, started_at="later")

    # THEN it stays as it was
    run = runs.get("r1")
    assert run["status"] == STOPPED and "started_at" not in run


def test_fields_without_a_status_update_a_run_in_any_status(runs):
    runs.create("r1", status=COMPLETED)

    runs.update("r1", execution="arn:execution")

    assert runs.get("r1")["execution"] == "arn:execution"


def test_an_unknown_status_is_refused_before_anything_is_written(runs):
    with pytest.raises(ValueError, match="unknown run status"):
        runs.create("r1", status="Done")
    runs.create("r2")
    with pytest.raises(ValueError, match="unknown run status"):
        runs.update("r2", status="Stopping")


def test_updating_a_run_that_does_not_exist_fails_as_before(runs):
    with pytest.raises(AlreadyProcessed):
        runs.update("missing", status=FAILED)


def test_a_start_that_fails_marks_the_run_failed_with_why_and_propagates(runs):
    # GIVEN a recorded run whose work cannot be started
    runs.create("r1")

    def throttled():
        raise TransientError("ThrottlingException")

    # WHEN it is started
    with pytest.raises(TransientError):
        start_run(runs, "r1", "the pipeline", throttled)

    # THEN the run is Failed, with the reason and when
    run = runs.get("r1")
    assert run["status"] == FAILED
    assert run["failure_reason"] == "the pipeline could not be started: ThrottlingException"
    assert run["finished_at"]


def test_a_start_that_succeeds_returns_what_was_started_and_leaves_the_run_alone(runs):
    runs.create("r1")

    assert start_run(runs, "r1", "the pipeline", lambda: "arn:execution") == "arn:execution"
    assert runs.get("r1")["status"] == PENDING


def test_run_ids_sort_by_time_and_fit_a_training_job_name():
    run_id = new_run_id()

    assert re.fullmatch(r"\d{8}-\d{6}-[0-9a-f]{4}", run_id)


def test_the_pipeline_input_carries_only_the_callers_hyperparameters_and_the_run_id():
    # WHEN the API starts a run with one hyperparameter
    execution_input = pipeline_input("ants-bees", {"epochs": 2}, run_id="r1", labels=["ants", "bees"])

    # THEN the state machine gets that and the run id, nothing else to train with
    assert execution_input == {"run_id": "r1", "dataset": "ants-bees", "labels": ["ants", "bees"], "query": "{label}",
                               "per_label": 150, "source": "ddg", "source_options": {},
                               "hyperparameters": {"epochs": 2, "run_id": "r1"}}


def test_without_a_run_id_the_execution_names_the_run():
    execution_input = pipeline_input("d", {}, source="s3", source_options={"uri": "s3://b/imports/d/"})

    assert "run_id" not in execution_input and execution_input["hyperparameters"] == {}
    assert execution_input["labels"] == [] and execution_input["source_options"] == {"uri": "s3://b/imports/d/"}
