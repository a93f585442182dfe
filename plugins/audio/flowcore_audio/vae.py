"""A 2-D convolutional KL-VAE on the log-mel (the audio modality's ``space: vae``).

    batch {"wave": [B, T], "lengths": [B]} --LogMel--> mel [B, 1, M, F]
      --Encoder--> (mean, logvar) [B, Z, M/4, F/4] --(mean - shift) scale--> latent {"mel": [B, Z, M/4, F/4], "frames"}
      --Decoder--> mel [B, 1, M, F] --vocoder or Griffin-Lim--> {"wave", "lengths"}

The mel is treated as a one-channel image: two stride-2 convolutions with residual blocks
after them halve time and frequency twice (sub-pixel convolutions on the way back), as in
AudioLDM's and FluxMusic's mel VAEs (smaller, without their GAN loss). The loss
is the L1 error of the normalised mel over each clip's real frames plus ``kl_weight`` times the
KL divergence to N(0, I), both per element. As in Stable Diffusion, the flow sees the
posterior means shifted and scaled per channel; the shift and scale are buffers (saved with
the weights), tracked as running statistics while training. A clip's mel frames round up to
a multiple of 4 pf (pf: the tokenizer's patch frames), so its latent frames are whole tokens.
Padding frames of the latent hold 0 (the prior's mean); decoding cuts each clip to its length.
"""

from __future__ import annotations

from typing import Mapping

import torch
import torch.nn.functional as F
from torch import nn

from flowcore.errors import DataError
from flowcore.modality import Autoencoder
from flowcore.nn.conv import ConvResBlock, diagonal_gaussian, group_norm, track_latent_stats
from flowcore_audio.autoencoder import vocode
from flowcore_audio.mel import SILENCE, LogMel
from flowcore_audio.tokenizer import latent_frames

#: time and frequency reduction of the latent (two stride-2 levels)
DOWN = 4


def encoder(latent_channels: int, width: int) -> nn.Sequential:
    """mel [B, 1, M, F] -> mean and log-variance [B, 2 Z, M/4, F/4]; the residual blocks run at
    half and quarter resolution, where they cost a quarter and a sixteenth of full resolution's."""
    w1, w2 = width, 2 * width
    return nn.Sequential(
        nn.Conv2d(1, w1, 3, padding=1), nn.Conv2d(w1, w1, 3, stride=2, padding=1),
        ConvResBlock(w1, w1), nn.Conv2d(w1, w2, 3, stride=2, padding=1),
        ConvResBlock(w2, w2), ConvResBlock(w2, w2), group_norm(w2), nn.SiLU(),
        nn.Conv2d(w2, 2 * latent_channels, 3, padding=1))


def decoder(latent_channels: int, width: int) -> nn.Sequential:
    """latent [B, Z, h, w] -> mel [B, 1, 4 h, 4 w]; each doubling is a convolution to 4x the
    channels and a pixel shuffle (sub-pixel convolution)."""
    w1, w2 = width, 2 * width
    return nn.Sequential(
        nn.Conv2d(latent_channels, w2, 3, padding=1), ConvResBlock(w2, w2), ConvResBlock(w2, w2),
        nn.Conv2d(w2, 4 * w1, 3, padding=1), nn.PixelShuffle(2),
        ConvResBlock(w1, w1), ConvResBlock(w1, w1), group_norm(w1), nn.SiLU(),
        nn.Conv2d(w1, 4, 3, padding=1), nn.PixelShuffle(2))


class MelVAE(nn.Module, Autoencoder):
    """KL-VAE between waveforms and a mel latent 4x smaller in time and frequency.

    mel:             the log-mel transform (fixed)
    patch_frames:    the tokenizer's patch frames pf (in latent frames)
    latent_channels: Z
    width:           channels of the first level (the second has twice as many)
    kl_weight:       weight of the per-element KL term
    vocoder:         a trained vocoder for decoding; None = Griffin-Lim
    """

    def __init__(self, mel: LogMel, patch_frames: int, latent_channels: int = 8, width: int = 32,
                 kl_weight: float = 1e-4, vocoder: nn.Module | None = None, stats_momentum: float = 0.01):
        super().__init__()
        if mel.n_mels % DOWN:
            raise DataError(f"audio VAE: n_mels ({mel.n_mels}) must be a multiple of {DOWN}")
        self.mel, self.patch_frames = mel, patch_frames
        self.latent_channels, self.kl_weight, self.stats_momentum = latent_channels, kl_weight, stats_momentum
        self.encoder = encoder(latent_channels, width)
        self.decoder = decoder(latent_channels, width)
        self.register_buffer("latent_shift", torch.zeros(latent_channels))
        self.register_buffer("latent_scale", torch.ones(latent_channels))
        self.__dict__["vocoder"] = vocoder  # its own file's weights, not this VAE's (see MelAutoencoder)

    def log_mel(self, batch: Mapping[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        """{"wave", "lengths"} -> mel [B, 1, M, F] (F a multiple of 4 pf; frames past a clip's are silence)
        and each clip's mel frames [B]."""
        wave, lengths = batch["wave"], batch["lengths"].to(batch["wave"].device)
        hop = self.mel.hop
        frames = latent_frames(lengths, hop, DOWN * self.patch_frames)
        total = int(frames.max())
        wave = F.pad(wave, (0, max(0, (total - 1) * hop - wave.shape[-1])))
        with torch.no_grad():
            mel = self.mel(wave)[..., :total].unsqueeze(1)
        real = torch.arange(total, device=mel.device)[None, :] < frames[:, None]
        return mel.masked_fill(~real[:, None, None, :], SILENCE), frames

    def moments(self, mel: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """mel [B, 1, M, F] -> posterior mean, log-variance [B, Z, M/4, F/4] (unscaled)."""
        mean, logvar = self.encoder(mel).chunk(2, dim=1)
        return mean, logvar.clamp(-30.0, 20.0)

    def _affine(self) -> tuple[torch.Tensor, torch.Tensor]:
        return self.latent_shift.view(1, -1, 1, 1), self.latent_scale.view(1, -1, 1, 1)

    def use_vocoder(self, vocoder: nn.Module | None) -> None:
        """Decode by ``vocoder`` from now on (None: Griffin-Lim); it stays out of this module's state."""
        self.__dict__["vocoder"] = vocoder

    def encode(self, batch: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """{"wave", "lengths"} -> {"mel": latent [B, Z, M/4, F/4] (scaled means; 0 past a clip), "frames": [B]}."""
        mel, frames = self.log_mel(batch)
        shift, scale = self._affine()
        z = (self.moments(mel)[0] - shift) * scale
        frames = frames // DOWN
        real = torch.arange(z.shape[-1], device=z.device)[None, :] < frames[:, None]
        return {"mel": z * real[:, None, None, :], "frames": frames}

    def decode_mel(self, latent: torch.Tensor) -> torch.Tensor:
        """latent [B, Z, h, w] (scaled, as ``encode`` gives) -> normalised mel [B, 1, 4 h, 4 w]."""
        shift, scale = self._affine()
        return self.decoder(latent / scale + shift)

    def decode(self, latent: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """{"mel": latent, "frames": [B]} -> {"wave": [B, (4 F - 1) hop], "lengths": (4 frames - 1) hop}."""
        z, frames = latent["mel"], latent["frames"].to(latent["mel"].device)
        with torch.no_grad():
            mel = self.decode_mel(z)[:, 0].clamp(-1.0, 1.0)
        wave = vocode(self.vocoder, mel) if self.vocoder is not None else self.mel.inverse(mel)
        lengths = (frames * DOWN - 1) * self.mel.hop
        inside = torch.arange(wave.shape[-1], device=wave.device)[None, :] < lengths[:, None]
        return {"wave": (wave * inside).clamp(-1, 1), "lengths": lengths}

    def loss(self, batch: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """{"loss": recon + kl_weight kl, "recon": mel L1 over real frames, "kl": ...}; tracks the latent statistics."""
        mel, frames = self.log_mel(batch)
        mean, logvar = self.moments(mel)
        z, kl = diagonal_gaussian(mean, logvar)
        real = (torch.arange(mel.shape[-1], device=mel.device)[None, :] < frames[:, None]).float()  # [B, F]
        err = (self.decoder(z) - mel).abs().mean(dim=(1, 2))  # [B, F]
        recon = (err * real).sum() / real.sum()
        if self.training:
            track_latent_stats(self.latent_shift, self.latent_scale, mean.detach(), self.stats_momentum)
        return {"loss": recon + self.kl_weight * kl, "recon": recon.detach(), "kl": kl.detach()}

