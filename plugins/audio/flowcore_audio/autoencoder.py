"""The fixed autoencoder of the audio modality: waveforms -> log-mel -> (Griffin-Lim) waveforms.

    batch  {"wave": [B, T], "lengths": [B]}        (collated, zero-padded waveforms)
      --encode-->  latent {"mel": [B, 1, M, F], "frames": [B]}   (what the tokenizer patches)
      --decode-->  batch  {"wave": [B, (F - 1) hop], "lengths": [B] = (frames - 1) hop}

The mel is lossy, so it sits here rather than in the tokenizer (which must round-trip
exactly). Nothing is trained: the weights are the STFT windows and filter banks, fixed by the
options. ``decode`` goes back to sound through a trained vocoder when one is given
(:mod:`flowcore_audio.vocoder`), else by Griffin-Lim (:meth:`flowcore_audio.mel.LogMel.inverse`).
"""

from __future__ import annotations

from typing import Mapping

import torch
import torch.nn.functional as F
from torch import nn

from flowcore.modality import Autoencoder
from flowcore_audio.mel import SILENCE, LogMel
from flowcore_audio.tokenizer import latent_frames


class MelAutoencoder(nn.Module, Autoencoder):
    """Log-mel of a waveform batch (encode) and Griffin-Lim back (decode).

    mel:           the transform (its device is where encode and decode run)
    patch_frames:  frames per token: each clip's frames round up to a multiple of it
    vocoder:       a trained :class:`flowcore_audio.vocoder.Vocoder` for decoding; None = Griffin-Lim
    """

    def __init__(self, mel: LogMel, patch_frames: int, vocoder: nn.Module | None = None):
        super().__init__()
        self.mel = mel
        self.patch_frames = patch_frames
        # kept out of the module tree: the vocoder's weights are its own file's, not part of this
        # fixed transform's state (a flow run saves and loads that state, and it has no parameters)
        self.__dict__["vocoder"] = vocoder

    def use_vocoder(self, vocoder: nn.Module | None) -> None:
        """Decode by ``vocoder`` from now on (None: Griffin-Lim); it stays out of this module's state."""
        self.__dict__["vocoder"] = vocoder

    def encode(self, batch: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """{"wave": [B, T], "lengths": [B]} -> {"mel": [B, 1, M, F], "frames": [B]}; frames past a clip's are -1."""
        wave, lengths = batch["wave"], batch["lengths"].to(batch["wave"].device)
        hop = self.mel.hop
        frames = latent_frames(lengths, hop, self.patch_frames)
        total = int(frames.max())
        wave = F.pad(wave, (0, max(0, (total - 1) * hop - wave.shape[-1])))
        mel = self.mel(wave)[..., :total].unsqueeze(1)
        real = torch.arange(total, device=mel.device)[None, :] < frames[:, None]
        return {"mel": mel.masked_fill(~real[:, None, None, :], SILENCE), "frames": frames}

    def decode(self, latent: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """{"mel": [B, 1, M, F], "frames": [B]} -> {"wave": [B, (F - 1) hop], "lengths": (frames - 1) hop}.

        (frames - 1) hop samples is the length whose STFT has ``frames`` frames, so encoding the
        result gives the same frames again. Samples are clamped to [-1, 1].
        """
        mel, frames = latent["mel"], latent["frames"].to(latent["mel"].device)
        wave = vocode(self.vocoder, mel[:, 0]) if self.vocoder is not None else self.mel.inverse(mel[:, 0])
        lengths = (frames - 1) * self.mel.hop
        inside = torch.arange(wave.shape[-1], device=wave.device)[None, :] < lengths[:, None]
        return {"wave": (wave * inside).clamp(-1, 1), "lengths": lengths}

    @torch.no_grad()
    def loss(self, batch: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Mean |mel - mel of the resynthesis| over real frames: what the way back to sound (vocoder or
        Griffin-Lim) loses (nothing to train)."""
        latent = self.encode(batch)
        again = self.encode(self.decode(latent))
        mel = latent["mel"]
        real = torch.arange(mel.shape[-1], device=mel.device)[None, :] < latent["frames"][:, None]  # [B, F]
        error = (again["mel"] - mel).abs().mean(dim=(1, 2))  # [B, F]
        return {"loss": error[real].mean()}


@torch.no_grad()
def vocode(vocoder: nn.Module, mel: torch.Tensor) -> torch.Tensor:
    """normalised log-mel [B, M, F] -> wave [B, (F - 1) hop] by ``vocoder``, on the mel's device, in float32."""
    with torch.autocast(mel.device.type, enabled=False):
        return vocoder.to(mel.device)(mel.float())
