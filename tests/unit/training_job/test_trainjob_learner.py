"""Arch lookup and the mixed-precision switch of the training job."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch
from torch import nn

from imgclf_trainjob import learner
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
