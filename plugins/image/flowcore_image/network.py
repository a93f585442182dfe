"""A compact convolutional U-Net velocity network for small images (MNIST-sized, pixel space).

    model:
      network: flowcore_image.network:ConvUNet
      options: {channels: 1, width: 32}

Called like every flowcore network, ``net({modality: Tokens}, {modality: t [B]}) -> {modality:
v [B, L, C]}``. The ``image`` modality's patch tokens are placed on their (row, col) grid and
unpatchified to [B, C, H, W]; res-blocks (GroupNorm, SiLU, 3x3 conv) run at H, H/2 and H/4 with
skip connections (DDPM's U-Net, shrunk); the result is patchified back and read out at each
token's position. Every other modality (the class label: one-hot ±1 [B, 1, K]) is a condition:
a linear embedding of its token values, scaled by (1 - t) so that a dropped or absent condition
(prior noise at t = 1, flowcore.train.module) or one missing from the dict contributes exactly
zero; it is added to the sinusoidal time embedding that biases every block. Conditions get zero
velocity: this network generates the image only. Built with ``interval=True`` (``flow.objective:
meanflow``) it also embeds h = t - r, the interval of an average velocity, into the same bias.
"""

from __future__ import annotations

from typing import Mapping

import torch
from torch import nn
from torch.nn import functional as F

from flowcore.errors import ConfigError, DataError
from flowcore.modality import Tokens
from flowcore.nn.embeddings import timestep_frequencies
from flowcore.nn.interval import IntervalEmbedding, interval_lengths


def _groups(channels: int) -> int:
    """The largest of 8, 4, 2, 1 groups that divides ``channels``."""
    return next(g for g in (8, 4, 2, 1) if channels % g == 0)


def tokens_to_grid(tokens: Tokens, channels: int) -> tuple[torch.Tensor, torch.Tensor, int, int]:
    """Patch tokens -> image [B, C, H, W], each token placed at its (row, col) position.

    Returns the image, the flat grid index of each token [B, L] (to read tokens back with
    :func:`grid_to_tokens`) and the grid (rows, cols). Every sample must have the same grid.
    """
    values, positions = tokens.values, tokens.positions.long()
    b, length, d = values.shape
    p = int(round((d / channels) ** 0.5))
    if channels * p * p != d:
        raise DataError(f"flowcore_image.network: image tokens have {d} channels, not channels x p x p "
                        f"for model.options.channels = {channels}; set it to the image's channel count")
    rows, cols = int(positions[..., 0].max()) + 1, int(positions[..., 1].max()) + 1
    if rows * cols != length:
        raise DataError(f"flowcore_image.network: {length} image tokens do not fill their {rows} x {cols} "
                        "grid; this network takes whole, same-size images")
    index = positions[..., 0] * cols + positions[..., 1]
    grid = torch.zeros_like(values).scatter(1, index[..., None].expand(-1, -1, d), values)
    image = grid.reshape(b, rows, cols, channels, p, p).permute(0, 3, 1, 4, 2, 5)
    return image.reshape(b, channels, rows * p, cols * p), index, rows, cols


def grid_to_tokens(image: torch.Tensor, index: torch.Tensor, rows: int, cols: int) -> torch.Tensor:
    """image [B, C, H, W] -> token values [B, L, C p p] in the order of ``index`` [B, L]."""
    b, c, h, _ = image.shape
    p = h // rows
    grid = image.reshape(b, c, rows, p, cols, p).permute(0, 2, 4, 1, 3, 5).reshape(b, rows * cols, c * p * p)
    return grid.gather(1, index[..., None].expand(-1, -1, grid.shape[-1]))


class ResBlock(nn.Module):
    """x + conv(SiLU(GN(conv(SiLU(GN(x))) + emb))): DDPM's residual block, embedding as a bias.

    With ``scale_norm`` the embedding also scales the second normalisation, GN(.) (1 + scale(emb))
    (ADM's scale-shift norm), from zero: the block starts as the plain one.
    """

    def __init__(self, in_ch: int, out_ch: int, emb_dim: int, scale_norm: bool = False):
        super().__init__()
        self.norm1 = nn.GroupNorm(_groups(in_ch), in_ch)
        self.conv1 = nn.Conv2d(in_ch, out_ch, 3, padding=1)
        self.emb = nn.Linear(emb_dim, out_ch)
        self.norm2 = nn.GroupNorm(_groups(out_ch), out_ch)
        self.scale = nn.Linear(emb_dim, out_ch) if scale_norm else None
        if self.scale is not None:
            nn.init.zeros_(self.scale.weight)
            nn.init.zeros_(self.scale.bias)
        self.conv2 = nn.Conv2d(out_ch, out_ch, 3, padding=1)
        self.skip = nn.Conv2d(in_ch, out_ch, 1) if in_ch != out_ch else nn.Identity()

    def forward(self, x: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:
        h = self.norm2(self.conv1(F.silu(self.norm1(x))) + self.emb(emb)[:, :, None, None])
        if self.scale is not None:
            h = h * (1 + self.scale(emb)[:, :, None, None])
        return self.skip(x) + self.conv2(F.silu(h))


class ConvUNet(nn.Module):
    """Velocity of the ``image`` modality from a two-level conv U-Net (H -> H/2 -> H/4 -> H).

    shapes:    {modality: (L, C)} from the pipeline; ``image`` is generated, the rest condition it
    channels:  image channels (1 for MNIST); the patch size is sqrt(C / channels)
    width:     channels at full resolution; 2x width at H/2 and H/4
    emb_dim:   time + condition embedding size
    image:     the name of the generated image modality
    interval:  also take r (an average-velocity network, flowcore.flow.meanflow)
    scale_norm: the embedding also scales each block's second normalisation (ResBlock), so time,
               interval and class gate features rather than only bias them
    time_scale: t and h are multiplied by it before their sinusoidal features. 1000 (Flux's) has
               periods down to 0.006 in t; 1 (SiT's, MeanFlow's) keeps the field smooth in t, which
               matters where a derivative in t enters the loss (flowcore.flow.meanflow)
    H and W must be multiples of 4 (28 -> 14 -> 7).
    """

    def __init__(self, shapes: Mapping[str, tuple[int, int]], channels: int = 1, width: int = 32,
                 emb_dim: int = 128, image: str = "image", space_to_depth: int = 2, interval: bool = False,
                 scale_norm: bool = False, time_scale: float = 1000.0):
        super().__init__()
        if image not in shapes:
            raise ConfigError(f"flowcore_image.network:ConvUNet: no modality {image!r} in {sorted(shapes)}; "
                              "set model.options.image to the image modality's name")
        self.shapes = dict(shapes)
        self.image, self.channels, self.emb_dim, self.s2d = image, channels, emb_dim, space_to_depth
        self.time_scale = time_scale
        self.conds = [n for n in self.shapes if n != image]
        self.time = nn.Sequential(nn.Linear(emb_dim, emb_dim), nn.SiLU(), nn.Linear(emb_dim, emb_dim))
        self.interval = IntervalEmbedding(emb_dim, time_scale) if interval else None
        self.cond = nn.ModuleDict({n: nn.Linear(l * c, emb_dim) for n, (l, c) in self.shapes.items() if n != image})
        w1, w2 = width, 2 * width
        inner = channels * space_to_depth ** 2
        self.stem = nn.Conv2d(inner, w1, 3, padding=1)
        self.down1 = ResBlock(w1, w1, emb_dim, scale_norm)
        self.pool1 = nn.Conv2d(w1, w2, 3, stride=2, padding=1)
        self.down2 = ResBlock(w2, w2, emb_dim, scale_norm)
        self.pool2 = nn.Conv2d(w2, w2, 3, stride=2, padding=1)
        self.mid = ResBlock(w2, w2, emb_dim, scale_norm)
        self.up2 = ResBlock(2 * w2, w2, emb_dim, scale_norm)
        self.up1 = ResBlock(w2 + w1, w1, emb_dim, scale_norm)
        self.out_norm = nn.GroupNorm(_groups(w1), w1)
        self.out = nn.Conv2d(w1, inner, 3, padding=1)
        nn.init.zeros_(self.out.weight)  # zero velocity at init, as the FlowTransformer's head
        nn.init.zeros_(self.out.bias)

    def embedding(self, tokens: Mapping[str, Tokens], t: Mapping[str, torch.Tensor],
                  r: Mapping[str, torch.Tensor] | None = None) -> torch.Tensor:
        """Time (and interval) embedding of the image's t plus each present condition's, scaled by (1 - t):
        [B, emb_dim]."""
        t_image = t[self.image]
        emb = self.time(timestep_frequencies(t_image, self.emb_dim, scale=self.time_scale))
        h = interval_lengths({self.image: t_image}, r, self.interval is not None, "flowcore_image.network:ConvUNet")
        if h is not None:
            emb = emb + self.interval(h[self.image])
        for name in self.conds:
            if name not in tokens:
                continue
            v = tokens[name].values
            keep = (1.0 - t[name].to(v.dtype))[:, None]  # 1 given (t = 0), 0 dropped / absent (t = 1)
            emb = emb + keep * self.cond[name](v.reshape(v.shape[0], -1))
        return emb

    def forward(self, tokens: Mapping[str, Tokens], t: Mapping[str, torch.Tensor],
                r: Mapping[str, torch.Tensor] | None = None) -> dict[str, torch.Tensor]:
        x, index, rows, cols = tokens_to_grid(tokens[self.image], self.channels)
        if x.shape[-2] % self.s2d or x.shape[-1] % self.s2d:
            raise DataError(f"flowcore_image.network:ConvUNet: image size {tuple(x.shape[-2:])} is not a "
                            f"multiple of model.options.space_to_depth = {self.s2d}")
        emb = self.embedding(tokens, t, r).to(x.dtype)
        h1 = self.down1(self.stem(F.pixel_unshuffle(x, self.s2d)), emb)  # [B, w, H/s, W/s]
        h2 = self.down2(self.pool1(h1), emb)                              # [B, 2w, H/2s, W/2s]
        h = self.mid(self.pool2(h2), emb)                                 # [B, 2w, H/4s, W/4s]
        h = F.interpolate(h, size=h2.shape[-2:], mode="nearest")
        h = self.up2(torch.cat([h, h2], 1), emb)
        h = F.interpolate(h, size=h1.shape[-2:], mode="nearest")
        h = self.up1(torch.cat([h, h1], 1), emb)
        v = F.pixel_shuffle(self.out(F.silu(self.out_norm(h))), self.s2d)
        out = {self.image: grid_to_tokens(v, index, rows, cols)}
        for name in self.conds:
            if name in tokens:
                out[name] = torch.zeros_like(tokens[name].values)
        return out
