"""Options of the image modality and its datasets: pydantic models, no torch, no Pillow.

The entry point (flowcore_image/plugin.py) declares them on its specs, so a config is checked
against them before torch or this plugin's heavy modules are imported. The defaults are the
factories' defaults (flowcore_image.modality.Image, flowcore_image.data).
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field

from flowcore.schema import Number, Options

Channels = Literal[1, 2, 3, 4]
#: an image size: one int for a square, or [H, W]
Length = Annotated[int, Field(ge=1)]
ImageSize = Length | Annotated[list[Length], Field(min_length=2, max_length=2)]


#: where the Debian package dataset-fashion-mnist puts its IDX files
FASHION_ROOT = "/usr/share/datasets/fashion-mnist"
#: the most pixels (H x W) an image file may hold: 40 megapixels is 160 MB as float32 per channel
MAX_PIXELS = 40_000_000

class ImageOptions(Options):
    """``modalities.image`` (see :class:`flowcore_image.modality.Image` for what each does)."""

    channels: Channels = 1
    image_size: ImageSize | None = None
    patch: int = Field(2, ge=1)
    space: Literal["pixel", "latent"] = "pixel"
    latent_channels: int = Field(4, ge=1)
    downsample: Literal[1, 2, 4, 8] = 4
    vae_width: int = Field(32, ge=1)
    kl_weight: Number = Field(1e-3, ge=0)
    recon: Literal["l1", "mse"] = "l1"
    classifier: str | None = None
    bits: Literal[8, 16] = 8
    #: a file with more pixels (H x W, read from its header) is refused before it is decoded
    max_pixels: int = Field(MAX_PIXELS, ge=1)


class ArrayOptions(Options):
    """``data.options`` of digits and mnist5k."""

    #: resize every image to this size (default: the dataset's own)
    size: ImageSize | None = None
    #: at most this many images of the split
    limit: int | None = Field(None, ge=1)
    #: the seed of the split's permutation
    seed: int = 0


class FashionOptions(ArrayOptions):
    """``data.options`` of fashion_mnist."""

    #: the folder of the IDX files (Debian package dataset-fashion-mnist)
    root: str = FASHION_ROOT


class ShapesOptions(Options):
    """``data.options`` of shapes."""

    #: images in the split (default: the split's own count)
    n: int | None = Field(None, ge=1)
    image_size: int = Field(16, ge=1)
    limit: int | None = Field(None, ge=1)
    seed: int = 0


class FolderOptions(ArrayOptions):
    """``data.options`` of image_folder."""

    #: the folder: root/<class>/*.png|jpg|webp, or root/<split>/<class>/...
    root: str
    #: convert every file to this many channels; null keeps each file's own
    channels: Channels | None = 3
