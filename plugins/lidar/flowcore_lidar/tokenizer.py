"""Range images <-> patch tokens on a cylinder.

    image [B, 2, H, W]  ->  values [B, (H/ph)(W/pw), 2 ph pw], positions [B, L, 2] = (row, col)

Tokens are row-major; channel ``c ph pw + i pw + j`` holds pixel (i, j) of the patch in
channel c. The column axis is the azimuth of a full turn: its period is ``W / pw`` patch
columns (``position_periods``), so the backbone's RoPE wraps there and the first and last
columns are neighbours. Rolling a scan by whole patches (turning the sensor) rolls the tokens
and nothing else.
"""

from __future__ import annotations

import torch

from flowcore.errors import DataError
from flowcore.modality import Tokenizer, Tokens

CHANNELS = 2


class RangeTokenizer(Tokenizer):
    """Patch tokens of range images of ``shape`` (H, W); ``patch`` = (ph, pw)."""

    position_axes = 2

    def __init__(self, shape: tuple[int, int], patch: tuple[int, int] = (2, 8), circular: bool = True):
        (h, w), (ph, pw) = shape, patch
        if ph < 1 or pw < 1 or h % ph or w % pw:
            raise DataError(f"lidar patch {ph}x{pw} must divide the range image {h}x{w}; pick another patch "
                            "(modality option patch) or sensor")
        self.shape, self.patch = (h, w), (ph, pw)
        self.grid = (h // ph, w // pw)
        self.channels = CHANNELS * ph * pw
        self.position_periods = (None, float(self.grid[1])) if circular else None

    def positions(self, device=None) -> torch.Tensor:
        """(row, col) of each patch in row-major order: [L, 2] float32."""
        r, c = torch.meshgrid(torch.arange(self.grid[0], device=device), torch.arange(self.grid[1], device=device),
                              indexing="ij")
        return torch.stack([r.reshape(-1), c.reshape(-1)], -1).float()

    def encode(self, latent: torch.Tensor) -> Tokens:
        """image [B, 2, H, W] -> Tokens."""
        if latent.dim() != 4 or tuple(latent.shape[1:]) != (CHANNELS, *self.shape):
            raise DataError(f"lidar tokenizer wants [B, {CHANNELS}, {self.shape[0]}, {self.shape[1]}], "
                            f"got {tuple(latent.shape)}")
        b = latent.shape[0]
        (rows, cols), (ph, pw) = self.grid, self.patch
        values = latent.reshape(b, CHANNELS, rows, ph, cols, pw).permute(0, 2, 4, 1, 3, 5)
        values = values.reshape(b, rows * cols, self.channels)
        positions = self.positions(latent.device).expand(b, -1, -1)
        return Tokens(values, positions, torch.ones(b, rows * cols, dtype=torch.bool, device=latent.device))

    def decode(self, tokens: Tokens) -> torch.Tensor:
        """Tokens (row-major, as ``encode`` makes them) -> image [B, 2, H, W]."""
        (rows, cols), (ph, pw) = self.grid, self.patch
        values = tokens.values
        if values.shape[1:] != (rows * cols, self.channels):
            raise DataError(f"lidar tokens should be [B, {rows * cols}, {self.channels}], got {tuple(values.shape)}")
        x = values.reshape(-1, rows, cols, CHANNELS, ph, pw).permute(0, 3, 1, 4, 2, 5)
        return x.reshape(-1, CHANNELS, rows * ph, cols * pw)

    def layout(self, batch_size: int, size=None) -> Tokens:
        """Zero tokens of ``batch_size`` scans; ``size`` must be None or the sensor's (H, W)."""
        if size is not None and tuple(size) != self.shape:
            raise DataError(f"lidar scans are {self.shape[0]}x{self.shape[1]} (the sensor's beams x columns); "
                            f"size {size} differs: change the sensor options instead")
        return self.encode(torch.zeros(batch_size, CHANNELS, *self.shape))
