"""The onnx backend answers as fastai's learn.predict does, on real photos and on awkward images.

imgclf decodes every image with images.decode, which applies the EXIF orientation and composites alpha on
white; fastai's own loader does neither. So awkward images are compared on the same decoded PIL image; real
photos without an EXIF rotation are also compared with learn.predict on the file path, fastai's own way in.
"""

from __future__ import annotations

import io
import warnings
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from imgclf import images
from imgclf.errors import ImageRejected
from imgclf.inference import Calibration, ModelMetadata, Recipe, decode_reduced, load_backend
from imgclf.inference.model import LoadedModel
from tests.support.images import jpeg_bytes, synthetic_photo

TOLERANCE = 1e-4
MAX_PIXELS = 40_000_000


@pytest.fixture(scope="module")
def metadata(trained_model) -> ModelMetadata:
    return ModelMetadata.load(trained_model / "model.json")


@pytest.fixture(scope="module")
def onnx_model(trained_model, metadata) -> LoadedModel:
    return LoadedModel("test", load_backend("onnx", trained_model, metadata), metadata)


@pytest.fixture(scope="module")
def fastai_model(trained_model, metadata) -> LoadedModel:
    return LoadedModel("test", load_backend("fastai", trained_model, metadata), metadata)


@pytest.fixture(scope="module")
def learn(fastai_model):
    return fastai_model.backend.learn


def fastai_probabilities(learn, item) -> np.ndarray:
    """learn.predict's probabilities, the original app's way of classifying one image."""
    with warnings.catch_warnings(), learn.no_logging():
        warnings.simplefilter("ignore")
        return learn.predict(item)[2].numpy()


def onnx_probabilities(model: LoadedModel, data: bytes) -> np.ndarray:
    image = images.decode(data, max_pixels=MAX_PIXELS)
    return np.array(list(model.classify([image])[0].probabilities.values()))


def exif_rotated_jpeg() -> bytes:
    """A JPEG stored sideways with EXIF orientation 6 (rotate 90° clockwise to view)."""
    exif = Image.Exif()
    exif[0x0112] = 6
    img = synthetic_photo(np.random.default_rng(5), (60, 60, 170), (160, 90))
    return jpeg_bytes(img, exif=exif.tobytes())


def cmyk_jpeg() -> bytes:
    return jpeg_bytes(synthetic_photo(np.random.default_rng(6), (120, 140, 40), (110, 130)).convert("CMYK"))


def png_with_alpha() -> bytes:
    rgba = synthetic_photo(np.random.default_rng(8), (170, 60, 40), (120, 100)).convert("RGBA")
    alpha = np.zeros((100, 120), dtype=np.uint8)
    alpha[20:80, 30:90] = 255
    rgba.putalpha(Image.fromarray(alpha))
    buffer = io.BytesIO()
    rgba.save(buffer, format="PNG")
    return buffer.getvalue()


AWKWARD = {
    "wide": lambda: jpeg_bytes(synthetic_photo(np.random.default_rng(1), (170, 60, 40), (400, 90))),
    "tall": lambda: jpeg_bytes(synthetic_photo(np.random.default_rng(2), (60, 60, 170), (90, 400))),
    "grayscale": lambda: jpeg_bytes(synthetic_photo(np.random.default_rng(3), (128, 128, 128), (150, 120))
                                    .convert("L")),
    "cmyk": cmyk_jpeg,
    "png_alpha": png_with_alpha,
    "exif_rotated": exif_rotated_jpeg,
    "tiny": lambda: jpeg_bytes(synthetic_photo(np.random.default_rng(4), (170, 60, 40), (65, 300))),
}


def real_photos(datasets_dir: Path, count: int = 40) -> list[Path]:
    """An even spread of the validation photos (learn.predict is slow), plus every EXIF-rotated one."""
    folder = datasets_dir / "ants-bees" / "valid"
    if not folder.is_dir():
        pytest.skip(f"{folder} not found")
    photos = sorted(folder.glob("*/*.jpg"))
    step = max(1, len(photos) // count)
    return sorted({*photos[::step], *(p for p in photos if exif_orientation(p) != 1)})


def exif_orientation(path: Path) -> int:
    with Image.open(path) as img:
        return img.getexif().get(0x0112, 1)


def test_onnx_matches_learn_predict_on_real_photos(onnx_model, learn, datasets_dir):
    # GIVEN the ants-bees validation photos
    photos = real_photos(datasets_dir)

    # WHEN each is classified by the onnx backend and by learn.predict
    worst = 0.0
    for path in photos:
        data = path.read_bytes()
        decoded = images.decode(data, max_pixels=MAX_PIXELS)
        reference = fastai_probabilities(learn, path if exif_orientation(path) == 1 else decoded)
        worst = max(worst, float(np.abs(onnx_probabilities(onnx_model, data) - reference).max()))

    # THEN every probability agrees within the tolerance
    assert len(photos) >= 30
    assert worst <= TOLERANCE


@pytest.mark.parametrize("kind", sorted(AWKWARD))
def test_onnx_matches_learn_predict_on_awkward_images(onnx_model, learn, kind):
    # GIVEN an awkward image, decoded the way imgclf decodes it
    data = AWKWARD[kind]()
    decoded = images.decode(data, max_pixels=MAX_PIXELS)

    # WHEN the onnx backend and learn.predict classify it
    ours = onnx_probabilities(onnx_model, data)
    reference = fastai_probabilities(learn, decoded)

    # THEN they agree
    assert np.abs(ours - reference).max() <= TOLERANCE


def test_exif_rotation_is_applied_before_classification():
    # GIVEN a JPEG stored 160x90 with EXIF orientation 6
    # WHEN imgclf decodes it
    decoded = images.decode(exif_rotated_jpeg(), max_pixels=MAX_PIXELS)

    # THEN it is upright: 90 wide, 160 tall
    assert decoded.size == (90, 160)


def test_recipe_reproduces_fastais_input_tensor(learn, metadata):
    # GIVEN a non-square image and the Normalize stats of the learner
    image = images.decode(AWKWARD["wide"](), max_pixels=MAX_PIXELS)
    normalize = next(t for t in learn.dls.after_batch.fs if type(t).__name__ == "Normalize")

    # WHEN fastai builds its (normalised) batch and the recipe builds the [0, 1] array
    batch = learn.dls.test_dl([image], num_workers=0).one_batch()[0]
    ours = metadata.recipe.to_batch([image])

    # THEN they are the same tensor up to the normalisation
    expected = (batch * normalize.std + normalize.mean).cpu().numpy()
    assert ours.shape == expected.shape == (1, 3, metadata.recipe.img_size, metadata.recipe.img_size)
    assert np.array_equal(np.rint(ours * 255), np.rint(expected * 255))  # the same 8-bit pixels
    assert np.abs(ours - expected).max() < 1e-5  # what is left is the float error of un-normalising


def test_fastai_backend_gives_the_same_answer_through_the_same_interface(onnx_model, fastai_model):
    # GIVEN a mixed batch of awkward images
    decoded = [images.decode(make(), max_pixels=MAX_PIXELS) for make in AWKWARD.values()]

    # WHEN both backends classify the batch through LoadedModel
    ours, theirs = onnx_model.classify(decoded), fastai_model.classify(decoded)

    # THEN labels agree and probabilities agree within the tolerance
    assert [p.label for p in ours] == [p.label for p in theirs]
    for a, b in zip(ours, theirs, strict=True):
        assert max(abs(a.probabilities[c] - b.probabilities[c]) for c in a.probabilities) <= TOLERANCE


def test_recipe_matches_fastai_valid_geometry():
    # GIVEN fastai's defaults, RandomResizedCrop(224) and RandomResizedCrop(64)
    # THEN the squash size and the centre crop are fastai's
    assert Recipe.fastai_valid(224).resize_to == (256, 256)
    assert Recipe.fastai_valid(224).crop_box == (16, 16, 240, 240)
    assert Recipe.fastai_valid(64).resize_to == (80, 80)


def test_reduced_decode_is_exact_for_images_too_small_to_shrink(metadata):
    # GIVEN a JPEG under twice the recipe's resize side
    data = AWKWARD["wide"]()

    # WHEN it is decoded both ways
    exact = images.decode(data, max_pixels=MAX_PIXELS)
    fast = decode_reduced(data, side=metadata.recipe.resize_to[0], max_pixels=MAX_PIXELS)

    # THEN the pixels are identical
    assert np.array_equal(np.asarray(exact), np.asarray(fast))


def test_reduced_decode_of_a_large_jpeg_is_close_to_the_exact_path(metadata):
    # GIVEN a large photo-like JPEG
    big = synthetic_photo(np.random.default_rng(9), (120, 100, 80), (1600, 1200)).resize((1600, 1200))
    data = jpeg_bytes(big)

    # WHEN both decodes go through the recipe
    exact = metadata.recipe.to_array(images.decode(data, max_pixels=MAX_PIXELS))
    fast_image = decode_reduced(data, side=metadata.recipe.resize_to[0], max_pixels=MAX_PIXELS)
    fast = metadata.recipe.to_array(fast_image)

    # THEN libjpeg decoded fewer pixels and the model input differs only slightly
    assert fast_image.size[0] < 1600
    assert np.abs(exact - fast).mean() < 0.02


@pytest.mark.parametrize("data, reason", [
    (b"", "empty"),
    (b"hello, world", "not_an_image"),
])
def test_reduced_decode_rejects_like_the_exact_path(data, reason):
    with pytest.raises(ImageRejected) as caught:
        decode_reduced(data, side=80, max_pixels=MAX_PIXELS)
    assert caught.value.reason == reason


def test_calibrated_backends_give_the_same_probabilities_and_verdicts(trained_model, metadata, onnx_model,
                                                                      fastai_model):
    # GIVEN both backends with the model's calibration.json
    calibration = Calibration.load(trained_model / "calibration.json", metadata.classes)
    onnx_cal = replace(onnx_model, calibration=calibration)
    fastai_cal = replace(fastai_model, calibration=calibration)
    decoded = [images.decode(make(), max_pixels=MAX_PIXELS) for make in AWKWARD.values()]

    # WHEN both classify the same batch
    ours, theirs = onnx_cal.classify(decoded), fastai_cal.classify(decoded)

    # THEN both serve calibrated probabilities that agree, with the same verdicts, reasons and detector scores
    assert all(p.calibrated for p in ours + theirs)
    assert calibration.ood is not None and all(p.ood_score is not None for p in ours + theirs)
    assert ([(p.label, p.verdict, p.unknown_reason) for p in ours]
            == [(p.label, p.verdict, p.unknown_reason) for p in theirs])
    for a, b in zip(ours, theirs, strict=True):
        assert max(abs(a.probabilities[c] - b.probabilities[c]) for c in a.probabilities) <= TOLERANCE
        assert abs(a.ood_score - b.ood_score) <= 1e-3


def test_onnx_features_output_is_what_fastais_last_layer_reads(onnx_model, fastai_model):
    # GIVEN real photos through each backend's own preprocessing
    decoded = [images.decode(make(), max_pixels=MAX_PIXELS) for make in AWKWARD.values()]

    # WHEN both backends run them
    ours = onnx_model.backend.outputs([onnx_model.prepare(i) for i in decoded])
    theirs = fastai_model.backend.outputs([fastai_model.prepare(i) for i in decoded])

    # THEN the ONNX graph's second output is the input of fastai's classifier layer
    assert ours.features.shape == theirs.features.shape == (len(decoded), ours.features.shape[1])
    np.testing.assert_allclose(ours.features, theirs.features, atol=2e-3, rtol=1e-3)
