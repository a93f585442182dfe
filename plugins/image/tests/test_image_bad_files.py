"""Image files the codec once read wrongly are refused with one line that names the file.

The files are tests/data/bad/image/ (a few hundred bytes each); the 100-megapixel PNG is made
here, as a header with no pixels: the limit must be checked before anything is decoded.
"""

import struct
import zlib
from pathlib import Path

import pytest
import torch

from flowcore.errors import DataError
from flowcore_image.codec import ImageCodec
from flowcore_image.modality import Image

BAD = Path(__file__).resolve().parents[3] / "tests" / "data" / "bad" / "image"


def one_line_error(path: Path, codec: ImageCodec | None = None) -> str:
    with pytest.raises(DataError) as err:
        (codec or ImageCodec()).read(path)
    message = str(err.value)
    assert message.startswith(f"{path}: ") and "\n" not in message
    return message


def png_header(width: int, height: int) -> bytes:
    """A PNG's signature and IHDR (8-bit RGB) with an empty IDAT: what a reader sees before the pixels."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"")) + chunk(b"IEND", b"")


def test_a_float_tiff_named_png_is_refused_naming_both_formats():
    message = one_line_error(BAD / "float_tiff_renamed.png")
    assert "the suffix says PNG but the content is TIFF" in message


def test_a_jpeg_named_png_is_refused_naming_both_formats(tmp_path):
    ImageCodec().write(torch.zeros(3, 8, 8), tmp_path / "photo.jpg")
    (tmp_path / "photo.jpg").rename(tmp_path / "photo.png")
    assert "the suffix says PNG but the content is JPEG" in one_line_error(tmp_path / "photo.png")


def test_a_sixteen_bit_rgb_png_is_refused_rather_than_cut_to_eight_bits():
    assert "a 16-bit RGB PNG; Pillow reads colour at 8 bits" in one_line_error(BAD / "rgb_16bit.png")


def test_a_hundred_megapixel_png_is_refused_from_its_header(tmp_path):
    path = tmp_path / "huge.png"
    path.write_bytes(png_header(10_000, 10_000))  # 100 megapixels, 95 bytes: nothing to decode
    message = one_line_error(path)
    assert "10000x10000 = 100,000,000 pixels, over the limit of 40,000,000" in message
    assert "max_pixels" in message


def test_the_pixel_limit_is_the_image_option_max_pixels(tmp_path):
    ImageCodec().write(torch.zeros(3, 16, 16), tmp_path / "small.png")
    assert Image(channels=3).codec.read(tmp_path / "small.png").shape == (3, 16, 16)
    message = one_line_error(tmp_path / "small.png", Image(channels=3, max_pixels=100).codec)
    assert "16x16 = 256 pixels, over the limit of 100;" in message
