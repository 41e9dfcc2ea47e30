"""The promotion guard when new data brings a label: compared on the labels both know, the new label's recall."""

from __future__ import annotations

import pytest

from imgclf.registry import ModelRegistry, compare_label_sets, shared_label_error
from imgclf.settings import get_settings
from imgclf_training.promotion import promote


def per_class(**recalls: tuple[float, int]) -> dict:
    return {"per_class": {label: {"recall": recall, "support": support, "precision": None}
                          for label, (recall, support) in recalls.items()}}


@pytest.fixture
def registry(template_tables) -> ModelRegistry:
    """A registry whose active model knows ants and bees: 90% right on 20 ants, 80% on 10 bees."""
    registry = ModelRegistry(get_settings().models_table)
    registry.register("two", artifacts={}, classes=["ants", "bees"],
                      metrics={"error_rate": 0.1333, **per_class(ants=(0.9, 20), bees=(0.8, 10))})
    assert promote(registry, "two")["promoted"]
    return registry


def test_shared_label_error_weighs_each_labels_recall_by_its_support():
    metrics = per_class(ants=(0.9, 20), bees=(0.8, 10), wasps=(0.0, 5))

    assert shared_label_error(metrics, ["ants", "bees"]) == pytest.approx(4 / 30)
    assert shared_label_error(metrics, ["ants"]) == pytest.approx(0.1)
    assert shared_label_error({}, ["ants"]) is None


def test_a_candidate_with_a_new_label_is_compared_on_the_shared_labels(registry):
    # GIVEN a candidate trained with a third label, as good on ants and bees (its overall error is higher)
    registry.register("three", artifacts={}, classes=["ants", "bees", "wasps"],
                      metrics={"error_rate": 0.2, **per_class(ants=(0.9, 20), bees=(0.8, 10), wasps=(0.6, 5))})

    # WHEN the pipeline's guard decides
    result = promote(registry, "three")

    # THEN it is promoted, and the answer reports both errors on ants and bees and the new label's recall
    assert result["promoted"] and registry.active().version == "three"
    comparison = result["comparison"]
    assert comparison["shared_labels"] == ["ants", "bees"]
    assert comparison["candidate_error"] == pytest.approx(comparison["active_error"])
    assert comparison["new_labels"] == {"wasps": {"recall": 0.6, "support": 5}}
    assert comparison["dropped_labels"] == []


def test_a_candidate_worse_on_the_shared_labels_is_refused_with_the_comparison(registry):
    # GIVEN a candidate that now mistakes many ants for the new label
    registry.register("confused", artifacts={}, classes=["ants", "bees", "wasps"],
                      metrics={"error_rate": 0.3, **per_class(ants=(0.5, 20), bees=(0.8, 10), wasps=(0.9, 5))})

    # WHEN the guard decides
    result = promote(registry, "confused")

    # THEN the active model stays, and the refusal says why, with the numbers
    assert not result["promoted"] and registry.active().version == "two"
    assert "labels both know" in result["reason"]
    assert result["comparison"]["candidate_error"] == pytest.approx(12 / 30)
    assert result["comparison"]["new_labels"]["wasps"]["recall"] == 0.9


def test_comparing_label_sets_without_per_class_metrics_compares_nothing():
    comparison = compare_label_sets({"classes": ["a", "b", "c"], "metrics": {}}, {"classes": ["a", "b"]})

    assert comparison["candidate_error"] is None and comparison["new_labels"] == {"c": {"recall": None,
                                                                                       "support": None}}


def test_the_tolerance_is_the_stacks_to_choose(registry):
    # GIVEN the candidate that is worse on the shared labels by 0.27
    registry.register("confused", artifacts={}, classes=["ants", "bees", "wasps"],
                      metrics={"error_rate": 0.3, **per_class(ants=(0.5, 20), bees=(0.8, 10), wasps=(0.9, 5))})

    # WHEN the stack's PromotionTolerance allows that much
    result = promote(registry, "confused", tolerance=0.3)

    # THEN it is promoted, and the comparison says with which tolerance
    assert result["promoted"] and result["comparison"]["tolerance"] == 0.3
