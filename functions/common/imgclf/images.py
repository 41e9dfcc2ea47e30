"""Image bytes from untrusted sources: sniffed, decoded safely, validated and normalised to RGB.

The collector and the classifier both start here, so every image the project stores or classifies has
passed the same checks: the format is known from its magic bytes (never from a Content-Type header),
decompression bombs are refused from the header before any pixel is decoded, truncated or corrupt files are
refused after a full decode, and every mode (CMYK, palette, alpha, 16-bit, bilevel) becomes plain RGB.
"""

from __future__ import annotations

import hashlib
import io
import struct
import threading
import warnings

from PIL import ExifTags, Image, ImageOps, UnidentifiedImageError

from .errors import ImageRejected

# Sniffed kind -> the only Pillow plugin allowed to parse it: no file reaches a parser it was not sniffed as.
PILLOW_FORMATS = {"jpeg": "JPEG", "png": "PNG", "gif": "GIF", "webp": "WEBP", "bmp": "BMP"}
REJECTION_REASONS = (
    "empty",
    "not_an_image",
    "unsupported_format",
    "truncated",
    "decompression_bomb",
    "too_small",
    "corrupt",
)

# BITMAPCOREHEADER, BITMAPINFOHEADER and its V2-V5 successors: a real BMP names one of these sizes.
_BMP_HEADER_SIZES = {12, 16, 40, 52, 56, 64, 108, 124}
# Other image formats people meet on the web; recognised only to say "unsupported" rather than "not an image".
_OTHER_IMAGE_MAGIC = (
    (b"II*\x00", "TIFF"),
    (b"MM\x00*", "TIFF"),
    (b"\x00\x00\x01\x00", "ICO"),
    (b"8BPS", "PSD"),
    (b"\x00\x00\x00\x0cjP  ", "JPEG 2000"),
    (b"\xff\x4f\xff\x51", "JPEG 2000"),
    (b"\xff\x0a", "JPEG XL"),
    (b"\x00\x00\x00\x0cJXL ", "JPEG XL"),
)
_ISO_BMFF_BRANDS = {b"heic": "HEIC", b"heix": "HEIC", b"mif1": "HEIF", b"msf1": "HEIF", b"avif": "AVIF"}
_HASH_STRIP_ROWS = 256

# Image.open reads the global Pillow limit and the global warnings filters; both are shared by every thread.
_open_lock = threading.Lock()


def sniff(data: bytes) -> str | None:
    """The image format the magic bytes announce ("jpeg", "png", "gif", "webp", "bmp"), or None."""
    if data[:3] == b"\xff\xd8\xff":
        return "jpeg"
    if data[:8] == b"\x89PNG\r\n\x1a\n":
        return "png"
    if data[:6] in (b"GIF87a", b"GIF89a"):
        return "gif"
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "webp"
    if data[:2] == b"BM" and len(data) >= 18 and struct.unpack_from("<I", data, 14)[0] in _BMP_HEADER_SIZES:
        return "bmp"
    return None


def decode(data: bytes, *, max_pixels: int, min_side: int = 1) -> Image.Image:
    """Decode untrusted image bytes into an upright RGB image, or raise ImageRejected saying why not."""
    if not data:
        raise ImageRejected("empty", "the file is empty")
    kind = sniff(data)
    if kind is None:
        raise _unknown_format(data)
    img = _open_checked(data, kind, max_pixels)
    try:
        img.load()
    except Image.DecompressionBombError as exc:
        raise ImageRejected("decompression_bomb", str(exc)) from exc
    except (OSError, SyntaxError, ValueError, EOFError, struct.error, IndexError) as exc:
        raise _decode_failure(kind, data, exc) from exc
    try:
        img = to_rgb(_upright(img))
    except (OSError, ValueError) as exc:  # a mode Pillow cannot convert, e.g. a broken palette
        raise ImageRejected("corrupt", f"{kind}: {exc}") from exc
    width, height = img.size
    if min(width, height) < min_side:
        raise ImageRejected("too_small", f"{width}x{height} is smaller than {min_side} px on a side")
    return img


def to_rgb(img: Image.Image) -> Image.Image:
    """Convert any Pillow mode to RGB: transparency composited on white, 16-bit scaled rather than clipped."""
    if img.mode == "RGB":
        return img
    if img.mode in ("I", "F") or img.mode.startswith("I;16"):
        # Pillow clips 16-bit values to 255 when converting; scale them to 8 bits instead.
        img = img.convert("I").point(lambda value: value * (1 / 256)).convert("L")
    if img.mode == "P" and "transparency" in img.info:
        img = img.convert("RGBA")
    if img.mode in ("RGBA", "LA", "PA", "RGBa", "La"):
        rgba = img.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    return img.convert("RGB")


def to_jpeg(img: Image.Image, *, max_side: int, quality: int = 90) -> bytes:
    """Encode an image as an RGB JPEG without metadata, downscaled so its longer side is at most max_side."""
    img = to_rgb(img)
    size = fitted_size(img.width, img.height, max_side)
    if size != img.size:
        img = img.resize(size, Image.Resampling.LANCZOS)
    buffer = io.BytesIO()
    # Nothing from the source file (EXIF, ICC, comments) is passed on: the pixels are all we keep.
    img.save(buffer, format="JPEG", quality=quality)
    return buffer.getvalue()


def fitted_size(width: int, height: int, max_side: int) -> tuple[int, int]:
    """The size to_jpeg gives a width x height image: aspect kept, longer side at most max_side."""
    scale = max_side / max(width, height)
    if scale >= 1:
        return width, height
    return max(1, round(width * scale)), max(1, round(height * scale))


def content_hash(img: Image.Image) -> str:
    """The sha256 of an image's pixels, size and mode: equal for the same picture whatever file carried it."""
    digest = hashlib.sha256(f"{img.mode}:{img.width}x{img.height}:".encode())
    # Strips keep a large image from being copied whole into one bytes object.
    for top in range(0, img.height, _HASH_STRIP_ROWS):
        digest.update(img.crop((0, top, img.width, min(top + _HASH_STRIP_ROWS, img.height))).tobytes())
    return digest.hexdigest()


def _open_checked(data: bytes, kind: str, max_pixels: int) -> Image.Image:
    """Parse the header only and refuse an image whose declared size exceeds max_pixels."""
    with _open_lock, warnings.catch_warnings():
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        # Pillow's own limit only ever rises here, so no caller can lower another's; ours is checked below.
        if Image.MAX_IMAGE_PIXELS is not None and max_pixels > Image.MAX_IMAGE_PIXELS:
            Image.MAX_IMAGE_PIXELS = max_pixels
        try:
            img = Image.open(io.BytesIO(data), formats=[PILLOW_FORMATS[kind]])
        except (Image.DecompressionBombWarning, Image.DecompressionBombError) as exc:
            raise ImageRejected("decompression_bomb", str(exc)) from exc
        except (UnidentifiedImageError, OSError, SyntaxError, ValueError, EOFError, struct.error) as exc:
            raise _decode_failure(kind, data, exc) from exc
    width, height = img.size
    if width * height > max_pixels:
        raise ImageRejected(
            "decompression_bomb", f"{width}x{height} = {width * height} pixels is more than {max_pixels}"
        )
    if width < 1 or height < 1:
        raise ImageRejected("corrupt", f"the header declares a {width}x{height} image")
    return img


def _upright(img: Image.Image) -> Image.Image:
    """Apply the EXIF orientation so the pixels are stored the way the photo is meant to be seen."""
    try:
        if img.getexif().get(ExifTags.Base.Orientation, 1) == 1:
            return img  # exif_transpose would return a copy: most photos need nothing
        return ImageOps.exif_transpose(img)
    except (OSError, SyntaxError, ValueError, KeyError, TypeError, struct.error):
        # A malformed EXIF block must not cost a good picture: keep it as decoded.
        return img


def _unknown_format(data: bytes) -> ImageRejected:
    """Say whether bytes that are none of the accepted formats are another image format or no image at all."""
    for magic, name in _OTHER_IMAGE_MAGIC:
        if data.startswith(magic):
            return ImageRejected("unsupported_format", f"{name} images are not accepted")
    if data[4:8] == b"ftyp" and data[8:12] in _ISO_BMFF_BRANDS:
        return ImageRejected("unsupported_format", f"{_ISO_BMFF_BRANDS[data[8:12]]} images are not accepted")
    head = data[:512].lstrip().lower()
    if b"<svg" in head or (head.startswith(b"<?xml") and b"svg" in data[:4096].lower()):
        return ImageRejected("not_an_image", "SVG is a document, not a raster image")
    if head.startswith((b"<!doctype html", b"<html")) or b"<html" in head:
        return ImageRejected("not_an_image", "the file is an HTML page")
    return ImageRejected("not_an_image", f"unrecognised content starting {data[:8]!r}")


def _decode_failure(kind: str, data: bytes, exc: Exception) -> ImageRejected:
    """Classify a Pillow failure on sniffed bytes as a truncated file or a corrupt one."""
    message = f"{kind}: {exc}"
    if "truncated" in str(exc).lower() or _looks_truncated(kind, data):
        return ImageRejected("truncated", message)
    return ImageRejected("corrupt", message)


def _looks_truncated(kind: str, data: bytes) -> bool:
    """Whether the file stops before the end its own structure announces."""
    if kind == "webp" and len(data) >= 8:
        return len(data) < struct.unpack_from("<I", data, 4)[0] + 8
    if kind == "bmp" and len(data) >= 6:
        return len(data) < struct.unpack_from("<I", data, 2)[0]
    if kind == "png":
        return b"IEND" not in data[-32:]
    if kind == "gif":
        return not data.rstrip(b"\x00").endswith(b"\x3b")
    if kind == "jpeg":
        return b"\xff\xd9" not in data[-64:]
    return False
