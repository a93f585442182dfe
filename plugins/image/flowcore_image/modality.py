"""The image modality: samples ``[C, H, W]`` in [-1, 1], batches ``[B, C, H, W]``.

Pixel space (``space: pixel``): the flow moves patches of the image itself (small images).
Latent space (``space: latent``): a KL-VAE (trained by the autoencoder stage) encodes
``[B, C, H, W]`` to ``[B, Z, H/f, W/f]`` and the flow moves patches of that.
"""

from __future__ import annotations

import functools
import math
from pathlib import Path
from typing import Sequence

import torch

from flowcore.errors import DataError
from flowcore.modality import Metric, Modality
from flowcore_image import metrics as M
from flowcore_image.codec import ImageCodec
from flowcore_image.options import MAX_PIXELS
from flowcore_image.tokenizer import PatchTokenizer, parse_size
from flowcore_image.vae import KLVAE


class Image(Modality):
    """Images. Options (the config's ``modalities.image`` keys other than the core's, checked by
    :class:`flowcore_image.options.ImageOptions`):

    channels         1 (grey), 3 (RGB) or 4 (RGBA); files are converted to it on reading
    image_size       default (H, W) of generated images (int or [H, W]); the config's ``size`` overrides
    patch            patch size p of the tokenizer (in latent pixels)
    space            "pixel" (no autoencoder) or "latent" (KL-VAE)
    latent_channels  Z, VAE latent channels
    downsample       f in 1, 2, 4, 8: image pixels per latent pixel
    vae_width        channels of the VAE's first level
    kl_weight        weight of the VAE's KL term
    recon            VAE reconstruction loss, "l1" or "mse"
    classifier       dataset whose metric classifier scores samples (digits, mnist5k,
                     fashion_mnist, shapes); None = pixel metrics only
    bits             8, or 16 for 16-bit grey PNG output
    max_pixels       the most pixels (H x W) a file may hold; larger files are refused unread
    """

    def __init__(self, channels: int = 1, image_size: int | Sequence[int] | None = None, patch: int = 2,
                 space: str = "pixel", latent_channels: int = 4, downsample: int = 4, vae_width: int = 32,
                 kl_weight: float = 1e-3, recon: str = "l1", classifier: str | None = None, bits: int = 8,
                 max_pixels: int = MAX_PIXELS):
        self.channels = channels
        self.space = space
        self.codec = ImageCodec(channels=channels, bits=bits, max_pixels=max_pixels)
        self.vae_options = dict(channels=channels, latent_channels=latent_channels, downsample=downsample,
                                width=vae_width, kl_weight=kl_weight, recon=recon)
        latent = space == "latent"
        self._tokenizer = PatchTokenizer(latent_channels if latent else channels, patch,
                                         downsample if latent else 1, parse_size(image_size, "image_size"))
        self.classifier_dataset = classifier

    @property
    def tokenizer(self) -> PatchTokenizer:
        return self._tokenizer

    def autoencoder(self) -> KLVAE | None:
        return KLVAE(**self.vae_options) if self.space == "latent" else None

    def collate(self, samples: Sequence[torch.Tensor]) -> torch.Tensor:
        shapes = {tuple(torch.as_tensor(s).shape) for s in samples}
        if len(shapes) > 1:
            raise DataError(f"image batch mixes sizes {sorted(shapes)}; resize the images to one size "
                            "(dataset option size) before batching")
        return torch.stack([torch.as_tensor(s, dtype=torch.float32) for s in samples])

    def validate(self, sample, where: str) -> torch.Tensor:
        x = torch.as_tensor(sample)
        if x.dim() != 3 or x.shape[0] != self.channels:
            raise DataError(f"{where}: an image sample is [{self.channels}, H, W], got {tuple(x.shape)}")
        if not x.is_floating_point():
            raise DataError(f"{where}: image samples are floats in [-1, 1], got {x.dtype}")
        if not torch.isfinite(x).all():
            raise DataError(f"{where}: image holds NaN or infinite values")
        if x.numel() and (x.min() < -1 - 1e-4 or x.max() > 1 + 1e-4):
            raise DataError(f"{where}: image values span [{float(x.min()):.3g}, {float(x.max()):.3g}], "
                            "outside [-1, 1]")
        return x

    @functools.cached_property
    def classifier(self):
        """The metric classifier of ``classifier_dataset`` (trained and cached on first use)."""
        if self.classifier_dataset is None:
            raise DataError("image: no metric classifier; set the modality option classifier: DATASET")
        from flowcore_image.classifier import load_classifier

        return load_classifier(self.classifier_dataset)

    def classify(self, images: Sequence[torch.Tensor] | torch.Tensor) -> list[int] | None:
        """The metric classifier's class for each image (for accuracy of conditional samples);
        None when the modality has no ``classifier``."""
        if self.classifier_dataset is None:
            return None
        return self.classifier.predict(M.as_batch(images)).tolist()

    def metrics(self) -> dict[str, Metric]:
        found = {
            "pixel_moments": Metric("pixel_moments", M.pixel_moments, True,
                                    "mean over channels of |mean gap| + |std gap| of pixel values"),
            "pixel_histogram_tv": Metric("pixel_histogram_tv", M.pixel_histogram_tv, True,
                                         "total variation of 64-bin pixel-value histograms on [-1, 1]"),
        }
        if self.classifier_dataset is not None:
            name = self.classifier_dataset
            found["classifier_fd"] = Metric(
                "classifier_fd", lambda r, g: M.classifier_fd(self.classifier, r, g), True,
                f"Fréchet distance of the {name} classifier's 128 features")
            found["class_histogram_tv"] = Metric(
                "class_histogram_tv", lambda r, g: M.class_histogram_tv(self.classifier, r, g), True,
                f"total variation of the {name} classifier's predicted-class histograms")
        return found

    def preview(self, samples: Sequence[torch.Tensor], path: Path) -> Path:
        """A grid PNG of the samples (row-major, near-square, 2-pixel white gutters)."""
        from flowcore.io import atomic_path

        grid = make_grid(M.as_batch(samples))
        path = Path(path).with_suffix(".png")
        with atomic_path(path) as tmp:
            ImageCodec().write(grid, tmp)
        return path


def make_grid(images: torch.Tensor, columns: int | None = None, gutter: int = 2,
              min_cell: int = 64) -> torch.Tensor:
    """[N, C, H, W] -> one image [C, H', W'] of cells in a near-square grid.

    Cells are enlarged by an integer factor (nearest neighbour) to at least ``min_cell``
    pixels, so 8x8 digits stay visible; gutters are white (+1).
    """
    n, c, h, w = images.shape
    columns = columns or math.ceil(math.sqrt(n))
    rows = math.ceil(n / columns)
    k = max(1, math.ceil(min_cell / max(h, w)))
    cells = images.clamp(-1, 1).repeat_interleave(k, -2).repeat_interleave(k, -1)
    ch, cw = h * k + gutter, w * k + gutter
    grid = torch.ones(c, rows * ch + gutter, columns * cw + gutter)
    for i in range(n):
        r, q = divmod(i, columns)
        grid[:, gutter + r * ch: gutter + r * ch + h * k, gutter + q * cw: gutter + q * cw + w * k] = cells[i]
    return grid
