"""fastai's validation-time image pipeline, reproduced with Pillow and numpy from a model.json recipe.

A learner trained with ``item_tfms=RandomResizedCrop(size, min_scale=...)`` does this at inference
(fastai/vision/augment.py, ``RandomResizedCrop.before_call``/``encodes`` with ``split_idx=1``): the whole
image is squashed, ignoring its aspect ratio, to ``size + ceil(size * val_xtra / 8) * 8`` on both sides with a
bilinear resize, then the centre ``size`` x ``size`` square is cropped (``crop_pad``). ``ToTensor`` and
``IntToFloatTensor`` then give float pixels in [0, 1]; the ONNX graph normalises them itself.
"""

from __future__ import annotations

import io
import math
import struct
import warnings
from dataclasses import dataclass
from typing import Any

import numpy as np
from PIL import Image, ImageOps

from .. import images

RECIPE = "fastai_rrc_valid"
VAL_XTRA = 0.14  # fastai's RandomResizedCrop default
_RESAMPLE = {
    "bilinear": Image.Resampling.BILINEAR,
    "bicubic": Image.Resampling.BICUBIC,
    "nearest": Image.Resampling.NEAREST,
    "lanczos": Image.Resampling.LANCZOS,
}


class RecipeError(ValueError):
    """model.json asks for preprocessing this module does not implement."""


def fastai_valid_side(img_size: int, val_xtra: float = VAL_XTRA) -> int:
    """The side fastai squashes a validation image to before cropping its centre img_size square."""
    return img_size + math.ceil(img_size * val_xtra / 8) * 8


@dataclass(frozen=True)
class Recipe:
    """One model's preprocessing: squash to resize_to, crop the centre img_size square, scale to [0, 1]."""

    img_size: int
    resize_to: tuple[int, int]  # (width, height), Pillow's order
    resample: str = "bilinear"

    @classmethod
    def fastai_valid(cls, img_size: int) -> Recipe:
        """The recipe of a learner trained with RandomResizedCrop(img_size) and fastai's defaults."""
        side = fastai_valid_side(img_size)
        return cls(img_size=img_size, resize_to=(side, side))

    @classmethod
    def from_json(cls, spec: dict[str, Any]) -> Recipe:
        """Read model.json's "preprocessing" object, refusing anything this module would get wrong."""
        expected = {"recipe": RECIPE, "input_scale": "0_1", "layout": "NCHW", "channel_order": "RGB"}
        for name, value in expected.items():
            if spec.get(name, value) != value:
                raise RecipeError(f"preprocessing {name}={spec.get(name)!r} unsupported (want {value!r})")
        if spec.get("crop", "center") not in ("center", "center_square"):
            raise RecipeError(f"preprocessing crop={spec.get('crop')!r} unsupported (want a centre crop)")
        resample = spec.get("resample", "bilinear")
        if resample not in _RESAMPLE:
            raise RecipeError(f"preprocessing resample={resample!r} is not supported")
        img_size = int(spec["img_size"])
        width, height = (int(v) for v in spec.get("resize_to") or [fastai_valid_side(img_size)] * 2)
        if min(width, height) < img_size:
            raise RecipeError(f"resize_to {width}x{height} is smaller than the {img_size} px crop")
        recipe = cls(img_size=img_size, resize_to=(width, height), resample=resample)
        for name, value in (("crop_size", [img_size, img_size]), ("crop_box", list(recipe.crop_box))):
            if name in spec and list(spec[name]) != value:
                raise RecipeError(f"preprocessing {name}={spec[name]!r} is not the centre crop {value!r}")
        return recipe

    @property
    def crop_box(self) -> tuple[int, int, int, int]:
        """(left, upper, right, lower) of the centre crop in the resized image."""
        width, height = self.resize_to
        # fastai's crop_pad centres with floor division: tl = (orig - size) // 2.
        left, top = (width - self.img_size) // 2, (height - self.img_size) // 2
        return left, top, left + self.img_size, top + self.img_size

    def transform(self, img: Image.Image) -> Image.Image:
        """The img_size x img_size RGB image the model sees (before scaling to floats)."""
        if img.mode != "RGB":
            img = img.convert("RGB")
        return img.resize(self.resize_to, _RESAMPLE[self.resample]).crop(self.crop_box)

    def to_array(self, img: Image.Image) -> np.ndarray:
        """One image as float32 CHW in [0, 1], the ONNX contract's input."""
        pixels = np.asarray(self.transform(img), dtype=np.float32)
        # Division rather than multiplication by 1/255 matches fastai's IntToFloatTensor bit for bit.
        return np.ascontiguousarray((pixels / np.float32(255)).transpose(2, 0, 1))

    def to_batch(self, imgs: list[Image.Image]) -> np.ndarray:
        """Images as one float32 NCHW batch."""
        return np.stack([self.to_array(img) for img in imgs])


def decode_reduced(data: bytes, *, side: int, max_pixels: int, min_side: int = 1) -> Image.Image:
    """Decode like images.decode, but let libjpeg shrink a large JPEG while decoding (faster, approximate).

    libjpeg decodes at 1/2, 1/4 or 1/8 scale as long as both sides stay at least ``side`` (the recipe's
    resize_to), so the following resize starts from fewer pixels. Anything but a plain, sound JPEG goes to
    images.decode, which makes the same checks and gives the same rejection reasons as the exact path.
    """
    if images.sniff(data) != "jpeg":
        return images.decode(data, max_pixels=max_pixels, min_side=min_side)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            img = Image.open(io.BytesIO(data), formats=["JPEG"])
            width, height = img.size
            if width * height > max_pixels or min(width, height) < min_side:
                raise ValueError("outside the accepted size range")  # let images.decode say why
            img.draft(None, (side, side))
            img.load()
        return images.to_rgb(ImageOps.exif_transpose(img))
    except (OSError, SyntaxError, ValueError, EOFError, struct.error, IndexError,
            Image.DecompressionBombWarning, Image.DecompressionBombError):
        return images.decode(data, max_pixels=max_pixels, min_side=min_side)
