"""Image files <-> samples ``[C, H, W]`` float32 in [-1, 1], through Pillow.

Channels follow the file: 1 (grey, 8- or 16-bit), 2 (grey + alpha), 3 (RGB), 4 (RGBA).
Palette, bilevel and CMYK files are converted to the nearest of those. A value v of an
n-bit file becomes ``2 v / (2^n - 1) - 1``, so 8-bit data round-trips exactly through PNG.

Reading refuses, with a DataError naming the file: content of another format than the suffix
says (a TIFF renamed .png would otherwise be read and converted), more pixels than
``max_pixels`` (checked on the header, before decoding), and 16-bit colour PNGs: Pillow
decodes colour at 8 bits only, so their low bits would be lost without a word.
"""

from __future__ import annotations

import struct
from pathlib import Path
from typing import Sequence

import numpy as np
import torch

from flowcore.errors import DataError
from flowcore.modality import Codec
from flowcore_image.options import MAX_PIXELS

#: Pillow mode -> channels, for the modes we keep as they are
MODE_CHANNELS = {"L": 1, "LA": 2, "RGB": 3, "RGBA": 4}
CHANNEL_MODES = {c: m for m, c in MODE_CHANNELS.items()}
SIXTEEN_BIT_MODES = ("I;16", "I;16B", "I;16L", "I")
FORMATS = {".png": "PNG", ".jpg": "JPEG", ".jpeg": "JPEG", ".webp": "WEBP"}
#: what Pillow may call the content of a file with each format's suffix (camera JPEGs open as MPO)
CONTENTS = {"PNG": ("PNG",), "JPEG": ("JPEG", "MPO"), "WEBP": ("WEBP",)}


def to_unit(array: np.ndarray, bits: int) -> torch.Tensor:
    """Integer pixels ``[H, W, C]`` of ``bits`` bits -> float ``[C, H, W]`` in [-1, 1]."""
    top = float(2**bits - 1)
    x = torch.from_numpy(np.ascontiguousarray(array, dtype=np.float32)).permute(2, 0, 1)
    return x * (2.0 / top) - 1.0


def to_int(sample: torch.Tensor, bits: int) -> np.ndarray:
    """``[C, H, W]`` in [-1, 1] (clamped) -> rounded integers ``[H, W, C]`` of ``bits`` bits."""
    top = 2**bits - 1
    x = (torch.as_tensor(sample).detach().float().cpu().clamp(-1, 1) + 1) * (top / 2)
    return x.round().permute(1, 2, 0).numpy().astype(np.uint16 if bits == 16 else np.uint8)


class ImageCodec(Codec):
    """PNG, JPEG and WebP via Pillow.

    channels:  convert every file to this many channels (1, 3 or 4); None keeps the file's own.
    bits:      8, or 16 to write 16-bit PNGs (grey only: Pillow has no 16-bit colour mode).
    quality:   JPEG quality; WebP is written lossless (and exact under transparency) so that it round-trips.
    max_pixels: the most pixels (H x W) a file read may hold.
    """

    extensions = (".png", ".jpg", ".jpeg", ".webp")

    def __init__(self, channels: int | None = None, bits: int = 8, quality: int = 95, max_pixels: int = MAX_PIXELS):
        if channels not in (None, 1, 2, 3, 4):
            raise DataError(f"image codec: channels must be 1, 2, 3 or 4, got {channels!r}")
        if bits not in (8, 16):
            raise DataError(f"image codec: bits must be 8 or 16, got {bits!r}")
        self.channels = channels
        self.bits = bits
        self.quality = quality
        self.max_pixels = int(max_pixels)
        # 8-bit files hold steps of 2/255: a written sample comes back within half a step. JPEG is
        # lossy: at quality 95 without chroma subsampling no pixel of the digits and shapes sets moved
        # by more than 21 of 255 levels (0.165); 0.25 leaves room and still catches a wrong image.
        step = 1.0 / (2**bits - 1) + 1e-6
        self.round_trip_atol = {".png": step, ".webp": step, ".jpg": 0.25, ".jpeg": 0.25}

    def read(self, path: Path) -> torch.Tensor:
        """One file -> ``[C, H, W]`` float32 in [-1, 1]; DataError naming the file if unreadable."""
        from PIL import Image, UnidentifiedImageError

        try:
            with Image.open(path) as img:
                self._check_header(img, Path(path))
                img.load()  # decode now, so a truncated file fails here and not later
                array, bits = self._pixels(img)
        except (UnidentifiedImageError, OSError, SyntaxError, ValueError, EOFError, struct.error,
                Image.DecompressionBombError) as exc:
            raise DataError(
                f"{path}: cannot read image ({type(exc).__name__}: {exc}); the file is corrupt, "
                "truncated or not an image - re-export it or remove it from the data") from exc
        return to_unit(array, bits)

    def _check_header(self, img, path: Path) -> None:
        """Refuse, before decoding, what Pillow would read wrongly or at too great a cost."""
        expected = FORMATS.get(path.suffix.lower())
        if expected is not None and img.format not in CONTENTS[expected]:
            raise DataError(f"{path}: the suffix says {expected} but the content is {img.format}; "
                            f"re-export it as {expected} or give it its own suffix")
        width, height = img.size
        if width * height > self.max_pixels:
            raise DataError(f"{path}: {width}x{height} = {width * height:,} pixels, over the limit of "
                            f"{self.max_pixels:,}; downscale the file or raise the image option max_pixels")
        if img.format == "PNG" and img.mode not in SIXTEEN_BIT_MODES and any(
                ";16" in str(tile.args) for tile in img.tile):
            raise DataError(f"{path}: a 16-bit {img.mode} PNG; Pillow reads colour at 8 bits, which would drop "
                            "its low bits - convert it to 8-bit colour or 16-bit grey first")

    def _pixels(self, img) -> tuple[np.ndarray, int]:
        """A loaded Pillow image -> (``[H, W, C]`` integers, bit depth), converted to ``channels``."""
        if img.mode in SIXTEEN_BIT_MODES:
            array = np.asarray(img, dtype=np.int64)
            if array.min() < 0 or array.max() > 65535:
                raise ValueError(f"mode {img.mode} values outside 16 bits")
            if self.channels in (None, 1):
                return array[..., None], 16
            img = _grey16_to_8bit(array)
        mode = img.mode if img.mode in MODE_CHANNELS else _nearest_mode(img)
        target = CHANNEL_MODES[self.channels] if self.channels else mode
        if img.mode != target:
            img = img.convert(target)
        return np.asarray(img).reshape(img.height, img.width, MODE_CHANNELS[target]), 8

    def write(self, sample: torch.Tensor, path: Path) -> None:
        """``[C, H, W]`` (clamped to [-1, 1]) -> one file, format from the suffix."""
        from PIL import Image

        path = Path(path)
        fmt = self._format(path)
        x = torch.as_tensor(sample)
        if x.dim() != 3 or x.shape[0] not in CHANNEL_MODES:
            raise DataError(f"{path}: an image sample is [C, H, W] with C in 1..4, got {tuple(x.shape)}")
        c = x.shape[0]
        if self.bits == 16:
            if c != 1 or fmt != "PNG":
                raise DataError(f"{path}: 16-bit images are grey PNGs; got {c} channels as {fmt}")
            img = Image.fromarray(to_int(x, 16)[..., 0])  # uint16 [H, W] -> mode I;16
        else:
            array = to_int(x, 8)
            img = Image.fromarray(array[..., 0] if c == 1 else array)  # L, LA, RGB or RGBA by shape
        if fmt == "JPEG" and c in (2, 4):
            raise DataError(f"{path}: JPEG has no alpha channel; write {c}-channel images as PNG or WebP")
        # subsampling 0 (4:4:4): halving the colour resolution smears every colour edge (by up to 0.78)
        options = ({"quality": self.quality, "subsampling": 0} if fmt == "JPEG"
                   else {"lossless": True, "exact": True} if fmt == "WEBP" else {})
        img.save(path, format=fmt, **options)

    @staticmethod
    def _format(path: Path) -> str:
        # atomic writes hand us ".name.png.tmp": the real suffix is the one before ".tmp"
        suffixes = [s.lower() for s in path.suffixes if s.lower() != ".tmp"]
        fmt = FORMATS.get(suffixes[-1] if suffixes else "")
        if fmt is None:
            raise DataError(f"{path}: unknown image suffix; use one of {sorted(FORMATS)}")
        return fmt


def _grey16_to_8bit(array: np.ndarray):
    """16-bit grey ``[H, W]`` -> an 8-bit Pillow 'L' image (for conversion to colour)."""
    from PIL import Image

    return Image.fromarray((array / 257.0).round().astype(np.uint8))


def _nearest_mode(img) -> str:
    """The kept mode closest to a palette / bilevel / CMYK / other image."""
    if img.mode == "P":
        return "RGBA" if "transparency" in img.info else "RGB"
    if img.mode in ("1", "F"):
        return "L"
    if img.mode in ("PA",):
        return "RGBA"
    return "RGB"


def list_images(root: Path, extensions: Sequence[str] = ImageCodec.extensions) -> list[Path]:
    """Every image file under ``root`` (recursive), sorted by path."""
    return sorted(p for p in Path(root).rglob("*") if p.is_file() and p.suffix.lower() in extensions)
