"""The request and response bodies of the API, as pydantic models (they also make the OpenAPI document)."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, model_validator

from imgclf import keys
from imgclf.runs import STATUSES

# Name rules are the key layout's: whatever would not be a single S3 key segment is refused here already.
DatasetName = Annotated[str, Field(min_length=1, max_length=100, examples=["ants-bees"]),
                        AfterValidator(lambda v: keys.check_name("dataset", v))]
Label = Annotated[str, Field(min_length=1, max_length=100, examples=["ants"]),
                  AfterValidator(lambda v: keys.check_name("label", v))]
IMAGE_MEDIA_TYPES = ("image/jpeg", "image/png", "image/gif", "image/webp", "image/bmp")
ImageMediaType = Literal["image/jpeg", "image/png", "image/gif", "image/webp", "image/bmp"]


class Strict(BaseModel):
    """Request bodies refuse unknown fields, so a misspelt option fails instead of being ignored."""

    model_config = ConfigDict(extra="forbid")


# ---------------------------------------------------------------- errors
class ErrorDetail(BaseModel):
    code: str = Field(description="Stable, machine-readable error code", examples=["image_rejected"])
    message: str = Field(description="What went wrong, for people")
    reason: str | None = Field(None, description="Why an image was rejected (not_an_image, truncated, ...)")
    request_id: str | None = Field(None, description="Quote it when reporting a server error")


class ErrorResponse(BaseModel):
    """The one error shape of every route."""

    error: ErrorDetail


# ---------------------------------------------------------------- classify
class ClassifyJsonRequest(Strict):
    """POST /classify as JSON: the image inline in base64, or an object already uploaded under uploads/."""

    image_base64: str | None = Field(None, description="The image file, base64 (a data: URL prefix is allowed)")
    s3_uri: str | None = Field(None, description="s3://{data bucket}/uploads/... (only this stack's uploads)",
                               examples=["s3://imgclf-dev-data-123456789012-us-east-1/uploads/cat.jpg"])

    @model_validator(mode="after")
    def _exactly_one(self) -> ClassifyJsonRequest:
        if (self.image_base64 is None) == (self.s3_uri is None):
            raise ValueError("give exactly one of image_base64 and s3_uri")
        return self


class ImageInfo(BaseModel):
    width: int
    height: int
    bytes: int


class ClassifyResponse(BaseModel):
    label: str = Field(description="The most likely class, kept when the verdict is unknown")
    confidence: float = Field(ge=0, le=1, description="The probability of that class")
    probabilities: dict[str, float] = Field(description="Every class's probability, in the model's class order; "
                                                        "temperature-scaled where calibrated is true")
    verdict: Literal["label", "unknown"] = Field(
        "label", description="label: the top class reached its threshold; unknown: the model does not know")
    unknown_reason: Literal["low_confidence", "out_of_distribution"] | None = Field(
        None, description="Why the verdict is unknown: out_of_distribution (the image is unlike every label's "
                          "training images) or low_confidence (the top class is below its threshold)")
    calibrated: bool = Field(False, description="Whether the probabilities and thresholds come from the model's "
                                                "calibration (false: a model trained without one, plain softmax)")
    ood_score: float | None = Field(
        None, ge=0, description="Out-of-distribution score: the distance to the nearest label's training images "
                                "over the model's threshold, so above 1 is out of distribution; null for a model "
                                "without a detector")
    model_version: str = Field(description="The model version that answered")
    precision: Literal["fp32", "int8"] = Field("fp32", description="Which of the version's models answered")
    latency_ms: float = Field(description="Time spent in the function: reading, decoding and inference")
    image: ImageInfo


# ---------------------------------------------------------------- uploads
class UploadRequest(Strict):
    content_type: ImageMediaType = Field(description="The Content-Type the upload must be sent with")
    bytes: int | None = Field(None, ge=1, description="The file size, to be refused early when too large")


class UploadResponse(BaseModel):
    url: str = Field(description="Presigned URL: PUT the file there with the headers below")
    method: Literal["PUT"] = "PUT"
    headers: dict[str, str]
    key: str
    s3_uri: str
    expires_in: int = Field(description="Seconds the URL stays valid")
    expires_at: str
    prediction_path: str = Field(description="Where the prediction appears once the classifier is done")


# ---------------------------------------------------------------- predictions
class Prediction(BaseModel):
    image: str = Field(description="s3:// URI of the image")
    bucket: str
    key: str
    size: int | None = Field(None, description="Bytes, as the upload notification said")
    status: str = Field(description="classified or rejected")
    label: str | None = None
    confidence: float | None = None
    probabilities: dict[str, float] | None = None
    verdict: str | None = Field(None, description="label or unknown; absent on records made before verdicts")
    unknown_reason: str | None = Field(
        None, description="Why the verdict is unknown: low_confidence or out_of_distribution")
    ood_score: float | None = Field(None, description="Out-of-distribution score (above 1 is out); null without "
                                                      "a detector")
    calibrated: bool | None = Field(None, description="Whether the probabilities are temperature-scaled")
    model_version: str | None = None
    precision: str | None = Field(None, description="fp32 or int8: which of the version's models answered")
    uploaded_at: str | None = None
    processed_at: str | None = None
    latency_ms: float | None = Field(None, description="The classifier's time for this image")
    reason: str | None = Field(None, description="Why a rejected image was rejected")
    message: str | None = None
    margin: float | None = Field(None, description="The two best probabilities' difference")
    sampled: bool | None = Field(None, description="In the random sample that estimates live accuracy")
    review_reason: str | None = Field(None, description="Why it joined the review queue: unknown, low_margin or "
                                                        "sample; absent when it never did")
    queued_at: str | None = None
    review: str | None = Field(None, description="labeled, none or skipped, once a person decided")
    human_label: str | None = Field(None, description="The label a person gave it")
    reviewed_by: str | None = None
    reviewed_at: str | None = None


class PredictionPage(BaseModel):
    items: list[Prediction]
    next: str | None = Field(None, description="Pass as ?next= for the following page; absent on the last page")


# ---------------------------------------------------------------- training
class Hyperparameters(Strict):
    """What a training run may change; anything left out takes the training job's default."""

    arch: str | None = Field(
        None, pattern=r"^[a-z][a-z0-9_.-]{1,63}$", examples=["tf_efficientnet_lite0"],
        description="Backbone (default tf_efficientnet_lite0; lite1 and lite2 also train offline, others need "
                    "weights baked into the image or a weights channel)")
    pretrained: bool | None = None
    recipe: str | None = Field(
        None, pattern=r"^(imgclf|classic)$",
        description="imgclf (default, docs/training.md) or classic (the original exercise's fastai recipe)")
    epochs: int | None = Field(None, ge=1, le=100,
                               description="Unfrozen epochs, all of them; left out, early stopping picks")
    max_epochs: int | None = Field(None, ge=1, le=100, description="Early stopping's upper bound (8)")
    patience: int | None = Field(None, ge=1, le=20, description="Epochs without a better validation loss (2)")
    freeze_epochs: int | None = Field(None, ge=0, le=20)
    lr: float | None = Field(None, gt=0, lt=1)
    bs: int | None = Field(None, ge=1, le=1024)
    img_size: int | None = Field(None, ge=32, le=1024)
    min_scale: float | None = Field(None, gt=0, le=1)
    presize: int | None = Field(None, ge=0, le=2048, description="Item resize before batch augmentation (0: off)")
    label_smoothing: float | None = Field(None, ge=0, lt=1)
    keep_best: bool | None = Field(None, description="Keep the epoch with the lowest validation loss")
    tta: bool | None = Field(None, description="Also report the test-time-augmented validation error")
    valid_pct: float | None = Field(None, gt=0, lt=1)
    seed: int | None = Field(None, ge=0, le=2**31 - 1)
    threshold_mode: str | None = Field(
        None, pattern=r"^(f1|precision)$",
        description="Per-label thresholds: f1 (F1-optimal) or precision (the lowest reaching target_precision)")
    target_precision: float | None = Field(None, gt=0, lt=1, description="The precision mode's target")
    ood: bool | None = Field(None, description="Fit the out-of-distribution detector (default true)")
    ood_keep: float | None = Field(
        None, gt=0, lt=1, description="Share of in-distribution validation images the detector keeps (0.95)")
    audit: str | None = Field(
        None, pattern=r"^(off|probe)$",
        description="The whole-dataset audit (audit.json): probe (default, a cross-fitted probe on the pretrained "
                    "backbone's features) or off")
    audit_folds: int | None = Field(None, ge=2, le=20, description="Folds of the audit's cross-fitting (5)")

    def as_dict(self) -> dict[str, Any]:
        return self.model_dump(exclude_none=True)


class TrainingRunRequest(Strict):
    dataset: DatasetName
    hyperparameters: Hyperparameters = Field(default_factory=Hyperparameters)


class Int8Outcome(BaseModel):
    shipped: bool = Field(description="Whether the run ships model.int8.onnx beside model.onnx")
    reason: str = Field(description="Why: the check's agreement and accuracy against fp32, or why none was built")


class TrainingRun(BaseModel):
    run_id: str
    status: str = Field(description=f"{', '.join(STATUSES[:-1])} or {STATUSES[-1]}")
    dataset: str
    dataset_version: str | None = Field(None, description="sha256 of the manifest the run trains on")
    hyperparameters: dict[str, Any] = Field(default_factory=dict)
    created_at: str | None = None
    updated_at: str | None = None
    metrics: dict[str, Any] | None = None
    failure_reason: str | None = None
    int8: Int8Outcome | None = Field(None, description="The int8 model's check, once the run completed")
    output_prefix: str = Field(description="Where the run's artifacts and reports are written")
    reports: dict[str, str] = Field(default_factory=dict,
                                    description="Report file name -> presigned GET URL, for the files present")


class ReviewItem(BaseModel):
    path: str
    actual: str
    predicted: str
    probability: float
    actual_probability: float | None = None
    loss: float | None = None
    kind: str = Field(description="wrong: confidently misclassified; uncertain: least confident of the rest")
    s3_key: str | None = Field(None, description="The image's key in the run's dataset, what POST "
                                                 "/datasets/{name}/edits takes; null when it is not inside it")
    thumbnail_url: str | None = Field(None, description="Presigned GET URL of the dataset image")


class TrainingRunReview(BaseModel):
    run_id: str
    items: list[ReviewItem]


AuditKind = Literal["label_error", "outlier", "near_duplicate"]


class AuditFinding(BaseModel):
    """One image the whole-dataset audit flagged; an image may be flagged under several kinds."""

    path: str = Field(description="The image's path relative to the dataset root, as the training job saw it")
    kind: AuditKind = Field(description="label_error: the label is likely wrong; outlier: unlike its label's "
                                        "images; near_duplicate: nearly the same picture as others")
    label: str = Field(description="The image's label when the run trained")
    split: str | None = Field(None, description="train or valid")
    score: float | None = Field(None, description="How sure the audit is: the suggested label's probability "
                                                  "(label errors), the distance (outliers), the group size "
                                                  "(near-duplicates)")
    probabilities: dict[str, float] = Field(default_factory=dict, description="The audit's probe, per label")
    suggested_label: str | None = Field(None, description="The likelier label (label errors)")
    ood_distance: float | None = Field(None, description="Distance to the label's images over the threshold "
                                                         "(outliers)")
    group: int | None = Field(None, description="The near-duplicate group the image is in")
    group_size: int | None = None
    cross_label: bool | None = Field(None, description="Whether the group holds images of several labels")
    group_labels: list[str] | None = None
    split_crossing: bool | None = Field(None, description="Whether the group spans the train and valid splits")
    s3_key: str | None = Field(None, description="The image's key in the run's dataset when the run trained; null "
                                                 "when the entry points outside it")
    sha256: str | None = Field(None, description="The image's sha256, which names its decision; null when the "
                                                 "dataset's manifest does not know the key")
    current_label: str | None = Field(None, description="Its label now; null when it is not in the dataset any more")
    current_key: str | None = Field(None, description="Its key now (moved by a relabel since the run), what POST "
                                                      "/datasets/{name}/edits takes")
    thumbnail_url: str | None = Field(None, description="Presigned GET URL of the dataset image")


class AuditSummary(BaseModel):
    model_config = ConfigDict(extra="allow")

    n_images: int | None = None
    counts: dict[str, int] = Field(default_factory=dict, description="Findings per kind, before any filter")
    near_duplicate_groups: int | None = None
    cross_label_groups: int | None = None
    estimated_noise_rate: dict[str, float] = Field(default_factory=dict, description="Per label")
    probe_accuracy: float | None = None


class TrainingRunAudit(BaseModel):
    run_id: str
    dataset: str
    format_version: int | None = None
    classes: list[str] = Field(default_factory=list)
    features: str | None = Field(None, description="What the audit's features came from (pretrained, ...)")
    summary: AuditSummary
    decided: int = Field(description="Findings of this filter left out because their image is decided already")
    findings: list[AuditFinding] = Field(description="Label errors first, then outliers, then near-duplicates")


# ---------------------------------------------------------------- datasets
class DatasetRequest(Strict):
    name: DatasetName
    labels: list[Label] = Field(min_length=1, max_length=50)
    query: str = Field("{label}", min_length=1, max_length=200,
                       description="Search query per label; {label} is replaced by the label")
    per_label: int = Field(150, ge=1, le=1000, description="Images wanted per label")
    source: Literal["ddg", "bing"] = Field("ddg", description="The image search to collect from")
    train: bool = Field(False, description="Train (and promote when better) once every label is collected")
    hyperparameters: Hyperparameters = Field(default_factory=Hyperparameters)

    @model_validator(mode="after")
    def _labels_fit_the_mode(self) -> DatasetRequest:
        if len(set(self.labels)) != len(self.labels):
            raise ValueError("labels must be unique")
        if self.train and len(self.labels) < 2:
            raise ValueError("training needs at least two labels")
        return self


class DatasetStarted(BaseModel):
    dataset: str
    labels: list[str]
    mode: Literal["collect", "pipeline"] = Field(
        description="collect: one collector invocation per label; pipeline: collect, train and promote")
    collection_run: str = Field(description="Names the collection's reports under datasets/{name}/reports/")
    started: list[str] = Field(description="Ids of what was started (invocation request ids or an execution)")
    run_id: str | None = Field(None, description="The training run, when train was asked for")


class DatasetSummary(BaseModel):
    name: str
    images: int = Field(description="Images training would use: every label's, without the ambiguous ones")
    counts: dict[str, int] = Field(description="Images per label")
    ambiguous: int = Field(description="Images found for several labels, which training leaves out")
    version: str = Field(description="sha256 of the manifest: the dataset version a training run records")
    edits: dict[str, int] = Field(default_factory=dict, description="Edits of the cleaning loop, by kind")
    manifest_key: str
    last_report: dict[str, Any] | None = Field(None, description="The latest collection report, without "
                                                                 "its per-image lists")


MAX_EDITS = 100


class DatasetEdit(Strict):
    """One decision of the review: drop the image, move it to another label, or keep it as it is."""

    key: str = Field(min_length=1, max_length=1024, description="The image's key, under datasets/{name}/",
                     examples=["datasets/ants-bees/bees/bees-3f9a0c1d2e4b.jpg"])
    action: Literal["delete", "relabel", "keep"]
    label: Label | None = Field(None, description="The new label (relabel only)")
    reason: str = Field("", max_length=500, description="Why, for the audit trail")

    @model_validator(mode="after")
    def _label_fits_the_action(self) -> DatasetEdit:
        if self.action == "relabel" and not self.label:
            raise ValueError("relabel needs the new label")
        if self.action != "relabel" and self.label is not None:
            raise ValueError(f"label is only for relabel, not {self.action}")
        return self


class DatasetEditsRequest(Strict):
    edits: list[DatasetEdit] = Field(min_length=1, max_length=MAX_EDITS)
    by: str | None = Field(None, min_length=1, max_length=200,
                           description="Who decides; defaults to the caller's IAM identity")
    run_id: str | None = Field(None, pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$",
                               description="The training run whose review the decisions come from")

    @model_validator(mode="after")
    def _one_edit_per_image(self) -> DatasetEditsRequest:
        if len({edit.key for edit in self.edits}) != len(self.edits):
            raise ValueError("each image may be edited once per request")
        return self


class EditRecord(BaseModel):
    """The audit record the edit appended to the manifest."""

    edit: Literal["delete", "relabel", "keep"]
    sha256: str
    key: str = Field(description="Where the image was")
    label: str = Field(description="Its label before the edit")
    to_label: str | None = Field(None, description="The new label (relabel)")
    to_key: str | None = Field(None, description="Where the image is now (relabel)")
    by: str
    at: str
    reason: str = ""


class Decision(BaseModel):
    """The review decision an edit recorded (or found recorded already) in the decisions table."""

    dataset: str
    image: str = Field(description="The image's sha256")
    key: str = Field("", description="Where the image was when decided")
    action: Literal["delete", "relabel", "keep"]
    label: str = Field(description="Its label when decided")
    to_label: str | None = None
    decided_label: str = Field("", description="Its label after the decision (empty once deleted)")
    by: str = ""
    signed_by: str | None = Field(None, description="The IAM identity that signed the request")
    run_id: str | None = None
    at: str
    status: Literal["pending", "applied"]


class EditResult(BaseModel):
    index: int = Field(description="The edit's position in the request")
    key: str
    action: str
    status: Literal["applied", "failed", "skipped", "decided"] = Field(
        description="skipped: not tried, because S3 failed on an earlier edit or the request ran out of time; "
                    "decided: someone decided exactly this already, so nothing was applied again")
    record: EditRecord | None = Field(None, description="The audit record, when applied")
    decision: Decision | None = Field(None, description="The decision recorded (applied) or found (decided)")
    error: ErrorDetail | None = Field(None, description="Why it was not applied (not_found, conflict, ...)")


class DatasetEditsResponse(BaseModel):
    dataset: str
    version: str | None = Field(description="sha256 of the manifest after the edits, the version the next run "
                                            "records; null when it could not be read back")
    applied: int
    failed: int = Field(description="Edits not applied, skipped ones included (decided ones are neither)")
    results: list[EditResult] = Field(description="One per edit, in the request's order")


# ---------------------------------------------------------------- review queue of uploads
ReviewReason = Literal["unknown", "low_margin", "sample"]


class ReviewedPrediction(BaseModel):
    """What the model had answered when a person decided (later reclassifications leave it as it was)."""

    label: str | None = None
    verdict: str | None = None
    confidence: float | None = None
    model_version: str | None = None
    unknown_reason: str | None = None


class QueuedUpload(BaseModel):
    """An upload waiting in the review queue: the model's answer and why a person should look at it."""

    image: str = Field(description="s3:// URI of the upload")
    key: str = Field(description="Its key, e.g. uploads/cat.jpg: what POST /review-queue/{key+} takes")
    label: str | None = Field(None, description="The model's top class (also when the verdict is unknown)")
    confidence: float | None = None
    probabilities: dict[str, float] | None = None
    verdict: str | None = Field(None, description="label or unknown")
    unknown_reason: str | None = None
    ood_score: float | None = None
    model_version: str | None = None
    margin: float | None = Field(None, description="The two best probabilities' difference")
    sampled: bool | None = Field(None, description="In the random sample that estimates live accuracy")
    review_reason: ReviewReason | None = Field(
        None, description="Why it is queued: unknown (the verdict), low_margin (under the stack's REVIEW_MARGIN) or "
                          "sample (drawn at random; the first of the three that applies)")
    queued_at: str | None = None
    uploaded_at: str | None = None
    processed_at: str | None = None
    thumbnail_url: str | None = Field(None, description="Presigned GET URL of the upload")


class ReviewQueuePage(BaseModel):
    items: list[QueuedUpload] = Field(description="Oldest first")
    next: str | None = Field(None, description="Pass as ?next= for the following page; absent on the last page")


class ReviewRequest(Strict):
    """A person's answer about one upload."""

    action: Literal["label", "none", "skip"] = Field(
        description="label: the upload shows `label` (any label, a new one too); none: none of the labels (kept as a "
                    "negative example); skip: not sure, leave it to someone else")
    label: Label | None = Field(None, description="The right label (label only)")
    dataset: DatasetName | None = Field(None, description="The dataset the upload joins; default: the active "
                                                          "model's")
    by: str | None = Field(None, min_length=1, max_length=200,
                           description="Who decides; defaults to the caller's identity (reviewer or IAM)")

    @model_validator(mode="after")
    def _label_fits_the_action(self) -> ReviewRequest:
        if self.action == "label" and not self.label:
            raise ValueError("label needs the label")
        if self.action != "label" and self.label is not None:
            raise ValueError(f"label is only for the label action, not {self.action}")
        return self


class IngestOutcome(BaseModel):
    """What the dataset made of the upload (the collector's checks and de-duplication)."""

    status: Literal["added", "duplicate", "ambiguous", "rejected"] = Field(
        description="added: a new image of the dataset (or a new negative example); duplicate: the dataset had it "
                    "under that label already; ambiguous: the same (or a near-duplicate) picture is there under "
                    "another label, so training leaves both out; rejected: not a usable image")
    dataset: str
    label: str | None = Field(None, description="null for a negative example")
    sha256: str | None = None
    key: str | None = Field(None, description="Where the image is in the dataset")
    message: str = ""
    reason: str | None = Field(None, description="Why it was rejected")


class RetrainStatus(BaseModel):
    dataset: str
    labels_since_run: int = Field(description="Labeled uploads added to the dataset since its last training run")
    retrain_after: int = Field(description="The stack's RetrainAfterLabels (0: never on its own)")
    requested: bool = Field(False, description="This label reached the threshold and asked for a retraining (an "
                                               "EventBridge event that starts the training pipeline)")
    error: str | None = Field(None, description="Why the request could not be sent; the next label tries again")


class ReviewResult(BaseModel):
    image: str
    key: str
    review: Literal["labeled", "none", "skipped"]
    human_label: str | None = None
    reviewed_by: str
    reviewed_at: str
    review_reason: ReviewReason | None = None
    sampled: bool | None = None
    reviewed_prediction: ReviewedPrediction | None = None
    ingest: IngestOutcome | None = Field(None, description="The copy into the dataset (label and none)")
    retrain: RetrainStatus | None = Field(None, description="The dataset's count towards its next training run "
                                                            "(label only)")


class LiveAccuracyEstimate(BaseModel):
    model_version: str = Field(description="The version that answered the sampled uploads")
    n: int = Field(description="Sampled uploads a person labeled (or marked none of these)")
    correct: int = Field(description="Of them, answered right: the person's label, or unknown for none of these")
    abstained: int = Field(description="Of them, answered unknown")
    accuracy: float
    low: float = Field(description="Lower end of the Wilson score interval")
    high: float = Field(description="Upper end of the Wilson score interval")
    confidence: float = Field(description="The interval's confidence level")


class LiveAccuracy(BaseModel):
    active_version: str | None = None
    sample_rate: float = Field(description="The stack's REVIEW_SAMPLE_RATE")
    estimates: list[LiveAccuracyEstimate] = Field(description="Per model version, newest first")


# ---------------------------------------------------------------- models
class ModelVersion(BaseModel):
    version: str
    status: str | None = None
    active: bool
    created_at: str | None = None
    dataset: str | None = None
    dataset_version: str | None = None
    run_id: str | None = None
    classes: list[str] = Field(default_factory=list)
    metrics: dict[str, Any] = Field(default_factory=dict)


class ModelList(BaseModel):
    active: str | None = Field(None, description="The active version, or null before the first promotion")
    versions: list[ModelVersion]


class PromoteRequest(Strict):
    force: bool = Field(False, description="Promote even when the version is worse than the active one")
    by: str | None = Field(None, max_length=200, description="Who promotes; defaults to the caller's identity")


class RollbackRequest(Strict):
    by: str | None = Field(None, max_length=200)


class ActiveModelInfo(BaseModel):
    version: str
    previous: str | None = None
    promoted_at: str | None = None
    promoted_by: str | None = None
    classes: list[str] = Field(default_factory=list)


# ---------------------------------------------------------------- model health
class LatencyPercentiles(BaseModel):
    p50: float | None = Field(None, description="Median classifier latency of the window's images, ms")
    p95: float | None = Field(None, description="95th percentile, ms")


class ModelHealth(BaseModel):
    """The numbers of the review page's model-health panel (and of the CloudWatch dashboard) over a window."""

    window_hours: int
    since: str = Field(description="Start of the window (ISO 8601, UTC)")
    truncated: bool = Field(description="More images than one panel reads: the numbers are those of the newest")
    uploads: int = Field(description="Images classified or rejected in the window")
    uploads_per_hour: float | None = None
    classified: int
    unknown: int = Field(description="Classified images whose verdict was unknown")
    unknown_rate: float | None = Field(None, description="unknown / classified")
    rejected: int = Field(description="Images refused (not an image, too large, ...): the errors clients see")
    latency_ms: LatencyPercentiles
    review_queue_depth: int | None = Field(None, description="Uploads waiting for a reviewer's label")
    live_accuracy: LiveAccuracyEstimate | None = Field(
        None, description="Accuracy of the active model (else the newest version) on randomly sampled uploads people "
                          "labeled, with its confidence interval")
