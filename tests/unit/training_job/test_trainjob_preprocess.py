"""The documented preprocessing reproduces fastai's RandomResizedCrop at validation time, bit for bit."""

from __future__ import annotations

import numpy as np
import pytest
from fastai.vision.augment import RandomResizedCrop
from fastai.vision.core import PILImage
from PIL import Image

from imgclf_trainjob.preprocess import load_rgb, preprocess, preprocessing_spec, valid_geometry


def test_geometry_for_224_matches_fastai_defaults():
    assert valid_geometry(224) == (256, (16, 16, 240, 240))
    assert valid_geometry(64) == (80, (8, 8, 72, 72))
    spec = preprocessing_spec(224)
    assert spec["resize_to"] == [256, 256] and spec["crop_box"] == [16, 16, 240, 240]
    assert spec["crop_size"] == [224, 224] and spec["resample"] == "bilinear"
    assert (spec["input_scale"], spec["layout"], spec["recipe"]) == ("0_1", "NCHW", "fastai_rrc_valid")


@pytest.mark.filterwarnings("ignore:Palette images with Transparency")
@pytest.mark.parametrize("size,mode", [((300, 200), "RGB"), ((57, 91), "RGB"), ((40, 40), "RGBA"),
                                       ((120, 80), "L"), ((90, 130), "P")])
@pytest.mark.parametrize("img_size", [64, 224])
def test_reference_equals_fastai_valid_transform(tmp_path, size, mode, img_size):
    rng = np.random.default_rng(0)
    pixels = rng.integers(0, 256, (size[1], size[0], 4), dtype=np.uint8)
    image = Image.fromarray(pixels, "RGBA").convert(mode)
    path = tmp_path / "img.png"
    image.save(path)
    fastai_out = RandomResizedCrop(img_size, min_scale=0.5)(PILImage.create(path), split_idx=1)
    expected = np.asarray(fastai_out, dtype=np.float32).transpose(2, 0, 1) / np.float32(255)
    actual = preprocess(load_rgb(path), img_size)
    assert actual.dtype == np.float32 and actual.shape == (3, img_size, img_size)
    assert np.array_equal(actual, expected)
