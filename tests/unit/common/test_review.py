"""The review queue's rules, the carry-over of decisions, and the live-accuracy estimate, with known answers."""

from __future__ import annotations

import pytest

from imgclf.review import (
    LOW_MARGIN,
    PENDING,
    SAMPLE,
    SAMPLED,
    UNKNOWN,
    in_sample,
    judged_correct,
    live_accuracy,
    margin,
    queue_reason,
    review_fields,
    review_guard,
    wilson_interval,
)

NOW = "2026-12-01T10:00:00.000+00:00"
LATER = "2026-12-02T10:00:00.000+00:00"


def classified(probabilities: dict[str, float], *, verdict: str = "label", etag: str = "e1",
               image: str = "s3://b/uploads/a.jpg") -> dict:
    top = max(probabilities, key=probabilities.get)
    return {"image": image, "etag": etag, "status": "classified", "label": top, "probabilities": probabilities,
            "verdict": verdict, "model_version": "v2"}


# ---------------------------------------------------------------- the queue's rules
def test_margin_is_the_two_best_probabilities_difference():
    assert margin({"a": 0.5, "b": 0.3, "c": 0.2}) == pytest.approx(0.2)
    assert margin({"a": 0.9}) == pytest.approx(0.9)
    assert margin({}) == 0.0


def test_queue_reason_takes_the_first_that_applies():
    assert queue_reason("unknown", 0.05, True, margin_limit=0.2) == UNKNOWN
    assert queue_reason("label", 0.05, True, margin_limit=0.2) == LOW_MARGIN
    assert queue_reason("label", 0.5, True, margin_limit=0.2) == SAMPLED
    assert queue_reason("label", 0.5, False, margin_limit=0.2) is None
    assert queue_reason("label", 0.2, False, margin_limit=0.2) is None  # under the margin, not at it


def test_the_sample_is_the_same_for_an_image_every_time_and_near_its_rate():
    images = [f"s3://b/uploads/{i}.jpg" for i in range(20_000)]

    drawn = [image for image in images if in_sample(image, 0.05)]

    assert drawn == [image for image in images if in_sample(image, 0.05)]
    assert 0.045 < len(drawn) / len(images) < 0.055
    assert set(drawn) <= {image for image in images if in_sample(image, 0.10)}  # a larger rate keeps these
    assert not any(in_sample(image, 0.0) for image in images[:100])


def test_a_first_uncertain_record_is_queued_now():
    fields = review_fields(classified({"a": 0.55, "b": 0.45}), None, margin_limit=0.2, sample_rate=0.0, now=NOW)

    assert fields == {"margin": pytest.approx(0.1), "sampled": False, "review_state": PENDING,
                      "review_reason": LOW_MARGIN, "queued_at": NOW}


def test_a_sure_record_is_not_queued_and_a_rejected_one_has_no_review_fields():
    sure = review_fields(classified({"a": 0.95, "b": 0.05}), None, margin_limit=0.2, sample_rate=0.0, now=NOW)
    rejected = review_fields({"image": "s3://b/uploads/x.jpg", "status": "rejected"}, None, margin_limit=0.2,
                             sample_rate=1.0, now=NOW)

    assert "review_state" not in sure and sure["sampled"] is False
    assert rejected == {}


def test_a_pending_record_keeps_its_place_when_classified_again():
    stored = {**classified({"a": 0.55, "b": 0.45}), "review_state": PENDING, "queued_at": NOW}

    fields = review_fields(classified({"a": 0.51, "b": 0.49}), stored, margin_limit=0.2, sample_rate=0.0, now=LATER)

    assert (fields["review_state"], fields["queued_at"]) == (PENDING, NOW)


def test_a_decided_record_carries_its_decision_over_and_is_never_queued_again():
    decided = {**classified({"a": 0.55, "b": 0.45}), "review": "labeled", "human_label": "c", "reviewed_by": "ann",
               "reviewed_at": NOW, "review_reason": LOW_MARGIN, "queued_at": NOW,
               "reviewed_prediction": {"label": "a", "verdict": "label", "model_version": "v1"}}

    fields = review_fields(classified({"a": 0.51, "b": 0.49}, verdict="unknown"), decided, margin_limit=0.2,
                           sample_rate=0.0, now=LATER)

    assert "review_state" not in fields
    assert (fields["review"], fields["human_label"], fields["reviewed_by"]) == ("labeled", "c", "ann")
    assert fields["reviewed_prediction"]["model_version"] == "v1"


def test_a_decided_sample_stays_in_the_estimate():
    decided = {**classified({"a": 0.9, "b": 0.1}), "review": "labeled", "human_label": "a", "review_state": SAMPLE,
               "queued_at": NOW}

    fields = review_fields(classified({"a": 0.9, "b": 0.1}), decided, margin_limit=0.2, sample_rate=0.0, now=LATER)

    assert fields["review_state"] == SAMPLE


def test_new_content_under_a_decided_key_starts_afresh():
    decided = {**classified({"a": 0.55, "b": 0.45}), "review": "labeled", "human_label": "c", "queued_at": NOW}

    fields = review_fields(classified({"a": 0.55, "b": 0.45}, etag="e2"), decided, margin_limit=0.2,
                           sample_rate=0.0, now=LATER)

    assert "review" not in fields and (fields["review_state"], fields["queued_at"]) == (PENDING, LATER)


def test_a_claim_in_progress_is_carried_over_for_its_decision_to_land():
    claimed = {**classified({"a": 0.55, "b": 0.45}), "review_state": PENDING, "queued_at": NOW,
               "review_claim": "c1", "review_claimed_at": NOW, "review_claimed_by": "ann"}

    fields = review_fields(classified({"a": 0.55, "b": 0.45}), claimed, margin_limit=0.2, sample_rate=0.0, now=LATER)

    assert fields["review_claim"] == "c1" and fields["review_claimed_by"] == "ann"


def test_the_guard_matches_what_was_read():
    assert review_guard(None)[0] == "attribute_not_exists(#review) AND attribute_not_exists(#claim)"
    assert review_guard({"review": "none"}) == ("#review = :review", {"#review": "review"}, {":review": "none"})
    condition, names, values = review_guard({"review_claim": "c1"})
    assert condition == "attribute_not_exists(#review) AND #claim = :claim" and values == {":claim": "c1"}


# ---------------------------------------------------------------- live accuracy
@pytest.mark.parametrize(("correct", "n", "low", "high"), [
    # Known answers of the Wilson score interval at 95% (z = 1.959964).
    (2, 3, 0.2077, 0.9385),
    (8, 10, 0.4902, 0.9433),
    (0, 10, 0.0, 0.2775),
    (10, 10, 0.7225, 1.0),
    (45, 50, 0.7864, 0.9565),
])
def test_wilson_interval_known_answers(correct, n, low, high):
    assert wilson_interval(correct, n) == pytest.approx((low, high), abs=1e-4)


def test_wilson_interval_agrees_with_scipy():
    stats = pytest.importorskip("scipy.stats")
    for correct, n in ((1, 7), (13, 40), (97, 100), (250, 1000)):
        expected = stats.binomtest(correct, n).proportion_ci(confidence_level=0.9, method="wilson")
        assert wilson_interval(correct, n, 0.9) == pytest.approx((expected.low, expected.high), abs=1e-9)


def test_wilson_interval_without_observations_says_nothing():
    assert wilson_interval(0, 0) == (0.0, 1.0)


def decided(version: str, verdict: str, label: str, review: str, human: str | None, sampled: bool = True) -> dict:
    return {"sampled": sampled, "review": review, "human_label": human, "model_version": "later",
            "reviewed_prediction": {"model_version": version, "verdict": verdict, "label": label}}


def test_judged_correct():
    assert judged_correct({"verdict": "label", "label": "a"}, "labeled", "a")
    assert not judged_correct({"verdict": "label", "label": "a"}, "labeled", "b")
    assert not judged_correct({"verdict": "unknown", "label": "a"}, "labeled", "a")  # abstained on a known label
    assert judged_correct({"verdict": "unknown", "label": "a"}, "none", None)  # rightly said it does not know
    assert not judged_correct({"verdict": "label", "label": "a"}, "none", None)


def test_live_accuracy_per_version_from_sampled_decisions_only():
    records = [
        decided("v1", "label", "a", "labeled", "a"),
        decided("v1", "label", "a", "labeled", "b"),
        decided("v1", "unknown", "a", "none", None),
        decided("v1", "label", "a", "labeled", "a"),
        decided("v2", "label", "b", "labeled", "b"),
        decided("v1", "label", "a", "labeled", "b", sampled=False),  # not in the sample
        decided("v1", "label", "a", "skipped", None),  # skipped: says nothing
    ]

    estimates = live_accuracy(records)

    assert [(e["model_version"], e["n"], e["correct"], e["abstained"]) for e in estimates] == [
        ("v2", 1, 1, 0), ("v1", 4, 3, 1)]
    v1 = estimates[1]
    assert v1["accuracy"] == 0.75
    assert (v1["low"], v1["high"]) == pytest.approx(wilson_interval(3, 4))
