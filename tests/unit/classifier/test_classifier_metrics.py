"""The classifier's metrics (EMF): the counts the dashboard's uploads and unknown rate are made of."""

from __future__ import annotations

from imgclf.events import ObjectRef
from imgclf.inference import Prediction
from imgclf_classifier import handler
from imgclf_classifier.service import CLASSIFIED, FAILED, REJECTED, BatchResult, Job, Outcome


def outcome(n: int, status: str, verdict: str | None = None) -> Outcome:
    prediction = Prediction(label="ants", confidence=0.6, probabilities={"ants": 0.6, "bees": 0.4},
                            verdict=verdict, model_version="v1") if verdict else None
    return Outcome(Job(ObjectRef("data", f"uploads/{n}.jpg")), status, prediction=prediction, latency_ms=12.5)


def test_a_batch_reports_classified_unknown_rejected_and_failed_images(monkeypatch):
    added = []
    monkeypatch.setattr(handler.metrics, "add_metric", lambda name, unit, value: added.append((name, value)))
    result = BatchResult(outcomes=[outcome(1, CLASSIFIED, "label"), outcome(2, CLASSIFIED, "unknown"),
                                   outcome(3, CLASSIFIED, "unknown"), outcome(4, REJECTED), outcome(5, FAILED)])

    handler._report(result)

    counts = {name: value for name, value in added if name != "latency"}
    assert counts == {"classified": 3, "unknown": 2, "rejected": 1, "failed": 1, "skipped": 0, "bad_messages": 0}
    assert [value for name, value in added if name == "latency"] == [12.5, 12.5, 12.5]
