"""Patchify: a (latent) image batch <-> one token per p x p patch, positioned by (row, col).

    latent [B, C, H, W]  ->  values [B, (H/p)(W/p), C p p], positions [B, L, 2] = (row, col)

Tokens are in row-major order; channel index ``c p^2 + i p + j`` holds pixel (i, j) of the
patch in channel c. Positions are patch-grid coordinates, so any resolution and aspect ratio
gives its own grid (rotary embeddings see the geometry; nothing assumes a fixed size), and
``decode`` places tokens by their positions, so a padded batch of mixed sizes decodes too.
"""

from __future__ import annotations

from typing import Sequence

import torch

from flowcore.errors import DataError
from flowcore.modality import Tokenizer, Tokens


def parse_size(size: int | Sequence[int] | None, where: str) -> tuple[int, int] | None:
    """``28`` or ``[28, 32]`` -> ``(H, W)``; None stays None."""
    if size is None:
        return None
    if isinstance(size, int):
        size = (size, size)
    try:
        h, w = (int(s) for s in size)
    except (TypeError, ValueError):
        raise DataError(f"{where}: an image size is an int or [H, W], got {size!r}") from None
    if h <= 0 or w <= 0:
        raise DataError(f"{where}: image size must be positive, got {size!r}")
    return h, w


def patchify(x: torch.Tensor, p: int) -> torch.Tensor:
    """[B, C, H, W] -> [B, (H/p)(W/p), C p p]."""
    b, c, h, w = x.shape
    x = x.reshape(b, c, h // p, p, w // p, p).permute(0, 2, 4, 1, 3, 5)
    return x.reshape(b, (h // p) * (w // p), c * p * p)


def unpatchify(values: torch.Tensor, rows: int, cols: int, p: int) -> torch.Tensor:
    """[B, rows cols, C p p] (row-major) -> [B, C, rows p, cols p]."""
    b, _, d = values.shape
    c = d // (p * p)
    x = values.reshape(b, rows, cols, c, p, p).permute(0, 3, 1, 4, 2, 5)
    return x.reshape(b, c, rows * p, cols * p)


def grid_positions(rows: int, cols: int, device=None) -> torch.Tensor:
    """(row, col) of each patch in row-major order: [rows cols, 2] float32."""
    r, c = torch.meshgrid(torch.arange(rows, device=device), torch.arange(cols, device=device), indexing="ij")
    return torch.stack([r.reshape(-1), c.reshape(-1)], -1).float()


class PatchTokenizer(Tokenizer):
    """Patch tokens of a [B, C, H, W] latent.

    in_channels:  C of the latent (image channels in pixel space, VAE latent channels otherwise)
    patch:        p; H and W of the latent must be multiples of it
    downsample:   image pixels per latent pixel (1 in pixel space): ``layout`` takes image sizes
    default_size: the image (H, W) that ``layout`` uses when given no size
    """

    position_axes = 2

    def __init__(self, in_channels: int, patch: int = 2, downsample: int = 1,
                 default_size: tuple[int, int] | None = None):
        if patch < 1 or downsample < 1:
            raise DataError(f"patch tokenizer: patch ({patch}) and downsample ({downsample}) must be >= 1")
        self.in_channels = in_channels
        self.patch = patch
        self.downsample = downsample
        self.channels = in_channels * patch * patch
        self.default_size = default_size
        if default_size is not None:
            self.grid(default_size)

    def grid(self, size: int | Sequence[int]) -> tuple[int, int]:
        """Image size (H, W) -> the patch grid (rows, cols); DataError if it does not divide."""
        h, w = parse_size(size, "image size")
        step = self.patch * self.downsample
        if h % step or w % step:
            raise DataError(
                f"image size {h}x{w} is not a multiple of patch x downsample = {self.patch} x "
                f"{self.downsample} = {step}; resize the images (dataset option size) or pick another patch")
        return h // step, w // step

    def encode(self, latent: torch.Tensor) -> Tokens:
        """latent [B, C, H, W] -> Tokens (values [B, L, C p p], positions [B, L, 2], mask all True)."""
        if latent.dim() != 4 or latent.shape[1] != self.in_channels:
            raise DataError(f"patch tokenizer wants [B, {self.in_channels}, H, W], got {tuple(latent.shape)}")
        b, _, h, w = latent.shape
        if latent.numel() == 0:  # decode reads the grid off the first token: there would be none
            raise DataError(f"patch tokenizer: an empty batch {tuple(latent.shape)}; it needs at least one image "
                            "of at least one pixel")
        p = self.patch
        if h % p or w % p:
            raise DataError(f"latent size {h}x{w} is not a multiple of the patch size {p}")
        values = patchify(latent, p)
        positions = grid_positions(h // p, w // p, latent.device).expand(b, -1, -1)
        mask = torch.ones(b, values.shape[1], dtype=torch.bool, device=latent.device)
        return Tokens(values, positions, mask)

    def decode(self, tokens: Tokens) -> torch.Tensor | list[torch.Tensor]:
        """Tokens -> [B, C, H, W], each token placed at its (row, col).

        A batch whose samples have different grids (padded, mask False) gives a list of
        [C, H_i, W_i] tensors instead.
        """
        values, positions, mask = tokens.values, tokens.positions, tokens.mask
        p = self.patch
        if mask.all() and self._row_major(positions):
            rows, cols = (int(positions[0, -1, a]) + 1 for a in range(2))
            return unpatchify(values, rows, cols, p)
        images = []
        for v, pos, m in zip(values, positions, mask):
            v, pos = v[m], pos[m].long()
            rows, cols = int(pos[:, 0].max()) + 1, int(pos[:, 1].max()) + 1
            grid = v.new_zeros(rows * cols, v.shape[-1])
            grid[pos[:, 0] * cols + pos[:, 1]] = v
            images.append(unpatchify(grid[None], rows, cols, p)[0])
        if len({im.shape for im in images}) == 1:
            return torch.stack(images)
        return images

    @staticmethod
    def _row_major(positions: torch.Tensor) -> bool:
        """True when every sample's positions are the full row-major grid that encode makes."""
        rows, cols = (int(positions[0, -1, a]) + 1 for a in range(2))
        if rows * cols != positions.shape[1]:
            return False
        expected = grid_positions(rows, cols, positions.device)
        return bool((positions == expected).all())

    def layout(self, batch_size: int, size: int | Sequence[int] | None = None) -> Tokens:
        """Zero tokens for ``batch_size`` images of ``size`` = image (H, W) in pixels."""
        size = size if size is not None else self.default_size
        if size is None:
            raise DataError("image layout needs a size: set the image modality's image_size option "
                            "or the config key modalities.image.size, e.g. [28, 28]")
        rows, cols = self.grid(size)
        zeros = torch.zeros(batch_size, self.in_channels, rows * self.patch, cols * self.patch)
        return self.encode(zeros)
