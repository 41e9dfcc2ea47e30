"""The whole-dataset audit: out-of-sample probabilities, ranked label issues, findings, and near-duplicate groups."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image, ImageOps

from imgclf_trainjob import audit, neardup
from imgclf_trainjob.dataset import Sample, split_samples
from tests.support.images import real_photos


@pytest.fixture
def noisy_clusters():
    """Two well separated classes of 60 points each, with the labels of five points flipped."""
    rng = np.random.default_rng(3)
    centres = np.array([[3.0] + [0.0] * 7, [0.0, 3.0] + [0.0] * 6])
    features = np.concatenate([c + 0.5 * rng.standard_normal((60, 8)) for c in centres])
    truth = np.repeat([0, 1], 60)
    labels = truth.copy()
    flipped = np.array([3, 17, 44, 70, 101])
    labels[flipped] = 1 - labels[flipped]
    return features, labels, truth, flipped


def test_the_probe_flags_the_flipped_labels_and_suggests_the_true_ones(noisy_clusters):
    features, labels, truth, flipped = noisy_clusters
    pred_probs = audit.out_of_sample_probabilities(features, labels, 2, folds=5, seed=0)
    issues = audit.label_issues(labels, pred_probs)

    assert set(flipped) <= set(np.flatnonzero(issues.flagged))
    assert issues.flagged.sum() <= 2 * len(flipped)
    assert (issues.suggested[flipped] == truth[flipped]).all()
    # The flipped ones have the lowest label quality of all.
    assert set(np.argsort(issues.quality)[:len(flipped)]) == set(flipped)


def test_findings_are_ranked_by_kind_then_score_and_carry_keys_and_suggestions(noisy_clusters):
    features, labels, _, flipped = noisy_clusters
    pred_probs = audit.out_of_sample_probabilities(features, labels, 2)
    issues = audit.label_issues(labels, pred_probs)
    paths = [f"train/{'ab'[y]}/img-{i:03d}.jpg" for i, y in enumerate(labels)]
    outlier = np.zeros(len(labels), dtype=bool)
    outlier[7] = True
    distance = np.where(outlier, 1.4, 0.8)

    doc = audit.build(paths, labels, ["a", "b"], ["train"] * len(labels), pred_probs, issues, [[0, 1]], outlier,
                      distance, ("bucket", "datasets/ab"))

    kinds = [f["kind"] for f in doc["findings"]]
    assert kinds == sorted(kinds, key=["label_error", "outlier", "near_duplicate"].index)
    errors = [f for f in doc["findings"] if f["kind"] == "label_error"]
    assert [f["score"] for f in errors] == sorted((f["score"] for f in errors), reverse=True)
    assert {f["path"] for f in errors} >= {paths[i] for i in flipped}
    assert all(f["suggested_label"] != f["label"] for f in errors if f["path"] in {paths[i] for i in flipped})
    (far,) = [f for f in doc["findings"] if f["kind"] == "outlier"]
    assert far["path"] == paths[7] and far["ood_distance"] == 1.4
    assert far["s3_key"] == f"datasets/ab/{paths[7]}" and far["s3_uri"] == f"s3://bucket/datasets/ab/{paths[7]}"
    pair = [f for f in doc["findings"] if f["kind"] == "near_duplicate"]
    assert [f["path"] for f in pair] == paths[:2] and all(f["group_size"] == 2 for f in pair)
    assert doc["summary"]["counts"] == {"label_error": len(errors), "outlier": 1, "near_duplicate": 2}
    assert set(doc["summary"]["estimated_noise_rate"]) == {"a", "b"}


def jpeg(image: Image.Image, quality: int = 90) -> Image.Image:
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", quality=quality)
    return Image.open(io.BytesIO(buffer.getvalue())).convert("RGB")


def test_resized_recompressed_cropped_and_mirrored_copies_group_with_their_photo_and_nothing_else(tmp_path):
    photos = real_photos("train", per_class=3)
    if len(photos) < 4:
        pytest.skip("the shared ants-bees photos are not available")
    original = Image.open(photos[0]).convert("RGB")
    w, h = original.size
    copies = {
        "resized": original.resize((w // 2, h // 2)),
        "jpeg40": jpeg(original, 40),
        "crop10": original.crop((round(w * 0.05), round(h * 0.05), w - round(w * 0.05), h - round(h * 0.05))),
        "mirrored": ImageOps.mirror(original),
    }
    names = ["original.jpg", *(f"{k}.jpg" for k in copies)] + [f"other-{i}.jpg" for i in range(len(photos) - 1)]
    original.save(tmp_path / names[0])
    for name, image in zip(names[1:], copies.values(), strict=False):
        image.save(tmp_path / name)
    for i, other in enumerate(photos[1:]):
        Image.open(other).convert("RGB").save(tmp_path / f"other-{i}.jpg")

    groups = neardup.groups(neardup.hash_files(tmp_path, names))

    assert groups == [[0, 1, 2, 3, 4]]


def test_a_near_duplicate_group_never_straddles_a_random_split():
    samples = [Sample(f"a/{i:02d}.jpg", "a") for i in range(20)] + [Sample(f"b/{i:02d}.jpg", "b") for i in range(20)]
    group = ["a/00.jpg", "a/01.jpg", "a/02.jpg", "b/05.jpg"]
    for seed in range(10):
        train, valid = split_samples(samples, seed, 0.2, [group])
        in_valid = {s.rel_path for s in valid}
        assert all(r in in_valid for r in group) or not any(r in in_valid for r in group)
        assert len(train) + len(valid) == 40 and 6 <= len(valid) <= 10


def test_an_unassigned_member_follows_the_split_its_group_was_given():
    samples = [Sample("valid/a/x.jpg", "a", "valid"), Sample("a/copy-of-x.jpg", "a"),
               *(Sample(f"a/{i}.jpg", "a") for i in range(5)), Sample("valid/b/y.jpg", "b", "valid"),
               *(Sample(f"b/{i}.jpg", "b") for i in range(5))]
    train, valid = split_samples(samples, 0, 0.2, [["valid/a/x.jpg", "a/copy-of-x.jpg"]])
    assert "a/copy-of-x.jpg" in {s.rel_path for s in valid}


def test_without_groups_the_split_is_what_it_always_was():
    samples = [Sample(f"a/{i:02d}.jpg", "a") for i in range(13)] + [Sample(f"b/{i:02d}.jpg", "b") for i in range(7)]
    assert split_samples(samples, 42, 0.2) == split_samples(samples, 42, 0.2, [])
