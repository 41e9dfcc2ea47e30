"""Near-duplicates: imagehash's pHash in plain Python, the rule that two images are the same picture, the index."""

from __future__ import annotations

import io
import random

import imagehash
import numpy as np
import pytest
from PIL import Image, ImageOps

from imgclf.neardup import MAX_BITS, NearIndex, PHash, distance, near, phash_hex
from tests.support.images import real_photos, synthetic_photo


def picture(seed: int, size: tuple[int, int] = (320, 240)) -> Image.Image:
    """A photo-like picture: noise around one colour, with a few rectangles; another for every seed."""
    return synthetic_photo(np.random.default_rng(seed), (120, 90, 60), size)


def recompressed(img: Image.Image, quality: int) -> Image.Image:
    buffer = io.BytesIO()
    img.save(buffer, "JPEG", quality=quality)
    return Image.open(io.BytesIO(buffer.getvalue())).convert("RGB")


def reference(img: Image.Image) -> PHash:
    """What imagehash 4.3.2 says: the pHash of the image and of its mirror image."""
    return PHash(str(imagehash.phash(img)), str(imagehash.phash(ImageOps.mirror(img))))


@pytest.mark.parametrize("size", [(64, 64), (320, 240), (77, 301), (1024, 683)])
def test_the_hashes_are_the_bits_imagehash_computes(size):
    # GIVEN a picture of some size
    img = picture(sum(size), size)

    # WHEN it is hashed
    hashes = phash_hex(img)

    # THEN the hash and the mirror hash are imagehash's, 16 hex digits each
    assert hashes == reference(img)
    assert all(len(value) == 16 and int(value, 16) >= 0 for value in hashes)


def test_the_hashes_are_imagehashs_on_real_photos_too():
    # GIVEN real photos (the shared ants-bees set)
    photos = real_photos("valid", per_class=10)
    if not photos:
        pytest.skip("the shared ants-bees photos are not here")

    # WHEN each is hashed
    # THEN every hash is imagehash's
    for path in photos:
        with Image.open(path) as img:
            rgb = img.convert("RGB")
        assert phash_hex(rgb) == reference(rgb), path.name


@pytest.mark.parametrize(
    "copy",
    [
        lambda img: img.resize((160, 120), Image.Resampling.BILINEAR),
        lambda img: img.resize((800, 600), Image.Resampling.BICUBIC),
        lambda img: recompressed(img, 40),
        ImageOps.mirror,
        lambda img: recompressed(ImageOps.mirror(img.resize((200, 150))), 60),
    ],
    ids=["smaller", "larger", "jpeg-quality-40", "mirrored", "mirrored-resized-recompressed"],
)
@pytest.mark.parametrize("seed", [0, 2, 5])
def test_a_resized_recompressed_or_mirrored_copy_is_a_near_duplicate(seed, copy):
    # GIVEN a photo-like picture and a copy of it
    original = picture(seed)

    # WHEN both are hashed
    a, b = phash_hex(original), phash_hex(copy(original))

    # THEN they are near-duplicates, whichever way round
    assert near(a, b) and near(b, a)


@pytest.mark.parametrize("seeds", [(0, 100), (1, 101), (2, 3), (4, 5)])
def test_two_different_pictures_are_not_near_duplicates(seeds):
    # GIVEN two different pictures of the same colour and size
    a, b = (phash_hex(picture(seed)) for seed in seeds)

    # WHEN they are compared
    # THEN they are not near-duplicates, mirrored or not
    assert not near(a, b) and not near(b, a)
    assert min(distance(a.hash, b.hash), distance(a.hash, b.mirror)) > MAX_BITS


def test_the_threshold_is_a_hamming_distance_of_at_most_four_bits():
    # GIVEN a hash and hashes 4 and 5 bits away from it (whose mirrors are far from everything)
    base = PHash("0" * 16, "f" * 16)
    four, five = PHash(f"{0b1111:016x}", "f" * 16), PHash(f"{0b11111:016x}", "f" * 16)

    # WHEN they are compared
    # THEN 4 bits is near and 5 is not, unless a larger threshold is asked for
    assert MAX_BITS == 4
    assert distance(base.hash, four.hash) == 4 and near(base, four)
    assert not near(base, five) and near(base, five, max_bits=5)


def test_a_hash_that_is_not_sixteen_hex_digits_is_refused():
    with pytest.raises(ValueError, match="16 hex digits"):
        distance("abc", "0" * 16)


def random_hash(rng: random.Random) -> int:
    return rng.getrandbits(64)


def flip(value: int, bits: int, rng: random.Random) -> int:
    for bit in rng.sample(range(64), bits):
        value ^= 1 << bit
    return value


def test_the_index_finds_exactly_what_comparing_with_every_image_finds():
    # GIVEN 2000 random hashes, a third of them made within 0 to 8 bits of an earlier one (hash or mirror)
    rng = random.Random(7)
    hashes: list[PHash] = []
    for n in range(2000):
        if n and n % 3 == 0:
            other = rng.choice(hashes)
            source = int(rng.choice(other), 16)
            value = flip(source, rng.randint(0, 8), rng)
            hashes.append(PHash(f"{value:016x}", f"{random_hash(rng):016x}"))
        else:
            hashes.append(PHash(f"{random_hash(rng):016x}", f"{random_hash(rng):016x}"))
    index = NearIndex()
    for n, value in enumerate(hashes):
        index.add(str(n), value)

    # WHEN each of a sample is looked up
    # THEN the index answers what the rule says for every pair, in the order the images were added
    for n in rng.sample(range(len(hashes)), 200):
        expected = [str(m) for m, other in enumerate(hashes) if near(hashes[n], other)]
        assert index.matches(hashes[n]) == expected
        assert str(n) in expected


def test_an_image_removed_from_the_index_is_no_longer_found():
    # GIVEN an index of a picture and its mirrored copy
    index = NearIndex()
    index.add("original", phash_hex(picture(1)))
    index.add("mirrored", phash_hex(ImageOps.mirror(picture(1))))

    # WHEN the original is removed
    index.remove("original")

    # THEN a recompressed copy finds only the mirrored one, and the index holds one image
    assert index.matches(phash_hex(recompressed(picture(1), 50))) == ["mirrored"]
    assert len(index) == 1 and "original" not in index
