"""imgclf.images: every accepted format decodes to upright RGB; everything else is refused with its reason."""

from __future__ import annotations

import io
import struct
import zlib
from concurrent.futures import ThreadPoolExecutor

import pytest
from PIL import Image

from imgclf import images
from imgclf.errors import ImageRejected

LIMIT = 10_000_000


def encode(img: Image.Image, fmt: str, **params) -> bytes:
    buffer = io.BytesIO()
    img.save(buffer, fmt, **params)
    return buffer.getvalue()


def rgb(size=(120, 80), color=(200, 30, 60)) -> Image.Image:
    return Image.new("RGB", size, color)


def png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def png_declaring(width: int, height: int) -> bytes:
    """A tiny PNG whose header claims a huge image: what a decompression bomb looks like before decoding."""
    header = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)  # 1-bit greyscale
    return b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", header) + png_chunk(b"IEND", b"")


def reason_of(data: bytes, **kwargs) -> str:
    with pytest.raises(ImageRejected) as caught:
        images.decode(data, max_pixels=kwargs.pop("max_pixels", LIMIT), **kwargs)
    return caught.value.reason


@pytest.mark.parametrize(
    ("fmt", "kind"), [("JPEG", "jpeg"), ("PNG", "png"), ("GIF", "gif"), ("WEBP", "webp"), ("BMP", "bmp")]
)
def test_every_accepted_format_is_sniffed_and_decoded_to_rgb(fmt, kind):
    # GIVEN a 120x80 picture saved in one of the accepted formats
    data = encode(rgb(), fmt)

    # WHEN it is sniffed and decoded
    sniffed = images.sniff(data)
    img = images.decode(data, max_pixels=LIMIT)

    # THEN the magic bytes name the format and the result is an RGB image of the same size
    assert sniffed == kind
    assert img.mode == "RGB"
    assert img.size == (120, 80)


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"<!DOCTYPE html><html><body>Not found</body></html>",
        b'<?xml version="1.0"?><svg xmlns="http://www.w3.org/2000/svg"/>',
        b"BM but only text here, nothing like a bitmap header",
        b"II*\x00" + b"\x00" * 20,
    ],
    ids=["empty", "html", "svg", "text-starting-BM", "tiff"],
)
def test_sniff_names_no_format_for_anything_but_the_five_accepted_ones(data):
    # GIVEN bytes that are no JPEG, PNG, GIF, WebP or BMP
    # WHEN they are sniffed
    # THEN no format is named
    assert images.sniff(data) is None


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (b"", "empty"),
        (b"<!doctype html>\n<html><head><title>Login</title></head></html>", "not_an_image"),
        (b'<svg xmlns="http://www.w3.org/2000/svg" width="10" height="10"><rect/></svg>', "not_an_image"),
        (
            b'<?xml version="1.0" encoding="UTF-8"?>\n<svg xmlns="http://www.w3.org/2000/svg"/>',
            "not_an_image",
        ),
        (b'{"error": "rate limited"}', "not_an_image"),
        (b"II*\x00\x08\x00\x00\x00" + b"\x00" * 64, "unsupported_format"),
        (b"\x00\x00\x00\x1cftypheic" + b"\x00" * 64, "unsupported_format"),
    ],
    ids=["zero-bytes", "html", "svg", "svg-with-xml-prolog", "json", "tiff", "heic"],
)
def test_bytes_that_are_not_an_accepted_image_are_refused_with_the_reason(data, reason):
    # GIVEN bytes a server might send instead of an image
    # WHEN they are decoded
    # THEN they are refused, saying why
    assert reason_of(data) == reason


@pytest.mark.parametrize("fmt", ["JPEG", "PNG", "GIF", "WEBP", "BMP"])
def test_a_truncated_file_is_refused_as_truncated(fmt):
    # GIVEN the first 60% of a valid file
    data = encode(Image.effect_noise((200, 200), 60).convert("RGB"), fmt)
    cut = data[: len(data) * 6 // 10]

    # WHEN it is decoded
    # THEN it is refused as truncated rather than stored half grey
    assert reason_of(cut) == "truncated"


def test_a_png_with_corrupt_compressed_data_is_refused_as_corrupt():
    # GIVEN a complete PNG whose compressed pixel data has been damaged
    data = bytearray(encode(Image.effect_noise((64, 64), 60).convert("RGB"), "PNG"))
    start = data.index(b"IDAT") + 4
    data[start + 10 : start + 40] = b"\xff" * 30

    # WHEN it is decoded
    # THEN it is refused as corrupt
    assert reason_of(bytes(data)) == "corrupt"


def test_a_header_declaring_more_pixels_than_the_limit_is_refused_before_decoding():
    # GIVEN a 150-byte PNG that claims to be 20000 x 20000 (400 megapixels, over Pillow's own hard limit)
    data = png_declaring(20_000, 20_000)

    # WHEN it is decoded with a 40-megapixel limit
    # THEN it is refused as a decompression bomb
    assert reason_of(data, max_pixels=40_000_000) == "decompression_bomb"


def test_an_image_over_the_callers_limit_but_under_pillows_is_refused_as_a_bomb():
    # GIVEN a real 3000 x 2000 image (6 megapixels)
    data = encode(Image.new("L", (3000, 2000)), "PNG")

    # WHEN the caller allows only 1 megapixel
    # THEN it is refused from its header
    assert reason_of(data, max_pixels=1_000_000) == "decompression_bomb"


def test_an_image_smaller_than_the_minimum_side_is_refused_as_too_small():
    # GIVEN a 300 x 20 banner
    data = encode(rgb((300, 20)), "PNG")

    # WHEN it is decoded with a 64 px minimum side
    # THEN it is refused as too small
    assert reason_of(data, min_side=64) == "too_small"


def test_a_cmyk_jpeg_becomes_rgb():
    # GIVEN a CMYK JPEG (as print workflows produce)
    data = encode(Image.new("CMYK", (80, 80), (0, 255, 255, 0)), "JPEG")

    # WHEN it is decoded
    img = images.decode(data, max_pixels=LIMIT)

    # THEN it is RGB and still red
    red, green, blue = img.getpixel((40, 40))
    assert img.mode == "RGB"
    assert red > 200 and green < 60 and blue < 60


def test_a_palette_png_with_a_transparent_colour_is_composited_on_white():
    # GIVEN a palette PNG whose only colour is marked transparent
    img = Image.new("P", (64, 64), 0)
    img.putpalette([10, 20, 30] * 256)
    data = encode(img, "PNG", transparency=0)

    # WHEN it is decoded
    decoded = images.decode(data, max_pixels=LIMIT)

    # THEN the transparent pixels are white, not the palette colour or black
    assert decoded.mode == "RGB"
    assert decoded.getpixel((5, 5)) == (255, 255, 255)


@pytest.mark.parametrize("mode", ["RGBA", "LA"])
def test_transparent_pixels_become_white_and_opaque_ones_keep_their_colour(mode):
    # GIVEN an image whose left half is fully transparent and right half opaque black
    img = Image.new(mode, (64, 64), (0, 0, 0, 0) if mode == "RGBA" else (0, 0))
    img.paste((0, 0, 0, 255) if mode == "RGBA" else (0, 255), (32, 0, 64, 64))
    data = encode(img, "PNG")

    # WHEN it is decoded
    decoded = images.decode(data, max_pixels=LIMIT)

    # THEN the transparent half is white and the opaque half black
    assert decoded.getpixel((5, 5)) == (255, 255, 255)
    assert decoded.getpixel((50, 5)) == (0, 0, 0)


def test_a_16_bit_greyscale_png_is_scaled_to_8_bits_not_clipped():
    # GIVEN a 16-bit greyscale PNG at value 1600 of 65535 (dark grey)
    img = Image.frombytes("I;16", (64, 64), struct.pack("<H", 1600) * 64 * 64)
    data = encode(img, "PNG")

    # WHEN it is decoded
    decoded = images.decode(data, max_pixels=LIMIT)

    # THEN it is dark grey in 8 bits (1600 / 256 = 6), not clipped to white
    assert decoded.mode == "RGB"
    assert decoded.getpixel((10, 10)) == (6, 6, 6)


def test_a_bilevel_image_becomes_rgb():
    # GIVEN a 1-bit image, white with a black square
    img = Image.new("1", (64, 64), 1)
    img.paste(0, (0, 0, 32, 32))
    data = encode(img, "PNG")

    # WHEN it is decoded
    decoded = images.decode(data, max_pixels=LIMIT)

    # THEN black stays black and white stays white, in RGB
    assert decoded.getpixel((5, 5)) == (0, 0, 0)
    assert decoded.getpixel((50, 50)) == (255, 255, 255)


def test_the_exif_orientation_is_applied():
    # GIVEN a 120x80 JPEG whose EXIF says "rotate 90 degrees clockwise to display"
    exif = Image.Exif()
    exif[0x0112] = 6
    data = encode(rgb((120, 80)), "JPEG", exif=exif.tobytes())

    # WHEN it is decoded
    decoded = images.decode(data, max_pixels=LIMIT)

    # THEN the pixels are upright: 80 wide, 120 high
    assert decoded.size == (80, 120)


def test_only_the_first_frame_of_an_animated_gif_is_used():
    # GIVEN an animated GIF whose first frame is red and second blue
    frames = [Image.new("RGB", (64, 64), (255, 0, 0)), Image.new("RGB", (64, 64), (0, 0, 255))]
    buffer = io.BytesIO()
    frames[0].save(buffer, "GIF", save_all=True, append_images=frames[1:], duration=100)

    # WHEN it is decoded
    decoded = images.decode(buffer.getvalue(), max_pixels=LIMIT)

    # THEN the image is the red first frame
    assert decoded.getpixel((10, 10)) == (255, 0, 0)


def test_to_jpeg_downscales_keeping_the_aspect_and_drops_the_exif():
    # GIVEN a 2000x1000 image that carries EXIF
    exif = Image.Exif()
    exif[0x010F] = "CameraMaker"
    img = images.decode(encode(rgb((2000, 1000)), "JPEG", exif=exif.tobytes()), max_pixels=LIMIT)

    # WHEN it is encoded for storage with a 500 px maximum side
    data = images.to_jpeg(img, max_side=500)

    # THEN it is a 500x250 RGB JPEG without EXIF
    stored = Image.open(io.BytesIO(data))
    assert stored.format == "JPEG"
    assert stored.mode == "RGB"
    assert stored.size == (500, 250)
    assert "exif" not in stored.info
    assert images.fitted_size(2000, 1000, 500) == (500, 250)


def test_to_jpeg_keeps_a_small_image_at_its_size():
    # GIVEN a 300x200 image
    # WHEN it is encoded with a 1024 px maximum side
    data = images.to_jpeg(rgb((300, 200)), max_side=1024)

    # THEN it is not enlarged
    assert Image.open(io.BytesIO(data)).size == (300, 200)


def test_the_content_hash_depends_on_the_pixels_not_on_the_file_format():
    # GIVEN the same pixels saved as PNG and as BMP, and a picture one pixel different
    picture = Image.effect_noise((90, 70), 40).convert("RGB")
    other = picture.copy()
    other.putpixel((0, 0), (1, 2, 3))

    # WHEN their content hashes are computed
    as_png = images.content_hash(images.decode(encode(picture, "PNG"), max_pixels=LIMIT))
    as_bmp = images.content_hash(images.decode(encode(picture, "BMP"), max_pixels=LIMIT))
    changed = images.content_hash(images.decode(encode(other, "PNG"), max_pixels=LIMIT))

    # THEN the formats agree and the changed pixel does not
    assert as_png == as_bmp
    assert changed != as_png
    assert len(as_png) == 64


def test_concurrent_decodes_each_apply_their_own_pixel_limit():
    # GIVEN a 100x100 image, and callers on many threads with limits just under and over its 10000 pixels
    data = encode(rgb((100, 100)), "PNG")
    pillow_limit = Image.MAX_IMAGE_PIXELS

    def verdict(limit: int) -> str:
        try:
            images.decode(data, max_pixels=limit)
            return "ok"
        except ImageRejected as exc:
            return exc.reason

    # WHEN they decode at the same time
    limits = [9_999, 10_000] * 100
    with ThreadPoolExecutor(8) as pool:
        verdicts = list(pool.map(verdict, limits))

    # THEN every caller got the answer its own limit gives, and Pillow's global limit was never lowered
    assert verdicts == ["decompression_bomb", "ok"] * 100
    assert pillow_limit <= Image.MAX_IMAGE_PIXELS
