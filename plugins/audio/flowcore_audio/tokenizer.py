"""Mel patch tokens: a mel latent batch <-> one token per patch of frames x bins, positioned by (frame, bin).

    latent {"mel": [B, C, M, F], "frames": [B]}  ->  values [B, (F/pf)(M/pb), C pb pf],
                                                   positions [B, L, 2] = (frame patch, bin patch),
                                                   mask [B, L] = frame patch pf < frames

``F`` is a multiple of the patch's frames ``pf`` and ``M`` of its bins ``pb``; ``frames [B]``
counts each sample's real frames (a multiple of ``pf``: durations round up to whole tokens).
Tokens are in time-major order (all bins of the first frame patch, then the next), so a
shorter sample's real tokens come first and its padding last. Channel ``(c pb + i) pf + j`` of
a token holds channel c, bin i, frame j of its patch. ``decode`` places real tokens by their
positions and fills the rest with ``fill`` (silence, -1, for the log-mel), so a padded batch of
mixed durations decodes too. The log-mel itself has C = 1; a VAE latent (flowcore_audio/vae.py)
has C channels and ``downsample`` times fewer frames and bins than the mel.
"""

from __future__ import annotations

from typing import Sequence

import torch

from flowcore.errors import DataError
from flowcore.modality import Tokenizer, Tokens
from flowcore_audio.mel import SILENCE


def latent_frames(samples: int | torch.Tensor, hop: int, patch_frames: int) -> int | torch.Tensor:
    """Mel frames a waveform of ``samples`` samples takes in the latent: its STFT frames
    (``samples // hop + 1``) rounded up to a multiple of ``patch_frames``."""
    frames = samples // hop + 1
    return -(-frames // patch_frames) * patch_frames


def patchify(mel: torch.Tensor, pf: int, pb: int) -> torch.Tensor:
    """[B, C, M, F] -> [B, (F/pf)(M/pb), C pb pf], time-major."""
    b, c, m, f = mel.shape
    x = mel.reshape(b, c, m // pb, pb, f // pf, pf).permute(0, 4, 2, 1, 3, 5)
    return x.reshape(b, (f // pf) * (m // pb), c * pb * pf)


def unpatchify(values: torch.Tensor, rows: int, cols: int, pf: int, pb: int) -> torch.Tensor:
    """[B, rows cols, C pb pf] (time-major: rows = frame patches, cols = bin patches) -> [B, C, cols pb, rows pf]."""
    b = values.shape[0]
    c = values.shape[-1] // (pb * pf)
    x = values.reshape(b, rows, cols, c, pb, pf).permute(0, 3, 2, 4, 1, 5)
    return x.reshape(b, c, cols * pb, rows * pf)


class MelTokenizer(Tokenizer):
    """Patch tokens of a mel latent ``{"mel": [B, C, M, F], "frames": [B]}``.

    n_mels:        M, bins of the latent (the mel's n_mels / downsample)
    patch:         (pf, pb): latent frames and bins per token
    sample_rate, hop: how ``layout`` turns seconds into (mel) frames
    duration:      seconds ``layout`` lays out when given no size
    latent_channels: C (1: the log-mel itself)
    downsample:    mel frames per latent frame (1: the log-mel itself; 4: the VAE)
    fill:          the value decoding puts where no token is (silence for the log-mel)
    """

    position_axes = 2

    def __init__(self, n_mels: int = 64, patch: tuple[int, int] = (8, 8), sample_rate: int = 16000,
                 hop: int = 160, duration: float = 1.0, latent_channels: int = 1, downsample: int = 1,
                 fill: float = SILENCE):
        pf, pb = patch
        if pf < 1 or pb < 1 or n_mels % pb:
            raise DataError(f"mel tokenizer: patch {patch} must be positive and its bins must divide n_mels {n_mels}")
        self.n_mels, self.patch_frames, self.patch_bins = n_mels, pf, pb
        self.sample_rate, self.hop, self.duration = sample_rate, hop, duration
        self.latent_channels, self.downsample, self.fill = latent_channels, downsample, fill
        self.channels = latent_channels * pf * pb

    def encode(self, latent: dict[str, torch.Tensor]) -> Tokens:
        """latent -> Tokens (values [B, L, C pb pf], positions [B, L, 2], mask [B, L])."""
        mel, frames = latent["mel"], latent["frames"]
        pf, pb, c = self.patch_frames, self.patch_bins, self.latent_channels
        if mel.dim() != 4 or mel.shape[1] != c or mel.shape[2] != self.n_mels or mel.shape[3] % pf:
            raise DataError(f"mel tokenizer wants mel [B, {c}, {self.n_mels}, F] with F a multiple of {pf}, "
                            f"got {tuple(mel.shape)}")
        b, rows, cols = mel.shape[0], mel.shape[3] // pf, self.n_mels // pb
        values = patchify(mel, pf, pb)
        positions = grid_positions(rows, cols, mel.device).expand(b, -1, -1)
        mask = positions[..., 0] * pf < frames.to(mel.device)[:, None]
        return Tokens(values, positions, mask)

    def decode(self, tokens: Tokens) -> dict[str, torch.Tensor]:
        """Tokens -> latent: real tokens placed at their (frame, bin) patch, the rest ``fill``."""
        values, mask = tokens.values, tokens.mask
        pos = tokens.positions.long()
        pf, pb = self.patch_frames, self.patch_bins
        cols = self.n_mels // pb
        last = pos[..., 0].masked_fill(~mask, -1).amax(1)  # [B] last real frame patch
        rows = int(last.max()) + 1
        grid = values.new_full((values.shape[0], rows * cols, values.shape[-1]), self.fill)
        b, i = mask.nonzero(as_tuple=True)
        grid[b, pos[b, i, 0] * cols + pos[b, i, 1]] = values[b, i]
        return {"mel": unpatchify(grid, rows, cols, pf, pb), "frames": (last + 1) * pf}

    def layout(self, batch_size: int, size: float | Sequence[float] | None = None) -> Tokens:
        """Zero tokens for ``batch_size`` clips of ``size`` seconds.

        size: one duration for all, or a list taken in turn (clip i gets ``size[i % len(size)]``);
        None = ``duration``. Durations round up to whole tokens (pf downsample hop samples, 80 ms
        by default).
        """
        seconds = [self.duration] if size is None else [size] if isinstance(size, (int, float)) else list(size)
        if not seconds or min(seconds) <= 0:
            raise DataError(f"audio layout: durations must be positive seconds, got {size!r}")
        samples = torch.tensor([round(seconds[i % len(seconds)] * self.sample_rate) for i in range(batch_size)])
        frames = latent_frames(samples, self.hop, self.patch_frames * self.downsample) // self.downsample
        mel = torch.zeros(batch_size, self.latent_channels, self.n_mels, int(frames.max()))
        return self.encode({"mel": mel, "frames": frames})


def grid_positions(rows: int, cols: int, device=None) -> torch.Tensor:
    """(frame patch, bin patch) of each token in time-major order: [rows cols, 2] float32."""
    r, c = torch.meshgrid(torch.arange(rows, device=device), torch.arange(cols, device=device), indexing="ij")
    return torch.stack([r.reshape(-1), c.reshape(-1)], -1).float()

