"""One training run end to end: dataset, training, reports, export, parity checks and model.json."""

from __future__ import annotations

import logging
import os
import tempfile
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from fastai.data.transforms import Normalize
from fastai.learner import Learner
from fastai.torch_core import set_seed
from onnxruntime import InferenceSession

from imgclf_trainjob import artifacts, audit, calibration, hardware, learner, onnx_export, preprocess, quantize, report
from imgclf_trainjob.config import Hyperparameters, JobConfig
from imgclf_trainjob.dataset import DatasetPlan, prepare_dataset
from imgclf_trainjob.errors import JobFailure
from imgclf_trainjob.weights import resolve_weights

log = logging.getLogger(__name__)

EXPORT_PKL = "export.pkl"
MODEL_ONNX = "model.onnx"
MODEL_JSON = "model.json"
# With aug_transforms fastai resamples even validation batches through an identity affine warp
# (grid_sample), which moves values by ~1e-5; a wrong resize or crop moves them by ~1/255 or more.
PREPROCESSING_TOLERANCE = 1e-3


@dataclass(frozen=True)
class ParityInputs:
    """A sample of validation images: fastai's input tensors (un-normalised, [0,1]) and its probabilities."""

    paths: list[Path]
    images: np.ndarray
    fastai_probs: np.ndarray


def run_id_for(hp_run_id: str | None, env: Mapping[str, str]) -> str:
    """The run's id: the hyperparameter, else the SageMaker job name, else a local timestamp."""
    if hp_run_id:
        return hp_run_id
    if env.get("TRAINING_JOB_NAME"):
        return env["TRAINING_JOB_NAME"]
    return "local-" + artifacts.utc_now().replace("-", "").replace(":", "")


def run(config: JobConfig, env: Mapping[str, str] = os.environ) -> dict:
    """Train, report, export and verify; return model.json's content (also written to the model dir)."""
    hp, paths = config.hp, config.paths
    hardware.require_cuda_on_gpu_instances(env, cuda_available=torch.cuda.is_available(),
                                           cuda_version=torch.version.cuda)
    log.info("Hyperparameters: %s", hp.as_dict())
    arch = learner.resolve_arch(hp.arch)
    weights = resolve_weights(hp.weights, hp.arch, hp.pretrained)
    plan = prepare_dataset(paths.train, seed=hp.seed, valid_pct=hp.valid_pct,
                           include_ambiguous=hp.include_ambiguous, min_per_class=hp.min_images_per_class,
                           near_duplicates=hp.near_duplicates)
    if plan.split_crossing_groups:
        log.warning("%d near-duplicate group(s) span train and valid as the dataset assigns them: the validation "
                    "error may look better than it is (split.json lists them)", len(plan.split_crossing_groups))
    log.info("Dataset: %d classes, %d train, %d valid (%s split), %d skipped, %d excluded",
             len(plan.classes), len(plan.train), len(plan.valid), plan.split_mode, len(plan.skipped),
             len(plan.excluded))
    report.write_json(paths.output_data_dir / "split.json", plan.split_record())
    set_seed(hp.seed)
    with tempfile.TemporaryDirectory(prefix="imgclf-train-") as workdir:
        recipe = learner.resolve_recipe(hp, pretrained=hp.pretrained or weights is not None,
                                        n_train=len(plan.train))
        log.info("Recipe: %s", recipe.as_dict())
        dls = learner.build_dataloaders(plan, hp, arch, recipe)
        learn, weights_source = learner.build_learner(dls, arch, hp, recipe, weights, Path(workdir))
        # The audit's probe reads the pretrained backbone before fine-tuning teaches it any of this dataset's labels.
        backbone = (audit.backbone_features(learn.model[0], plan, hp.img_size, arch.mean, arch.std)
                    if hp.audit == "probe" and weights_source != "none" else None)
        history = learner.train(learn, hp, recipe)
        metrics = write_reports(learn, plan, history, hp, recipe, paths.output_data_dir, env)
        metrics["backbone"] = learner.backbone_summary(learn, hp, weights_source, history)
        # Export and parity run on the CPU in float32, whatever trained the model.
        learn.dls.cpu()
        learn.model.cpu()
        model_dir = paths.model_dir
        model_dir.mkdir(parents=True, exist_ok=True)
        learn.export(model_dir / EXPORT_PKL)
        onnx_path = onnx_export.export_onnx(learn.model, arch.mean, arch.std, hp.img_size,
                                            model_dir / MODEL_ONNX)
        inputs = parity_inputs(learn, plan, hp.parity_images)
    session = onnx_export.onnx_session(onnx_path)
    parity = check_onnx_parity(session, inputs)
    preprocessing_check = check_reference_preprocessing(session, inputs, hp.img_size)
    classes = list(learn.dls.vocab)
    ((fp32_probs, valid_features),), labels = validation_outputs([session], plan.valid, plan, hp.img_size,
                                                                 classes)
    int8 = int8_model(onnx_path, fp32_probs, labels, plan, hp, classes)
    shipped = {quantize.MODEL_INT8: model_dir / quantize.MODEL_INT8} if int8.shipped else {}
    train_out = None
    if hp.audit != "off" or hp.ood:
        ((train_probs, train_features),), train_labels = validation_outputs([session], plan.train, plan,
                                                                            hp.img_size, classes)
        train_out = (train_probs, train_features, train_labels)
    ood = ood_detector(valid_features, train_out, plan, hp, classes)
    calibration_doc = calibrate(fp32_probs, labels, hp, classes, model_dir, paths.output_data_dir, ood)
    metrics["calibration"] = calibration_doc["validation"]
    metrics["audit"] = whole_dataset_audit(plan, hp, classes, backbone, train_out, (fp32_probs, valid_features, labels),
                                           ood, paths.output_data_dir, env)
    report.write_json(paths.output_data_dir / "metrics.json", metrics)
    model_json = artifacts.build_model_json(
        classes=classes, arch=hp.arch, img_size=hp.img_size, mean=arch.mean, std=arch.std,
        preprocessing=preprocess.preprocessing_spec(hp.img_size, aug=hp.aug),
        onnx_io=onnx_io(hp.img_size, len(learn.dls.vocab), session),
        artifacts={EXPORT_PKL: model_dir / EXPORT_PKL, MODEL_ONNX: onnx_path, **shipped,
                   calibration.CALIBRATION_JSON: model_dir / calibration.CALIBRATION_JSON},
        dataset=dataset_summary(plan, hp.dataset_uri, paths.train, env),
        metrics=summary_metrics(metrics), onnx_parity=parity.as_dict(),
        preprocessing_check=preprocessing_check, hyperparameters=hp.as_dict() | {"lr_used": history.lr},
        recipe=recipe.as_dict(),
        run_id=run_id_for(hp.run_id, env), weights_source=weights_source, int8=int8.as_dict(),
        calibration=calibration_summary(calibration_doc),
    )
    report.write_json(model_dir / MODEL_JSON, model_json)
    log.info("Done: error_rate=%.4f onnx max_abs_diff=%.2e", metrics["error_rate"], parity.max_abs_diff)
    return model_json


def write_reports(learn: Learner, plan: DatasetPlan, history: learner.TrainHistory, hp, recipe: learner.Recipe,
                  out: Path, env: Mapping[str, str]) -> dict:
    """Write metrics.json and the plots and top losses to the output data dir; return the metrics."""
    ev = report.evaluate(learn, plan.root)
    metrics = report.build_metrics(ev, history, n_train=len(plan.train))
    metrics["recipe"] = recipe.as_dict()
    if recipe.tta and len(ev.targets):
        metrics["tta"] = report.evaluate_tta(learn, ev)
    report.write_json(out / "metrics.json", metrics)
    s3 = report.s3_location(hp.dataset_uri, env.get("IMGCLF_DATASET_S3_PREFIX"))
    losses = report.top_losses(ev, hp.top_k, s3)
    report.write_json(out / "top_losses.json", losses)
    report.plot_confusion_matrix(report.confusion_counts(ev), ev.classes, out / "confusion_matrix.png")
    report.plot_top_losses(losses, plan.root, out / "top_losses.png")
    report.plot_learning_curve(history, out / "learning_curve.png")
    return metrics


def _spread(n: int, cap: int) -> list[int]:
    """Up to cap indices spread evenly over range(n), so a capped sample still covers every class."""
    if n <= cap:
        return list(range(n))
    return sorted({int(round(i)) for i in np.linspace(0, n - 1, cap)})


def parity_inputs(learn: Learner, plan: DatasetPlan, cap: int) -> ParityInputs:
    """Validation images through fastai's own valid pipeline on the CPU: its inputs and probabilities."""
    paths = [plan.root / plan.valid[i].rel_path for i in _spread(len(plan.valid), cap)]
    dl = learn.dls.test_dl(paths, device=torch.device("cpu"), num_workers=0, bs=32)
    inputs, probs = learn.get_preds(dl=dl, with_input=True)[:2]
    # fastai's inputs are normalised and the graph normalises itself, so ONNX gets them un-normalised.
    norm = next(t for t in dl.after_batch.fs if isinstance(t, Normalize))
    images = inputs.as_subclass(torch.Tensor) * norm.std + norm.mean
    return ParityInputs(paths, images.float().numpy(), probs.float().numpy())


def check_onnx_parity(session: InferenceSession, inputs: ParityInputs) -> onnx_export.ParityResult:
    """Fail the job unless ONNX Runtime matches fastai's probabilities on the same input tensors."""
    result = onnx_export.compare(inputs.fastai_probs, onnx_export.onnx_probabilities(session, inputs.images))
    if not result.ok:
        raise JobFailure(
            f"ONNX parity check failed: max |fastai - onnxruntime| = {result.max_abs_diff:.2e} over "
            f"{result.n_images} validation images, above the tolerance {result.tolerance:.0e}."
        )
    return result


def check_reference_preprocessing(session: InferenceSession, inputs: ParityInputs, img_size: int) -> dict:
    """Fail the job unless the PIL+numpy recipe of model.json reproduces fastai's model input."""
    reference = preprocess.preprocess_files(inputs.paths, img_size)
    diff = float(np.abs(reference - inputs.images).max())
    if diff > PREPROCESSING_TOLERANCE:
        raise JobFailure(
            "The documented preprocessing does not reproduce fastai's validation input "
            f"(max diff {diff:.2e}); model.json would mislead the inference side."
        )
    # What the inference side will see: ONNX on the recipe's output against fastai's own prediction.
    end_to_end = onnx_export.compare(inputs.fastai_probs, onnx_export.onnx_probabilities(session, reference))
    return {"max_abs_diff": diff, "probabilities_max_abs_diff": end_to_end.max_abs_diff,
            "n_images": len(inputs.paths), "tolerance": PREPROCESSING_TOLERANCE, "ok": True}


def int8_model(onnx_path: Path, fp32_probs: np.ndarray, labels: np.ndarray, plan: DatasetPlan,
               hp: Hyperparameters, classes: list[str]) -> quantize.Int8Decision:
    """Quantize model.onnx, check it against fp32's validation probabilities, and keep it only if it passes."""
    if not hp.int8:
        return quantize.Int8Decision(False, "not built: the int8 hyperparameter is off")
    int8_path = onnx_path.with_name(quantize.MODEL_INT8)
    calibration = [plan.root / plan.train[i].rel_path for i in _spread(len(plan.train), hp.int8_calibration_images)]
    try:
        quantize.quantize(onnx_path, int8_path, preprocess.preprocess_files(calibration, hp.img_size),
                          input_name=onnx_export.INPUT_NAME)
        ((int8_probs, _),), _ = validation_outputs([onnx_export.onnx_session(int8_path)], plan.valid, plan,
                                                   hp.img_size, classes)
    except Exception as exc:  # noqa: BLE001 - a failed quantization costs the int8 model, never the run
        log.warning("int8 quantization failed; shipping fp32 only", exc_info=True)
        int8_path.unlink(missing_ok=True)
        return quantize.Int8Decision(False, f"not built: quantization failed ({type(exc).__name__}: {exc})")
    decision = quantize.decide(quantize.compare(fp32_probs, int8_probs, labels),
                               min_agreement=hp.int8_min_agreement, max_accuracy_drop=hp.int8_max_accuracy_drop)
    if not decision.shipped:
        int8_path.unlink(missing_ok=True)
    log.info("int8 model %s", decision.reason)
    return decision


@dataclass(frozen=True)
class OodFit:
    """The detector block for calibration.json, or why there is none, which validation images it keeps, and the
    detector itself (the audit scores every image with it, without decoding the block again)."""

    block: dict | None
    valid_kept: np.ndarray | None = None
    detector: calibration.OodDetector | None = None
    reason: str | None = None


def ood_detector(valid_features: np.ndarray | None, train_out: tuple | None, plan: DatasetPlan,
                 hp: Hyperparameters, classes: list[str]) -> OodFit:
    """Fit the out-of-distribution detector on up to ood_fit_images training images' features."""
    if not hp.ood:
        return OodFit(None, reason="off: the ood hyperparameter is false")
    if valid_features is None or train_out is None:
        return OodFit(None, reason="none: model.onnx has no features output")
    chosen = _spread(len(plan.train), hp.ood_fit_images)
    _, train_features, train_labels = train_out
    block, kept, detector = calibration.fit_ood(train_features[chosen], train_labels[chosen], valid_features,
                                                classes, keep=hp.ood_keep)
    log.info("Out-of-distribution detector: %d-dim features of %d training images, threshold %.3f keeps %.3f "
             "of validation", block["dim"], len(chosen), block["threshold"], block["fit"]["valid_kept"])
    return OodFit(block, kept, detector)


def whole_dataset_audit(plan: DatasetPlan, hp: Hyperparameters, classes: list[str], backbone: np.ndarray | None,
                        train_out: tuple | None, valid_out: tuple, ood: OodFit, out: Path,
                        env: Mapping[str, str]) -> dict:
    """Write audit.json (label errors, outliers, near-duplicates over both splits); return its summary."""
    if hp.audit == "off":
        return {"mode": "off"}
    samples = [*plan.train, *plan.valid]
    _, train_features, train_labels = train_out
    _, valid_features, valid_labels = valid_out
    labels = np.concatenate([train_labels, valid_labels])
    fine_tuned = (np.concatenate([train_features, valid_features]) if train_features is not None
                  and valid_features is not None else None)
    features, source = (backbone, "pretrained") if backbone is not None else (fine_tuned, "fine_tuned")
    if features is None:
        log.warning("No features for the audit (no pretrained backbone and no features output): skipped")
        return {"mode": hp.audit, "skipped": "no features"}
    started = time.perf_counter()
    pred_probs = audit.out_of_sample_probabilities(features, labels, len(classes), hp.audit_folds, hp.seed)
    issues = audit.label_issues(labels, pred_probs)
    distance = None
    if ood.detector is not None and fine_tuned is not None:
        distance = ood.detector.distances(fine_tuned) / ood.block["threshold"]
    outlier = distance > 1 if distance is not None else np.zeros(len(samples), dtype=bool)
    index = {s.rel_path: i for i, s in enumerate(samples)}
    groups = [[index[r] for r in g if r in index] for g in plan.near_duplicates]
    s3 = report.s3_location(hp.dataset_uri, env.get("IMGCLF_DATASET_S3_PREFIX"))
    doc = audit.build([s.rel_path for s in samples], labels, classes, [s.split or "" for s in samples], pred_probs,
                      issues, [g for g in groups if len(g) > 1], outlier, distance, s3, features=source)
    report.write_json(out / audit.AUDIT_JSON, doc)
    summary = {"mode": hp.audit, "features": source, "seconds": round(time.perf_counter() - started, 3),
               **doc["summary"]}
    log.info("Audit (%s features): %s", source, " ".join(f"{k}={v}" for k, v in doc["summary"]["counts"].items()))
    return summary


def calibrate(probs: np.ndarray, labels: np.ndarray, hp: Hyperparameters, classes: list[str], model_dir: Path,
              output_dir: Path, ood: OodFit) -> dict:
    """Fit temperature and thresholds on the fp32 model's validation output; write calibration.json and the plot."""
    doc, before, after = calibration.fit(probs, labels, classes, mode=hp.threshold_mode,
                                         target_precision=hp.target_precision, ood=ood.block,
                                         in_distribution=ood.valid_kept)
    if ood.block is None:
        doc["ood_absent"] = ood.reason
    report.write_json(model_dir / calibration.CALIBRATION_JSON, doc)
    report.plot_reliability(before, after, output_dir / "reliability.png")
    log.info("Calibration: T=%.3f ECE %.4f -> %.4f, coverage %s", doc["temperature"], before.ece, after.ece,
             doc["validation"]["coverage"])
    return doc


def calibration_summary(doc: dict) -> dict:
    """The calibration block of model.json: the artifact's name and format, T, the mode and the headline numbers."""
    return {"artifact": calibration.CALIBRATION_JSON, "format_version": doc["format_version"],
            "temperature": doc["temperature"], "threshold_mode": doc["threshold_mode"],
            "target_precision": doc["target_precision"],
            "thresholds": {name: t["threshold"] for name, t in doc["thresholds"].items()},
            "ood": ({"method": doc["ood"]["method"], "threshold": doc["ood"]["threshold"], "keep": doc["ood"]["keep"],
                     "dim": doc["ood"]["dim"]} if doc.get("ood") else {"absent": doc.get("ood_absent")}),
            **{k: doc["validation"][k] for k in ("ece_before", "ece_after", "coverage", "selective_accuracy")}}


Outputs = tuple[np.ndarray, np.ndarray | None]  # probabilities, and features where the model has them


def validation_outputs(sessions: list[InferenceSession], samples: list, plan: DatasetPlan, img_size: int,
                       classes: list[str], chunk: int = 64) -> tuple[list[Outputs], np.ndarray]:
    """Each session's probabilities and features for the samples (the model.json recipe), and their labels."""
    index = {name: i for i, name in enumerate(classes)}
    labels = np.array([index[sample.label] for sample in samples], dtype=int)
    paths = [plan.root / sample.rel_path for sample in samples]
    outputs: list[list[Outputs]] = [[] for _ in sessions]
    for start in range(0, len(paths), chunk):  # a chunk at a time: a large split would not fit in memory at once
        images = preprocess.preprocess_files(paths[start:start + chunk], img_size)
        for output, session in zip(outputs, sessions, strict=True):
            output.append(onnx_export.onnx_outputs(session, images))
    return [_joined(output) for output in outputs], labels


def _joined(chunks: list[Outputs]) -> Outputs:
    """One (probabilities, features) pair from a list of chunks."""
    probabilities = np.concatenate([p for p, _ in chunks])
    features = None if not chunks or chunks[0][1] is None else np.concatenate([f for _, f in chunks])
    return probabilities, features


def onnx_io(img_size: int, n_classes: int, session: InferenceSession | None = None) -> dict:
    """The ONNX interface block of model.json."""
    block = {
        "input": onnx_export.INPUT_NAME, "input_shape": ["batch", 3, img_size, img_size],
        "output": onnx_export.OUTPUT_NAME, "output_shape": ["batch", n_classes],
        "dtype": "float32", "opset": onnx_export.OPSET, "softmax_in_graph": True,
    }
    if session is not None and onnx_export.has_features(session):
        (features,) = [o for o in session.get_outputs() if o.name == onnx_export.FEATURES_NAME]
        block["features_output"] = onnx_export.FEATURES_NAME
        block["features_shape"] = ["batch", features.shape[-1]]
    return block


def dataset_summary(plan: DatasetPlan, dataset_uri: str | None, train_dir: Path,
                    env: Mapping[str, str]) -> dict:
    """The dataset block of model.json."""
    excluded: dict[str, int] = {}
    for reason in plan.excluded.values():
        excluded[reason] = excluded.get(reason, 0) + 1
    return {
        "uri": dataset_uri or env.get("IMGCLF_DATASET_S3_PREFIX") or str(train_dir),
        "manifest_sha256": plan.manifest_sha256,
        "n_train": len(plan.train),
        "n_valid": len(plan.valid),
        "skipped": len(plan.skipped),
        "excluded": excluded,
        "ignored_labels": plan.ignored_labels,
        "split": plan.split_mode,
    }


def summary_metrics(metrics: dict) -> dict:
    """The metrics block of model.json: the headline numbers, details stay in metrics.json."""
    keys = ("error_rate", "accuracy", "valid_loss", "n_train", "n_valid", "per_class")
    summary = {k: metrics[k] for k in keys}
    if "calibration" in metrics:
        summary["ece_before"] = metrics["calibration"]["ece_before"]
        summary["ece_after"] = metrics["calibration"]["ece_after"]
    summary["epochs"] = len(metrics["epochs"])
    summary["best_epoch"] = metrics.get("best_epoch")
    summary["train_loss"] = metrics["train_loss_per_epoch"][-1] if metrics["epochs"] else None
    if "tta" in metrics:
        summary["error_rate_tta"] = metrics["tta"]["error_rate"]
    return summary
