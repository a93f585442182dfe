"""Convolutional blocks and KL-VAE pieces that plugins' autoencoders share (the image KL-VAE, the audio mel VAE)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def group_norm(channels: int) -> nn.GroupNorm:
    """GroupNorm with 8 groups where the channels divide by 8, else one group (LayerNorm over C, H, W)."""
    return nn.GroupNorm(8 if channels % 8 == 0 else 1, channels)


class ConvResBlock(nn.Module):
    """x + conv(silu(norm(conv(silu(norm(x))) + emb))) on [B, C, H, W], with a 1x1 skip when the channels change.

    With ``emb_dim`` > 0 (DDPM's U-Net block) a linear map of an embedding [B, emb_dim] (time and
    conditions) is added per channel after the first conv; with 0 there is no such input.
    """

    def __init__(self, c_in: int, c_out: int, emb_dim: int = 0):
        super().__init__()
        self.norm1, self.conv1 = group_norm(c_in), nn.Conv2d(c_in, c_out, 3, padding=1)
        self.norm2, self.conv2 = group_norm(c_out), nn.Conv2d(c_out, c_out, 3, padding=1)
        self.skip = nn.Conv2d(c_in, c_out, 1) if c_in != c_out else nn.Identity()
        self.emb = nn.Linear(emb_dim, c_out) if emb_dim else None

    def forward(self, x: torch.Tensor, emb: torch.Tensor | None = None) -> torch.Tensor:
        h = self.conv1(F.silu(self.norm1(x)))
        if self.emb is not None:
            h = h + self.emb(emb)[:, :, None, None]
        return self.skip(x) + self.conv2(F.silu(self.norm2(h)))


def diagonal_gaussian(mean: torch.Tensor, logvar: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """A reparameterised draw z = mean + std * eps, and the KL divergence to N(0, I), averaged over elements."""
    z = mean + torch.randn_like(mean) * (0.5 * logvar).exp()
    kl = 0.5 * (mean.pow(2) + logvar.exp() - 1.0 - logvar).mean()
    return z, kl


@torch.no_grad()
def track_latent_stats(shift: torch.Tensor, scale: torch.Tensor, mean: torch.Tensor, momentum: float) -> None:
    """Move the ``shift`` / ``scale`` buffers toward the per-channel mean and 1/std of latents [B, C, H, W]."""
    shift.lerp_(mean.mean(dim=(0, 2, 3)), momentum)
    scale.lerp_(1.0 / mean.std(dim=(0, 2, 3)).clamp_min(1e-4), momentum)
