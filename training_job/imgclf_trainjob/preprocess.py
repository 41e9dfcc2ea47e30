"""The inference-time preprocessing of fastai's RandomResizedCrop, as a spec and as plain PIL + numpy."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
from PIL import Image

RECIPE = "fastai_rrc_valid"
# fastai's RandomResizedCrop default: the share of the size added before the final center crop.
DEFAULT_VAL_XTRA = 0.14


def valid_geometry(img_size: int,
                   val_xtra: float = DEFAULT_VAL_XTRA) -> tuple[int, tuple[int, int, int, int]]:
    """RandomResizedCrop at validation: the square side to resize to and the center crop box in it."""
    # Mirrors RandomResizedCrop.before_call with split_idx=1: the whole image is resized (squished)
    # to size+xtra, then crop_pad takes the center size x size, its top-left at (resized - size) // 2.
    xtra = math.ceil(img_size * val_xtra / 8) * 8
    resized = img_size + xtra
    offset = (resized - img_size) // 2
    return resized, (offset, offset, offset + img_size, offset + img_size)


AUG_NOTE = ("fastai's aug_transforms also pass validation batches through an identity affine warp "
            "(grid_sample), moving values by ~1e-5; the steps here leave it out")


def preprocessing_spec(img_size: int, val_xtra: float = DEFAULT_VAL_XTRA, aug: bool = False) -> dict:
    """The preprocessing block of model.json: enough to reproduce the model's input bit for bit."""
    resized, box = valid_geometry(img_size, val_xtra)
    spec = {
        "recipe": RECIPE,
        "img_size": img_size,
        "decode": "PIL.Image.open(...).convert('RGB'); EXIF orientation NOT applied; alpha dropped",
        "exif_transpose": False,
        "resize_to": [resized, resized],
        "keep_aspect_ratio": False,
        "resample": "bilinear",
        "crop": "center",
        "crop_size": [img_size, img_size],
        "crop_box": list(box),
        "val_xtra": val_xtra,
        "input_scale": "0_1",
        "dtype": "float32",
        "layout": "NCHW",
        "channel_order": "RGB",
        "normalization": "in_graph",
        "steps": [
            "img = PIL.Image.open(f); img.load(); img = img.convert('RGB')",
            f"img = img.resize(({resized}, {resized}), PIL.Image.BILINEAR)  # whole image, aspect not kept",
            f"img = img.crop(({box[0]}, {box[1]}, {box[2]}, {box[3]}))  # left, upper, right, lower",
            "x = numpy.asarray(img, dtype=numpy.float32) / numpy.float32(255)",
            "x = x.transpose(2, 0, 1)[None]  # NCHW, batch axis first",
        ],
    }
    if aug:
        spec["note"] = AUG_NOTE
    return spec


def load_rgb(path: Path) -> Image.Image:
    """Open an image the way fastai's PILImage.create does (full load, RGB, no EXIF rotation)."""
    with Image.open(path) as image:
        image.load()
        return image.convert("RGB")


def preprocess(image: Image.Image, img_size: int, val_xtra: float = DEFAULT_VAL_XTRA) -> np.ndarray:
    """One RGB image as the ONNX model's input row: float32 [3, img_size, img_size] in [0, 1]."""
    resized, box = valid_geometry(img_size, val_xtra)
    image = image.convert("RGB").resize((resized, resized), Image.Resampling.BILINEAR).crop(box)
    pixels = np.asarray(image, dtype=np.float32) / np.float32(255)
    return pixels.transpose(2, 0, 1)


def preprocess_files(paths: list[Path], img_size: int, val_xtra: float = DEFAULT_VAL_XTRA) -> np.ndarray:
    """A batch of image files as the ONNX model's input: float32 [N, 3, img_size, img_size]."""
    return np.stack([preprocess(load_rgb(p), img_size, val_xtra) for p in paths])
