"""The review queue of uploads: which predictions a person should look at, what they decided, and what it says
about the model in production.

A classified upload joins the queue when its verdict is unknown, when the margin between its two best
probabilities is under REVIEW_MARGIN, or when it falls in the random sample of REVIEW_SAMPLE_RATE that estimates
live accuracy. The sample is drawn from a hash of the image's s3:// URI, so a redelivered or reclassified image is
drawn the same way every time, and whatever the model answered: the sampled images are a uniform sample of the
uploads, the only ones the live accuracy estimate reads.

The queue is a sparse index of the predictions table (``review-queue``: ``review_state``, ``queued_at``). Besides
the classifier's attributes a record may hold:

    margin, sampled        the top-two margin, and whether the image is in the sample
    review_reason          why it was queued: unknown, low_margin or sample (the first that applies)
    review_state           "pending" while it waits; "sample" once a sampled image is decided, which keeps it in
                           the index for the live-accuracy estimate; absent otherwise (the index is sparse)
    queued_at              when it joined the queue (the index's sort key: oldest first)
    review                 labeled, none or skipped, once decided
    human_label            the label the person gave (labeled only), reviewed_by, reviewed_at
    reviewed_prediction    what the model had answered when the person decided (label, verdict, confidence,
                           model_version): a reclassification later never rewrites what was judged
    review_dataset, dataset_key, ingest   where the image went and what the dataset made of it (added, duplicate,
                           ambiguous, rejected)

Deciding is two conditional writes around the copy into the dataset, as imgclf.decisions does for the dataset
review: ``claim`` refuses an image decided already or being decided by someone else (ReviewConflict: a 409), and
``finish`` records the decision only for the claim that holds; ``release`` gives a claim back when the copy
failed. A claim older than CLAIM_TTL_S (its request died midway) may be taken over.

The classifier rewrites a record whole; it carries a decided review of the same content over to the new record,
and writes only if the review did not change since it read the record (``review_guard``), so no reclassification
or redelivery queues an image again that a person decided, or loses that decision.
"""

from __future__ import annotations

import hashlib
import math
import secrets
from collections import defaultdict
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime, timedelta
from statistics import NormalDist
from typing import Any

from boto3.dynamodb.conditions import Attr, Key

from . import aws, ddb
from .clock import now_iso
from .errors import AlreadyProcessed, Conflict, NotFound

INDEX = "review-queue"
PENDING, SAMPLE = "pending", "sample"  # the values of review_state, the index's partition key
UNKNOWN, LOW_MARGIN, SAMPLED = "unknown", "low_margin", "sample"
REASONS = (UNKNOWN, LOW_MARGIN, SAMPLED)
LABELED, NONE, SKIPPED = "labeled", "none", "skipped"
ACTIONS = {"label": LABELED, "none": NONE, "skip": SKIPPED}
CLAIM_TTL_S = 120  # longer than API Gateway's 29 s: a claim this old was left by a request that died
# What a decided review is made of: carried over when the classifier rewrites the record of the same content.
REVIEW_FIELDS = ("review", "human_label", "reviewed_by", "reviewed_at", "reviewed_prediction", "review_reason",
                 "queued_at", "review_dataset", "dataset_key", "ingest", "review_signed_by")
_CLAIM_FIELDS = ("review_claim", "review_claimed_at", "review_claimed_by")


class ReviewConflict(Conflict):
    """Someone decided the image already, or is deciding it now."""

    code = "already_reviewed"

    def __init__(self, record: Mapping[str, Any]):
        super().__init__(dict(record))
        self.record = dict(record)

    def __str__(self) -> str:
        r = self.record
        key = r.get("key") or r.get("image")
        if r.get("review"):
            what = f"labeled it {r['human_label']!r}" if r.get("human_label") else f"answered {r['review']}"
            return f"{key!r}: {r.get('reviewed_by') or 'someone'} {what} at {r.get('reviewed_at', '?')}"
        return f"{key!r}: {r.get('review_claimed_by') or 'someone'} is deciding it now; reload to see it"


# ---------------------------------------------------------------- the queue's rules
def margin(probabilities: Mapping[str, float]) -> float:
    """The best probability minus the second best (1.0 for a single class)."""
    best = sorted(probabilities.values(), reverse=True)[:2]
    if not best:
        return 0.0
    return float(best[0] - (best[1] if len(best) > 1 else 0.0))


def in_sample(image: str, rate: float) -> bool:
    """Whether an image (its s3:// URI) is in the random sample: the same answer for the same image, always."""
    if rate <= 0:
        return False
    draw = int.from_bytes(hashlib.sha256(image.encode()).digest()[:8], "big") / 2**64
    return draw < rate


def queue_reason(verdict: str | None, top_margin: float, sampled: bool, *, margin_limit: float) -> str | None:
    """Why a prediction joins the queue (unknown, low_margin or sample, the first that applies), or None."""
    if verdict == UNKNOWN:
        return UNKNOWN
    if top_margin < margin_limit:
        return LOW_MARGIN
    return SAMPLED if sampled else None


def review_fields(record: Mapping[str, Any], stored: Mapping[str, Any] | None, *, margin_limit: float,
                  sample_rate: float, now: str) -> dict[str, Any]:
    """The queue's attributes of a classified record about to replace `stored` (None: the first record).

    A decided review of the same content (same ETag) is carried over as it is: the image never queues again. A
    new object under the key starts afresh. An image still pending keeps its place (queued_at) when it stays.
    """
    if record.get("status") != "classified" or not record.get("probabilities"):
        return {}
    top_margin = margin(record["probabilities"])
    sampled = in_sample(record["image"], sample_rate)
    fields: dict[str, Any] = {"margin": round(top_margin, 6), "sampled": sampled}
    same_content = bool(stored) and stored.get("etag") == record.get("etag")
    if same_content and stored.get("review"):
        fields.update({name: stored[name] for name in REVIEW_FIELDS if stored.get(name) is not None})
        if stored.get("review_state") == SAMPLE:
            fields["review_state"] = SAMPLE
        return fields
    if same_content and stored.get("review_claim"):
        # Someone is deciding it right now: their claim stays valid, so their decision can be recorded.
        fields.update({name: stored[name] for name in _CLAIM_FIELDS if stored.get(name) is not None})
    reason = queue_reason(record.get("verdict"), top_margin, sampled, margin_limit=margin_limit)
    if reason:
        waiting = same_content and stored.get("review_state") == PENDING and stored.get("queued_at")
        fields.update(review_state=PENDING, review_reason=reason, queued_at=stored["queued_at"] if waiting else now)
    return fields


def review_guard(stored: Mapping[str, Any] | None) -> tuple[str, dict[str, str], dict[str, Any]]:
    """The condition (with its names and values) under which the classifier may replace `stored`: nobody
    decided the image, or began to, since it was read."""
    names = {"#review": "review", "#claim": "review_claim"}
    if stored and stored.get("review"):
        return "#review = :review", {"#review": "review"}, {":review": stored["review"]}
    if stored and stored.get("review_claim"):
        return "attribute_not_exists(#review) AND #claim = :claim", names, {":claim": stored["review_claim"]}
    return "attribute_not_exists(#review) AND attribute_not_exists(#claim)", names, {}


# ---------------------------------------------------------------- live accuracy
def judged_correct(reviewed_prediction: Mapping[str, Any], review: str, human_label: str | None) -> bool:
    """Whether the model's answer was right by the person's decision: the label they gave, or "none of these"
    when the model said unknown. An unknown verdict on an image of a known label counts as wrong."""
    verdict = reviewed_prediction.get("verdict") or "label"
    if review == NONE:
        return verdict == UNKNOWN
    return review == LABELED and verdict != UNKNOWN and reviewed_prediction.get("label") == human_label


def wilson_interval(correct: int, n: int, confidence: float = 0.95) -> tuple[float, float]:
    """The Wilson score interval of a proportion: (low, high); (0, 1) with no observations."""
    if n <= 0:
        return 0.0, 1.0
    z = NormalDist().inv_cdf(0.5 + confidence / 2)
    p = correct / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z / (1 + z * z / n) * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    return max(0.0, centre - half), min(1.0, centre + half)


def live_accuracy(records: Iterable[Mapping[str, Any]], *, confidence: float = 0.95) -> list[dict[str, Any]]:
    """The accuracy estimate per model version from decided, sampled records (labeled or "none of these"; skipped
    ones say nothing), newest version first: n, correct, abstained, accuracy and its Wilson interval."""
    tally: dict[str, dict[str, int]] = defaultdict(lambda: {"n": 0, "correct": 0, "abstained": 0})
    for record in records:
        if not record.get("sampled") or record.get("review") not in (LABELED, NONE):
            continue
        answered = record.get("reviewed_prediction") or {}
        version = answered.get("model_version") or record.get("model_version") or "unknown"
        counts = tally[version]
        counts["n"] += 1
        counts["correct"] += judged_correct(answered, record["review"], record.get("human_label"))
        counts["abstained"] += (answered.get("verdict") == UNKNOWN)
    estimates = []
    for version in sorted(tally, reverse=True):
        counts = tally[version]
        low, high = wilson_interval(counts["correct"], counts["n"], confidence)
        estimates.append({"model_version": version, **counts, "accuracy": counts["correct"] / counts["n"],
                          "low": low, "high": high, "confidence": confidence})
    return estimates


# ---------------------------------------------------------------- the table
class ReviewQueue:
    """The queue's reads and the review's conditional writes on the predictions table."""

    def __init__(self, table_name: str):
        self.table_name = table_name

    def get(self, image: str) -> dict | None:
        return ddb.get_item(self.table_name, {"image": image})

    def pending(self, limit: int, start: dict | None = None, reason: str | None = None) -> tuple[list, dict | None]:
        """One page of the queue, oldest first (a Query of the sparse index, never a scan)."""
        query: dict[str, Any] = {"IndexName": INDEX, "KeyConditionExpression": Key("review_state").eq(PENDING),
                                 "ScanIndexForward": True}
        if reason:
            query["FilterExpression"] = Attr("review_reason").eq(reason)
        return ddb.query_page(self.table_name, limit, start, **query)

    def depth(self) -> int:
        """How many images wait in the queue (a counting Query of the index)."""
        total, start = 0, None
        with aws.translated(f"count the queue of {self.table_name}"):
            while True:
                kwargs = {"ExclusiveStartKey": start} if start else {}
                page = ddb.table(self.table_name).query(IndexName=INDEX, Select="COUNT",
                                                        KeyConditionExpression=Key("review_state").eq(PENDING),
                                                        **kwargs)
                total += page.get("Count", 0)
                start = page.get("LastEvaluatedKey")
                if not start:
                    return total

    def decided_samples(self) -> list[dict]:
        """Every decided record of the sample (the index's other partition), for the live-accuracy estimate."""
        items, start = [], None
        while True:
            page, start = ddb.query_page(self.table_name, 1000, start, IndexName=INDEX,
                                         KeyConditionExpression=Key("review_state").eq(SAMPLE))
            items += page
            if not start:
                return items

    def claim(self, image: str, *, by: str, now: datetime | None = None) -> dict:
        """Claim the decision of an image; the record as claimed. NotFound without a classified record,
        ReviewConflict when it is decided or being decided."""
        record = self.get(image)
        if not record or record.get("status") != "classified":
            raise NotFound(f"no classified upload {image!r}: only classified uploads can be reviewed")
        if record.get("review"):
            raise ReviewConflict(record)
        now = now or datetime.now(UTC)
        claim = secrets.token_hex(8)
        expired = now - timedelta(seconds=CLAIM_TTL_S)
        values = {":claim": claim, ":at": _stamp(now), ":by": by, ":expired": _stamp(expired),
                  ":etag": record.get("etag") or ""}
        try:
            with aws.translated(f"claim {image}"):
                ddb.table(self.table_name).update_item(
                    Key={"image": image},
                    UpdateExpression="SET #claim = :claim, #claimed_at = :at, #claimed_by = :by",
                    ConditionExpression="attribute_exists(#image) AND attribute_not_exists(#review) AND "
                                        "(attribute_not_exists(#claim) OR #claimed_at < :expired) AND "
                                        "(attribute_not_exists(#etag) OR #etag = :etag)",
                    ExpressionAttributeNames={"#image": "image", "#review": "review", "#claim": "review_claim",
                                              "#claimed_at": "review_claimed_at", "#claimed_by": "review_claimed_by",
                                              "#etag": "etag"},
                    ExpressionAttributeValues=values)
        except AlreadyProcessed:
            raise ReviewConflict(self.get(image) or record) from None
        return {**record, "review_claim": claim, "review_claimed_at": values[":at"], "review_claimed_by": by}

    def finish(self, claimed: Mapping[str, Any], *, action: str, by: str, human_label: str | None = None,
               dataset: str | None = None, dataset_key: str | None = None, ingest: str | None = None,
               signed_by: str | None = None, at: str | None = None) -> dict:
        """Record the decision of a claimed image, which leaves the queue (a sampled one stays in the index for
        the estimate); ReviewConflict when the claim was taken over meanwhile."""
        review = ACTIONS[action]
        fields: dict[str, Any] = {
            "review": review, "reviewed_by": by, "reviewed_at": at or now_iso(), "human_label": human_label,
            "review_dataset": dataset, "dataset_key": dataset_key, "ingest": ingest, "review_signed_by": signed_by,
            "reviewed_prediction": {name: claimed.get(name) for name in
                                    ("label", "verdict", "confidence", "model_version", "unknown_reason")
                                    if claimed.get(name) is not None},
        }
        fields = {name: value for name, value in fields.items() if value is not None}
        keep_in_index = claimed.get("sampled") and review in (LABELED, NONE)
        if keep_in_index:
            fields["review_state"] = SAMPLE
            fields.setdefault("queued_at", claimed.get("queued_at") or fields["reviewed_at"])
        names = {f"#f{i}": name for i, name in enumerate(fields)}
        values = {f":v{i}": ddb.to_dynamo(value) for i, value in enumerate(fields.values())}
        removed = [*_CLAIM_FIELDS, *([] if keep_in_index else ["review_state"])]
        update = ("SET " + ", ".join(f"{n} = :v{i}" for i, n in enumerate(names)) + " REMOVE " + ", ".join(removed))
        try:
            with aws.translated(f"record the review of {claimed['image']}"):
                ddb.table(self.table_name).update_item(
                    Key={"image": claimed["image"]}, UpdateExpression=update,
                    ConditionExpression="#claim = :claim AND attribute_not_exists(#review)",
                    ExpressionAttributeNames={**names, "#claim": "review_claim", "#review": "review"},
                    ExpressionAttributeValues={**values, ":claim": claimed["review_claim"]})
        except AlreadyProcessed:
            raise ReviewConflict(self.get(claimed["image"]) or claimed) from None
        record = {**claimed, **fields}
        for name in removed:
            record.pop(name, None)
        return record

    def release(self, claimed: Mapping[str, Any]) -> None:
        """Give a claim back (its copy into the dataset failed); nothing when it was taken over already."""
        try:
            with aws.translated(f"release the review claim of {claimed['image']}"):
                ddb.table(self.table_name).update_item(
                    Key={"image": claimed["image"]}, UpdateExpression="REMOVE " + ", ".join(_CLAIM_FIELDS),
                    ConditionExpression="#claim = :claim", ExpressionAttributeNames={"#claim": "review_claim"},
                    ExpressionAttributeValues={":claim": claimed["review_claim"]})
        except AlreadyProcessed:
            pass


# ---------------------------------------------------------------- retraining on its own
def counter_id(dataset: str) -> str:
    """The runs table item that counts a dataset's labeled uploads since its last run ('@' starts no run id)."""
    return f"@labels-since-run/{dataset}"


class LabelCounter:
    """Labeled uploads added to a dataset since its last training run: a set of image URIs in one item of the
    runs table, so a label counted twice (a retried request) still counts once; reset when a run starts."""

    def __init__(self, table_name: str):
        self.table_name = table_name

    def add(self, dataset: str, image: str) -> int:
        """Count one image; how many the dataset has now."""
        with aws.translated(f"count a label of {dataset}"):
            item = ddb.table(self.table_name).update_item(
                Key={"run_id": counter_id(dataset)}, UpdateExpression="ADD labeled :image SET for_dataset = :dataset",
                ExpressionAttributeValues={":image": {image}, ":dataset": dataset},
                ReturnValues="ALL_NEW")["Attributes"]
        return len(item.get("labeled") or ())

    def get(self, dataset: str) -> dict:
        item = ddb.get_item(self.table_name, {"run_id": counter_id(dataset)}) or {}
        return {"dataset": dataset, "labeled": len(item.get("labeled") or ()),
                "retrain_requested_at": item.get("retrain_requested_at"), "last_run_id": item.get("last_run_id"),
                "last_run_at": item.get("last_run_at")}

    def request_retrain(self, dataset: str, *, at_least: int, stale_after_s: int = 3600) -> str | None:
        """Mark the dataset's retraining requested when it has at least `at_least` labels and no request is
        pending (or the last one is stale: its start was lost); the request's id, or None when not for this call."""
        now = datetime.now(UTC)
        request = secrets.token_hex(8)
        try:
            with aws.translated(f"request a retraining of {dataset}"):
                ddb.table(self.table_name).update_item(
                    Key={"run_id": counter_id(dataset)},
                    UpdateExpression="SET retrain_requested_at = :now, retrain_request = :request",
                    ConditionExpression="size(labeled) >= :n AND (attribute_not_exists(retrain_requested_at) OR "
                                        "retrain_requested_at < :stale)",
                    ExpressionAttributeValues={":now": _stamp(now), ":request": request, ":n": at_least,
                                               ":stale": _stamp(now - timedelta(seconds=stale_after_s))})
        except AlreadyProcessed:
            return None
        return request

    def withdraw(self, dataset: str, request: str) -> None:
        """Take back a retraining request whose start failed, so the next label tries again."""
        try:
            with aws.translated(f"withdraw the retraining request of {dataset}"):
                ddb.table(self.table_name).update_item(
                    Key={"run_id": counter_id(dataset)},
                    UpdateExpression="REMOVE retrain_requested_at, retrain_request",
                    ConditionExpression="retrain_request = :request", ExpressionAttributeValues={":request": request})
        except AlreadyProcessed:
            pass

    def reset(self, dataset: str, run_id: str) -> None:
        """A run of the dataset starts: it trains on every label so far, so the count starts again."""
        with aws.translated(f"reset the label count of {dataset}"):
            ddb.table(self.table_name).update_item(
                Key={"run_id": counter_id(dataset)},
                UpdateExpression="SET last_run_id = :run, last_run_at = :now, for_dataset = :dataset "
                                 "REMOVE labeled, retrain_requested_at, retrain_request",
                ExpressionAttributeValues={":run": run_id, ":now": now_iso(), ":dataset": dataset})


def _stamp(moment: datetime) -> str:
    return moment.isoformat(timespec="milliseconds")
