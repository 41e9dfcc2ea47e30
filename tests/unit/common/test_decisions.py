"""The review's decisions: claimed with a conditional write, applied or given back, superseded by a new label."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from imgclf import decisions as module
from imgclf.decisions import DecisionConflict, Decisions, in_force, superseded
from imgclf.settings import get_settings

DATASET = "faces"
SHA = "ab" * 32


@pytest.fixture
def store(template_tables) -> Decisions:
    return Decisions(get_settings().decisions_table)


def claim(store: Decisions, action: str = "keep", label: str = "happy", to_label: str | None = None,
          by: str = "alice"):
    return store.claim(DATASET, SHA, action=action, label=label, to_label=to_label, key="datasets/faces/happy/x.jpg",
                       by=by, signed_by="arn:aws:iam::123456789012:user/ops", run_id="r1")


def test_a_claim_is_pending_until_finished_and_records_who_what_and_where(store):
    # GIVEN no decision; WHEN one is claimed
    claimed = claim(store, "relabel", to_label="sad")

    # THEN it is stored pending, with the label before and after, who signed, and the run
    stored = store.get(DATASET, SHA)
    assert stored["status"] == "pending" and stored["claim"] == claimed["claim"]
    assert (stored["label"], stored["to_label"], stored["decided_label"]) == ("happy", "sad", "sad")
    assert stored["signed_by"].endswith("user/ops") and stored["run_id"] == "r1"

    # WHEN it is finished, THEN it is applied
    store.finish(claimed)
    assert store.get(DATASET, SHA)["status"] == "applied"
    assert list(store.of_dataset(DATASET)) == [SHA]


def test_a_different_decision_of_a_decided_image_is_a_conflict_and_changes_nothing(store):
    store.finish(claim(store, "keep", by="alice"))

    with pytest.raises(DecisionConflict) as raised:
        claim(store, "delete", by="bob")

    assert raised.value.code == "decision_conflict" and "alice" in str(raised.value)
    assert store.get(DATASET, SHA)["by"] == "alice"


def test_a_pending_claim_blocks_others_until_it_expires(store, monkeypatch):
    claim(store, "keep", by="alice")
    with pytest.raises(DecisionConflict, match="is deciding"):
        claim(store, "delete", by="bob")

    # WHEN the claim is older than its time to live (its request died), THEN it may be claimed again
    later = datetime.now(UTC) + timedelta(seconds=module.CLAIM_TTL_S + 1)
    monkeypatch.setattr(module, "_now", lambda: later)
    assert claim(store, "delete", by="bob")["by"] == "bob"


def test_the_same_decision_again_is_nothing_to_do(store):
    store.finish(claim(store, "relabel", to_label="sad"))

    assert claim(store, "relabel", to_label="sad", by="bob") is None
    assert store.get(DATASET, SHA)["by"] == "alice"


def test_a_decision_of_a_label_changed_since_may_be_replaced(store):
    # GIVEN a keep of a happy image, which someone then moved to "sad" outside the review
    store.finish(claim(store, "keep"))

    # WHEN the image, now sad, is decided again, THEN the new decision replaces the superseded one
    replaced = claim(store, "delete", label="sad", by="bob")
    assert replaced["by"] == "bob" and store.get(DATASET, SHA)["label"] == "sad"


def test_a_released_claim_is_gone_and_a_stale_release_keeps_the_newer_claim(store):
    first = claim(store)
    store.release(first)
    assert store.get(DATASET, SHA) is None

    second = claim(store, by="bob")
    store.release(first)  # the first claim's token no longer matches
    assert store.get(DATASET, SHA)["claim"] == second["claim"]


@pytest.mark.parametrize(("decision", "label_now", "hidden"), [
    ({"status": "applied", "label": "happy", "decided_label": "happy"}, "happy", True),
    ({"status": "applied", "label": "happy", "decided_label": "sad"}, "sad", True),
    ({"status": "applied", "label": "happy", "decided_label": ""}, None, True),
    ({"status": "applied", "label": "happy", "decided_label": "happy"}, "angry", False),
    (None, "happy", False),
])
def test_a_decision_hides_its_image_until_the_label_changes(decision, label_now, hidden):
    assert in_force(decision, label_now) is hidden
    if decision:
        assert superseded(decision, label_now) is not hidden
