"""Arch lookup and the mixed-precision switch of the training job."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch
from torch import nn

from imgclf_trainjob import learner
from imgclf_trainjob.config import Hyperparameters
from imgclf_trainjob.errors import JobFailure


def test_torchvision_arch_uses_imagenet_stats():
    spec = learner.resolve_arch("resnet34")
    assert not spec.is_timm and callable(spec.arch)
    assert spec.mean == pytest.approx((0.485, 0.456, 0.406))
    assert spec.std == pytest.approx((0.229, 0.224, 0.225))


def test_timm_arch_is_passed_by_name_with_its_own_stats():
    spec = learner.resolve_arch("tf_efficientnet_lite0")
    assert spec.is_timm and spec.arch == "tf_efficientnet_lite0"
    assert spec.mean == (0.5, 0.5, 0.5) and spec.std == (0.5, 0.5, 0.5)


def test_unknown_arch_fails():
    with pytest.raises(JobFailure, match="Unknown arch 'resnet_nope'"):
        learner.resolve_arch("resnet_nope")


@pytest.mark.parametrize("cuda,requested,expected", [
    (True, None, True), (True, False, False), (True, True, True),
    (False, None, False), (False, True, False),
])
def test_fp16_defaults_on_with_cuda_only(monkeypatch, cuda, requested, expected):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: cuda)
    assert learner._use_fp16(requested) is expected


def test_freeze_body_bn_stats_leaves_the_head_training():
    body = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4))
    head = nn.Sequential(nn.Flatten(), nn.BatchNorm1d(4))
    model = nn.Sequential(body, head).train()
    callback = learner.FreezeBodyBnStats()
    callback.learn = SimpleNamespace(model=model)
    callback.before_train()
    assert not body[1].training and body[0].training and head[1].training
    before = body[1].running_mean.clone()
    model(torch.rand(2, 3, 3, 3) * 5)
    assert torch.equal(body[1].running_mean, before)


def test_classic_recipe_is_the_original_exercise():
    recipe = learner.resolve_recipe(Hyperparameters(recipe="classic"), pretrained=True)
    assert (recipe.min_scale, recipe.presize, recipe.label_smoothing, recipe.lr) == (0.5, None, 0.0, 2e-3)
    assert (recipe.epochs, recipe.patience, recipe.keep_best, recipe.tta) == (3, None, False, False)
    assert recipe.freeze_bn_stats is False


def test_default_recipe_stops_early_within_max_epochs_unless_epochs_are_given():
    auto = learner.resolve_recipe(Hyperparameters(max_epochs=6, patience=2), pretrained=True)
    assert (auto.name, auto.epochs, auto.patience, auto.keep_best) == ("imgclf", 6, 2, True)
    assert auto.freeze_bn_stats is True
    fixed = learner.resolve_recipe(Hyperparameters(epochs=4, max_epochs=6), pretrained=False)
    assert (fixed.epochs, fixed.patience, fixed.freeze_bn_stats) == (4, None, False)


def test_explicit_hyperparameters_win_over_the_recipe():
    hp = Hyperparameters(recipe="classic", label_smoothing=0.2, min_scale=0.9, lr="find", presize=256,
                         keep_best=True, tta=True, bs=8, freeze_bn_stats=True)
    recipe = learner.resolve_recipe(hp, pretrained=True)
    assert (recipe.label_smoothing, recipe.min_scale, recipe.lr, recipe.presize) == (0.2, 0.9, "find", 256)
    assert (recipe.keep_best, recipe.tta, recipe.bs, recipe.freeze_bn_stats) == (True, True, 8, True)


def test_loss_is_label_smoothed_only_when_asked():
    smooth = learner.loss_function(learner.resolve_recipe(Hyperparameters(label_smoothing=0.1), True))
    plain = learner.loss_function(learner.resolve_recipe(Hyperparameters(label_smoothing=0.0), True))
    logits, target = torch.tensor([[4.0, 0.0]]), torch.tensor([0])
    assert smooth(logits, target) > plain(logits, target) > 0


def test_best_epoch_is_the_lowest_unfrozen_validation_loss_or_the_last():
    history = learner.TrainHistory(epochs=[
        {"epoch": 1, "phase": "frozen", "valid_loss": 0.1},
        {"epoch": 2, "phase": "unfrozen", "valid_loss": 0.5},
        {"epoch": 3, "phase": "unfrozen", "valid_loss": 0.3},
        {"epoch": 4, "phase": "unfrozen", "valid_loss": 0.4},
    ])
    assert learner._best_epoch(history, learner.resolve_recipe(Hyperparameters(), True)) == 3
    assert learner._best_epoch(history, learner.resolve_recipe(Hyperparameters(recipe="classic"), True)) == 4


def test_batch_never_exceeds_the_training_set():
    # fastai drops the last incomplete training batch: 24 images at bs=64 would train nothing.
    assert learner.resolve_recipe(Hyperparameters(bs=64), True, n_train=24).bs == 24
    assert learner.resolve_recipe(Hyperparameters(bs=16), True, n_train=24).bs == 16
