"""Near-duplicates: the same picture resized, recompressed, lightly cropped or mirrored, found by perceptual hash.

The rule, shared by the collector and the training job's audit: an image's hash is the 64-bit pHash of imagehash
4.3.2 (`imagehash.phash` on the RGB image), and its mirror hash the pHash of `ImageOps.mirror(image)`. Two
images are near-duplicates when one's hash is within MAX_BITS bits (Hamming distance) of the other's hash or of
the other's mirror hash, either way round, so a horizontal flip counts. The training job applies the same rule
(imgclf_trainjob.neardup, with imagehash itself) and also hashes each image's central 90%, which finds copies
cropped by up to a tenth; the collector, which decides before storing, compares whole images.

`phash_hex` computes exactly what imagehash computes (grey, 32 x 32 Lanczos, the 2-D DCT-II, the 8 x 8 lowest
frequencies against their median), in plain Python: numpy and scipy would not fit the collector function's
package. Its bits equal imagehash's except where a coefficient ties the median to rounding precision (a flat
picture). Mirroring an image flips the sign of the odd horizontal frequencies and nothing else (Pillow's resize
and grey conversion commute with the mirror), so the mirror hash comes from the same coefficients.

Standard library and Pillow only, and no other imgclf import.
"""

from __future__ import annotations

import math
from collections import defaultdict
from typing import NamedTuple

# The largest Hamming distance (of 64 bits) between near-duplicates: at 6 bits two of the flowers set's own groups
# joined different photographs, at 4 none did and every planted copy was still found (docs/training.md).
MAX_BITS = 4
HASH_SIZE = 8  # imagehash's hash_size: an 8 x 8 = 64-bit hash
_SIDE = 32  # imagehash's hash_size * highfreq_factor: the picture is reduced to 32 x 32 grey levels
_HEX_DIGITS = HASH_SIZE * HASH_SIZE // 4
# scipy.fftpack.dct's unnormalised DCT-II: y[k] = 2 * sum(x[n] * cos(pi * k * (2n + 1) / (2N))), low k only.
_COS = [[2 * math.cos(math.pi * k * (2 * n + 1) / (2 * _SIDE)) for n in range(_SIDE)] for k in range(HASH_SIZE)]


class PHash(NamedTuple):
    """An image's pHash and the pHash of its mirror image, 16 hex digits each (imagehash's str())."""

    hash: str
    mirror: str


def phash_hex(image) -> PHash:
    """The pHash of a PIL image and of its mirror image, as imagehash 4.3.2 writes them (16 hex digits)."""
    from PIL import Image

    grey = image.convert("L").resize((_SIDE, _SIDE), Image.Resampling.LANCZOS)
    pixels = grey.tobytes()  # one byte per grey level, row by row
    rows = [pixels[i * _SIDE:(i + 1) * _SIDE] for i in range(_SIDE)]
    # Along the columns (axis 0), the low frequencies only: t[k][n] = DCT of column n at frequency k.
    columns = list(zip(*rows, strict=True))
    t = [[_dot(_COS[k], column) for column in columns] for k in range(HASH_SIZE)]
    # Then along the rows (axis 1): d[k][l].
    d = [[_dot(_COS[lf], t[k]) for lf in range(HASH_SIZE)] for k in range(HASH_SIZE)]
    mirrored = [[-value if lf % 2 else value for lf, value in enumerate(row)] for row in d]
    return PHash(_hex(d), _hex(mirrored))


def _dot(a, b) -> float:
    return math.fsum(x * y for x, y in zip(a, b, strict=True))


def _hex(coefficients: list[list[float]]) -> str:
    """imagehash's hex: one bit per coefficient above the median, row by row, the first bit the highest."""
    flat = [value for row in coefficients for value in row]
    ordered = sorted(flat)
    middle = len(ordered) // 2
    median = (ordered[middle - 1] + ordered[middle]) / 2
    bits = 0
    for value in flat:
        bits = (bits << 1) | (value > median)
    return f"{bits:0{_HEX_DIGITS}x}"


def check_hex(value: str) -> int:
    """The hash a 16-hex-digit string holds; ValueError for anything else."""
    if not isinstance(value, str) or len(value) != _HEX_DIGITS:
        raise ValueError(f"a pHash is {_HEX_DIGITS} hex digits, not {value!r}")
    return int(value, 16)


def distance(a: str, b: str) -> int:
    """How many of the 64 bits two hex hashes differ in."""
    return (check_hex(a) ^ check_hex(b)).bit_count()


def near(a: PHash, b: PHash, max_bits: int = MAX_BITS) -> bool:
    """Whether two images are near-duplicates: one's hash within max_bits of the other's hash or mirror hash."""
    return (distance(a.hash, b.hash) <= max_bits or distance(a.hash, b.mirror) <= max_bits
            or distance(a.mirror, b.hash) <= max_bits)


class NearIndex:
    """Hashed images by key, answering "which are near-duplicates of this one" without comparing with each.

    The 64 bits are cut into max_bits + 1 bands: two hashes within max_bits differ in at most max_bits bands,
    so they agree on a whole band at least, and only the images that share a band value with the query are
    compared. Keys come back in the order they were added.
    """

    def __init__(self, max_bits: int = MAX_BITS):
        self.max_bits = max_bits
        bands = max_bits + 1
        width, extra = divmod(HASH_SIZE * HASH_SIZE, bands)
        self._bands: list[tuple[int, int]] = []  # (shift, mask)
        shift = 0
        for band in range(bands):
            bits = width + (band < extra)
            self._bands.append((shift, (1 << bits) - 1))
            shift += bits
        self._tables: list[dict[int, set[str]]] = [defaultdict(set) for _ in self._bands]
        self._hashes: dict[str, tuple[PHash, int]] = {}  # key -> (hashes, the order it was added in)
        self._added = 0

    def __len__(self) -> int:
        return len(self._hashes)

    def __contains__(self, key: str) -> bool:
        return key in self._hashes

    def get(self, key: str) -> PHash | None:
        entry = self._hashes.get(key)
        return entry[0] if entry else None

    def add(self, key: str, phash: PHash) -> None:
        """Index an image's hashes under its key (replacing what the key had)."""
        self.remove(key)
        self._hashes[key] = (phash, self._added)
        self._added += 1
        for value in {check_hex(phash.hash), check_hex(phash.mirror)}:
            for table, (shift, mask) in zip(self._tables, self._bands, strict=True):
                table[(value >> shift) & mask].add(key)

    def remove(self, key: str) -> None:
        entry = self._hashes.pop(key, None)
        if entry is None:
            return
        for value in {check_hex(entry[0].hash), check_hex(entry[0].mirror)}:
            for table, (shift, mask) in zip(self._tables, self._bands, strict=True):
                keys = table.get((value >> shift) & mask)
                if keys is not None:
                    keys.discard(key)
                    if not keys:
                        del table[(value >> shift) & mask]

    def matches(self, phash: PHash) -> list[str]:
        """The keys of every indexed image that is a near-duplicate of this one, in the order they were added."""
        candidates: set[str] = set()
        for value in {check_hex(phash.hash), check_hex(phash.mirror)}:
            for table, (shift, mask) in zip(self._tables, self._bands, strict=True):
                candidates |= table.get((value >> shift) & mask, set())
        found = [key for key in candidates if near(phash, self._hashes[key][0], self.max_bits)]
        return sorted(found, key=lambda key: self._hashes[key][1])

