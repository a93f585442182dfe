"""Range images <-> patch tokens on a cylinder.

    image [B, 2, H, W]  ->  values [B, (H/ph)(W/pw), 2 ph pw], positions [B, L, 2] = (row, col)

Tokens are row-major; channel ``c ph pw + i pw + j`` holds pixel (i, j) of the patch in
channel c. The column axis is the azimuth of a full turn: its period is ``W / pw`` patch
columns (``position_periods``), so the backbone's RoPE wraps there and the first and last
columns are neighbours. Rolling a scan by whole patches (turning the sensor) rolls the tokens
and nothing else.

With ``drop_mask`` the tokens carry three channels: log-depth and reflectance with every empty
pixel (no return) filled from the nearest return, and a return mask (+1 a return, -1 none).
Without it a dropped ray is -1 in both channels, so a sampler unsure whether a ray returns
lands between -1 and the return's depth: a point a few metres from the sensor that no scan
holds. With the mask, depth stays a smooth field and the mask alone decides; ``decode`` empties
the pixels whose mask is below zero. A separate drop mask is DUSty's (Nakashima et al. 2021).
"""

from __future__ import annotations

import torch

from flowcore.errors import DataError
from flowcore.modality import Tokenizer, Tokens

CHANNELS = 2


def nearest_along(valid: torch.Tensor, circular: bool) -> torch.Tensor:
    """valid [..., N] bool -> [..., N] the index of the nearest True along the last axis (ties: the
    one before); on a circular axis the ends are neighbours. Rows with no True give garbage indices."""
    n = valid.shape[-1]
    copies = 3 if circular else 1
    wide = valid.repeat(*([1] * (valid.dim() - 1)), copies)
    pos = torch.arange(copies * n, device=valid.device).expand_as(wide)
    far = 4 * copies * n
    before = torch.where(wide, pos, -far).cummax(-1).values
    after = torch.where(wide, pos, far).flip(-1).cummin(-1).values.flip(-1)
    if circular:
        before, after, pos = before[..., n:2 * n], after[..., n:2 * n], pos[..., n:2 * n]
    nearest = torch.where(pos - before <= after - pos, before, after)
    return nearest.remainder(n)


def fill_empty(image: torch.Tensor, empty: torch.Tensor) -> torch.Tensor:
    """image [B, C, H, W] with each pixel where ``empty`` [B, H, W] holds replaced by the nearest
    non-empty pixel of its row (the row wraps: a full turn); a row with none takes the nearest
    row that has one, and a scan with none is kept as it is."""
    b, c, h, w = image.shape
    col = nearest_along(~empty, circular=True)
    filled = image.gather(3, col.unsqueeze(1).expand(b, c, h, w))
    has = (~empty).any(-1)
    row = nearest_along(has, circular=False)
    filled = filled.gather(2, row[:, None, :, None].expand(b, c, h, w))
    return torch.where(has.any(-1)[:, None, None, None], filled, image)


class RangeTokenizer(Tokenizer):
    """Patch tokens of range images of ``shape`` (H, W); ``patch`` = (ph, pw)."""

    position_axes = 2

    def __init__(self, shape: tuple[int, int], patch: tuple[int, int] = (2, 8), circular: bool = True,
                 drop_mask: bool = False, empty_below: float = -0.75):
        """``drop_mask``: tokens carry a return mask (module docstring); a pixel whose log-depth
        channel is below ``empty_below`` has no return (the sensor's threshold, in [-1, 1])."""
        (h, w), (ph, pw) = shape, patch
        if ph < 1 or pw < 1 or h % ph or w % pw:
            raise DataError(f"lidar patch {ph}x{pw} must divide the range image {h}x{w}; pick another patch "
                            "(modality option patch) or sensor")
        self.shape, self.patch = (h, w), (ph, pw)
        self.grid = (h // ph, w // pw)
        self.drop_mask, self.empty_below = drop_mask, empty_below
        self.planes = CHANNELS + drop_mask
        self.channels = self.planes * ph * pw
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
        if self.drop_mask:
            empty = latent[:, 0] < self.empty_below
            mask = torch.where(empty, -1.0, 1.0).to(latent.dtype).unsqueeze(1)
            latent = torch.cat([fill_empty(latent, empty), mask], 1)
        values = latent.reshape(b, self.planes, rows, ph, cols, pw).permute(0, 2, 4, 1, 3, 5)
        values = values.reshape(b, rows * cols, self.channels)
        positions = self.positions(latent.device).expand(b, -1, -1)
        return Tokens(values, positions, torch.ones(b, rows * cols, dtype=torch.bool, device=latent.device))

    def decode(self, tokens: Tokens) -> torch.Tensor:
        """Tokens (row-major, as ``encode`` makes them) -> image [B, 2, H, W]."""
        (rows, cols), (ph, pw) = self.grid, self.patch
        values = tokens.values
        if values.shape[1:] != (rows * cols, self.channels):
            raise DataError(f"lidar tokens should be [B, {rows * cols}, {self.channels}], got {tuple(values.shape)}")
        x = values.reshape(-1, rows, cols, self.planes, ph, pw).permute(0, 3, 1, 4, 2, 5)
        x = x.reshape(-1, self.planes, rows * ph, cols * pw)
        if self.drop_mask:
            x = torch.where((x[:, 2] < 0).unsqueeze(1), -1.0, x[:, :CHANNELS])
        return x

    def layout(self, batch_size: int, size=None) -> Tokens:
        """Zero tokens of ``batch_size`` scans; ``size`` must be None or the sensor's (H, W)."""
        if size is not None and tuple(size) != self.shape:
            raise DataError(f"lidar scans are {self.shape[0]}x{self.shape[1]} (the sensor's beams x columns); "
                            f"size {size} differs: change the sensor options instead")
        return self.encode(torch.zeros(batch_size, CHANNELS, *self.shape))
