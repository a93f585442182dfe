"""A small convolutional KL-VAE (the Stable Diffusion autoencoder, minus attention and GAN).

    image [B, C, H, W] --Encoder--> (mean, logvar) [B, Z, H/f, W/f] --Decoder--> image

f = 2^levels (1, 2, 4 or 8). Each level is a residual block and a stride-2 convolution
(nearest upsampling and a convolution on the way back). The loss is L1 (or MSE)
reconstruction plus ``kl_weight`` times the KL divergence to N(0, I), both per element.

The flow sees ``(mean - shift) * scale`` per latent channel, with shift and scale the mean
and 1/std of encoder means over the data (SD3: z = (E(x) - 0.0609) * 1.5305). They are
buffers, so they are saved with the weights. ``loss`` keeps running estimates of them while
training (momentum ``stats_momentum``), and ``calibrate`` computes them exactly from batches.
"""

from __future__ import annotations

import math
from typing import Iterable, Mapping

import torch
from torch import nn
from torch.nn import functional as F

from flowcore.errors import DataError
from flowcore.modality import Autoencoder
from flowcore.nn.conv import ConvResBlock, diagonal_gaussian, group_norm, track_latent_stats


class Encoder(nn.Module):
    """[B, C, H, W] -> [B, 2 Z, H / 2^L, W / 2^L] (mean and log-variance)."""

    def __init__(self, in_channels: int, latent_channels: int, widths: list[int]):
        super().__init__()
        self.conv_in = nn.Conv2d(in_channels, widths[0], 3, padding=1)
        blocks: list[nn.Module] = []
        for c_in, c_out in zip(widths[:-1], widths[1:]):
            blocks += [ConvResBlock(c_in, c_out), nn.Conv2d(c_out, c_out, 3, stride=2, padding=1)]
        self.down = nn.Sequential(*blocks)
        self.mid = ConvResBlock(widths[-1], widths[-1])
        self.norm_out = group_norm(widths[-1])
        self.conv_out = nn.Conv2d(widths[-1], 2 * latent_channels, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.mid(self.down(self.conv_in(x)))
        return self.conv_out(F.silu(self.norm_out(h)))


class Upsample(nn.Module):
    def __init__(self, channels: int):
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(F.interpolate(x, scale_factor=2.0, mode="nearest"))


class Decoder(nn.Module):
    """[B, Z, h, w] -> [B, C, h 2^L, w 2^L]."""

    def __init__(self, out_channels: int, latent_channels: int, widths: list[int]):
        super().__init__()
        self.conv_in = nn.Conv2d(latent_channels, widths[-1], 3, padding=1)
        self.mid = ConvResBlock(widths[-1], widths[-1])
        blocks: list[nn.Module] = []
        for c_in, c_out in zip(widths[:0:-1], widths[-2::-1]):
            blocks += [ConvResBlock(c_in, c_out), Upsample(c_out)]
        self.up = nn.Sequential(*blocks)
        self.out_block = ConvResBlock(widths[0], widths[0])
        self.norm_out = group_norm(widths[0])
        self.conv_out = nn.Conv2d(widths[0], out_channels, 3, padding=1)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        h = self.out_block(self.up(self.mid(self.conv_in(z))))
        return self.conv_out(F.silu(self.norm_out(h)))


class KLVAE(nn.Module, Autoencoder):
    """Convolutional KL-VAE with per-channel latent shift and scale.

    channels:        image channels C
    latent_channels: Z
    downsample:      f in (1, 2, 4, 8)
    width:           channels of the first level; level i has ``width * min(2^i, 4)``
    kl_weight:       weight of the per-element KL term
    recon:           "l1" or "mse"
    """

    def __init__(self, channels: int = 1, latent_channels: int = 4, downsample: int = 4, width: int = 32,
                 kl_weight: float = 1e-3, recon: str = "l1", stats_momentum: float = 0.01):
        super().__init__()
        if downsample not in (1, 2, 4, 8):
            raise DataError(f"image VAE: downsample must be 1, 2, 4 or 8, got {downsample!r}")
        if recon not in ("l1", "mse"):
            raise DataError(f"image VAE: recon must be 'l1' or 'mse', got {recon!r}")
        levels = int(math.log2(downsample))
        widths = [width * min(2**i, 4) for i in range(levels + 1)]
        self.channels, self.latent_channels, self.downsample = channels, latent_channels, downsample
        self.kl_weight, self.recon, self.stats_momentum = kl_weight, recon, stats_momentum
        self.encoder = Encoder(channels, latent_channels, widths)
        self.decoder = Decoder(channels, latent_channels, widths)
        self.register_buffer("latent_shift", torch.zeros(latent_channels))
        self.register_buffer("latent_scale", torch.ones(latent_channels))

    def moments(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """image [B, C, H, W] -> posterior mean, log-variance [B, Z, H/f, W/f] (unscaled)."""
        h, w = x.shape[-2:]
        if x.dim() != 4 or x.shape[1] != self.channels or h % self.downsample or w % self.downsample:
            raise DataError(f"image VAE wants [B, {self.channels}, H, W] with H, W multiples of "
                            f"{self.downsample}, got {tuple(x.shape)}")
        mean, logvar = self.encoder(x).chunk(2, dim=1)
        return mean, logvar.clamp(-30.0, 20.0)

    def _affine(self) -> tuple[torch.Tensor, torch.Tensor]:
        return self.latent_shift.view(1, -1, 1, 1), self.latent_scale.view(1, -1, 1, 1)

    def encode(self, batch: torch.Tensor) -> torch.Tensor:
        """image [B, C, H, W] -> latent [B, Z, H/f, W/f]: the posterior mean, shifted and scaled."""
        shift, scale = self._affine()
        return (self.moments(batch)[0] - shift) * scale

    def decode(self, latent: torch.Tensor) -> torch.Tensor:
        """latent [B, Z, h, w] (scaled, as ``encode`` gives) -> image [B, C, h f, w f]."""
        shift, scale = self._affine()
        return self.decoder(latent / scale + shift)

    def loss(self, batch: torch.Tensor) -> Mapping[str, torch.Tensor]:
        """{"loss": recon + kl_weight kl, "recon": ..., "kl": ...}; updates the running latent stats."""
        mean, logvar = self.moments(batch)
        z, kl = diagonal_gaussian(mean, logvar)
        err = self.decoder(z) - batch
        recon = err.abs().mean() if self.recon == "l1" else err.pow(2).mean()
        if self.training:
            track_latent_stats(self.latent_shift, self.latent_scale, mean.detach(), self.stats_momentum)
        return {"loss": recon + self.kl_weight * kl, "recon": recon.detach(), "kl": kl.detach()}


    @torch.no_grad()
    def calibrate(self, batches: Iterable[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        """Set shift = mean and scale = 1/std of the encoder means over ``batches`` (exact, per channel)."""
        count, total, squares = 0, 0.0, 0.0
        for batch in batches:
            mean = self.moments(batch.to(self.latent_shift.device))[0].double()
            count += mean.numel() // mean.shape[1]
            total = total + mean.sum(dim=(0, 2, 3))
            squares = squares + mean.pow(2).sum(dim=(0, 2, 3))
        if count == 0:
            raise DataError("image VAE calibrate: no batches given")
        mu = total / count
        std = (squares / count - mu.pow(2)).clamp_min(1e-8).sqrt()
        self.latent_shift.copy_(mu.float())
        self.latent_scale.copy_(1.0 / std.float())
        return self.latent_shift.clone(), self.latent_scale.clone()
