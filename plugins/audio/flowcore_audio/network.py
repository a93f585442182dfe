"""A compact 2-D convolutional U-Net velocity network over the mel (or mel latent), beside the core FlowTransformer.

    model:
      network: flowcore_audio.network:MelUNet
      options: {width: 32}

Called like every flowcore network, ``net({modality: Tokens}, {modality: t [B]}) -> {modality:
v [B, L, C]}``. The ``audio`` modality's patch tokens are placed on their (frame, bin) grid and
unpatchified to the mel [B, C, M, F] (flowcore_audio.tokenizer); padding tokens (mask False)
enter as zeros. The mel is folded ``fold`` x ``fold`` into channels and run through residual blocks
(flowcore.nn.conv.ConvResBlock with the embedding as a bias) at three resolutions with skip
connections; the result is unfolded, patchified and read out at each token's position (zero at
padding). Every other modality (the class label: one-hot ±1 [B, 1, K]) is a condition: a linear
embedding of its token values, scaled by (1 - t) so that a dropped condition (prior noise at t =
1) or one missing from the dict contributes exactly zero; it is added to the sinusoidal time
embedding of the audio's t. Conditions get zero velocity: this network generates the audio only.
Built with ``interval=True`` (``flow.objective: meanflow``) it also embeds h = t - r, the interval
of an average velocity, into the same bias (zero at init, so velocity weights load unchanged).
"""

from __future__ import annotations

from typing import Mapping, Sequence

import torch
from torch import nn
from torch.nn import functional as F

from flowcore.errors import ConfigError, DataError
from flowcore.modality import Tokens
from flowcore.nn.conv import ConvResBlock, group_norm
from flowcore.nn.embeddings import timestep_frequencies
from flowcore.nn.interval import IntervalEmbedding, interval_lengths
from flowcore_audio.tokenizer import patchify, unpatchify


def tokens_to_mel(tokens: Tokens, pf: int, pb: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Mel patch tokens (any order) -> the mel [B, C, M, F], padding tokens (mask False) as zeros,
    and each token's flat (frame patch, bin patch) cell [B, L], to read tokens back with :func:`mel_to_tokens`."""
    values, pos = tokens.values, tokens.positions.long()
    b, length, d = values.shape
    cols = int(pos[..., 1].max()) + 1
    rows = -(-length // cols)
    index = pos[..., 0] * cols + pos[..., 1]
    if int(index.max()) >= rows * cols:
        raise DataError(f"flowcore_audio.network: {length} audio tokens do not fill a grid of {cols} bin patches")
    real = values * tokens.mask[..., None].to(values.dtype)
    grid = values.new_zeros(b, rows * cols, d).scatter(1, index[..., None].expand(-1, -1, d), real)
    return unpatchify(grid, rows, cols, pf, pb), index


def mel_to_tokens(mel: torch.Tensor, index: torch.Tensor, pf: int, pb: int) -> torch.Tensor:
    """mel [B, C, M, F] -> token values [B, L, C pb pf] at the cells ``index`` [B, L] (:func:`tokens_to_mel`)."""
    grid = patchify(mel, pf, pb)
    return grid.gather(1, index[..., None].expand(-1, -1, grid.shape[-1]))


class MelUNet(nn.Module):
    """Velocity of the ``audio`` modality from a conv U-Net over its mel: (M, F) -> /2 -> /4 -> /8 -> back.

    shapes:    {modality: (L, C)} from the pipeline; ``audio`` is generated, the rest condition it
    patch:     (frames, bins) per token, as ``modalities.audio.patch``
    channels:  mel channels: 1 for the log-mel, ``latent_channels`` for the VAE latent
    fold:      mel bins and frames folded into channels before the first conv (pixel unshuffle)
    width:     channels after the fold; 2x width at the two coarser levels
    emb_dim:   time + condition embedding size
    audio:     the name of the generated audio modality
    interval:  also take r (an average-velocity network, flowcore.flow.meanflow)
    time_scale: t and h are multiplied by it before their sinusoidal features; 1 keeps the network
               smooth in t, which MeanFlow's (t - r) du/dt needs (docs/meanflow.md)
    """

    def __init__(self, shapes: Mapping[str, tuple[int, int]], patch: int | Sequence[int] = (8, 8),
                 channels: int = 1, fold: int = 2, width: int = 32, emb_dim: int = 128, audio: str = "audio",
                 interval: bool = False, time_scale: float = 1000.0):
        super().__init__()
        where = "flowcore_audio.network:MelUNet"
        if audio not in shapes:
            raise ConfigError(f"{where}: no modality {audio!r} in {sorted(shapes)}; set model.options.audio to the "
                              "audio modality's name")
        pf, pb = (patch, patch) if isinstance(patch, int) else tuple(patch)
        if shapes[audio][1] != channels * pf * pb:
            raise ConfigError(f"{where}: audio tokens have {shapes[audio][1]} channels, not channels x frames x bins "
                              f"= {channels} x {pf} x {pb}; set model.options.patch and channels as the audio "
                              "modality's patch and latent channels")
        if width % 8:
            raise ConfigError(f"{where}: model.options.width {width} must be a multiple of 8 (group norm)")
        if fold < 1 or pf % fold or pb % fold:
            raise ConfigError(f"{where}: model.options.fold {fold} must divide the patch's frames {pf} and bins {pb}")
        self.audio, self.patch, self.channels, self.emb_dim, self.fold = audio, (pf, pb), channels, emb_dim, fold
        self.conds = [n for n in shapes if n != audio]
        self.time_scale = time_scale
        self.time = nn.Sequential(nn.Linear(emb_dim, emb_dim), nn.SiLU(), nn.Linear(emb_dim, emb_dim))
        self.interval = IntervalEmbedding(emb_dim, time_scale) if interval else None
        self.cond = nn.ModuleDict({n: nn.Linear(length * c, emb_dim) for n, (length, c) in shapes.items()
                                   if n != audio})
        w1, w2 = width, 2 * width
        folded = fold * fold * channels
        self.stem = nn.Conv2d(folded, w1, 3, padding=1)
        self.down1 = ConvResBlock(w1, w1, emb_dim)
        self.pool1 = nn.Conv2d(w1, w2, 3, stride=2, padding=1)
        self.down2 = ConvResBlock(w2, w2, emb_dim)
        self.pool2 = nn.Conv2d(w2, w2, 3, stride=2, padding=1)
        self.mid = ConvResBlock(w2, w2, emb_dim)
        self.up2 = ConvResBlock(2 * w2, w2, emb_dim)
        self.up1 = ConvResBlock(w2 + w1, w1, emb_dim)
        self.out_norm = group_norm(w1)
        self.out = nn.Conv2d(w1, folded, 3, padding=1)
        nn.init.zeros_(self.out.weight)  # zero velocity at init, as the FlowTransformer's head
        nn.init.zeros_(self.out.bias)

    def embedding(self, tokens: Mapping[str, Tokens], t: Mapping[str, torch.Tensor],
                  r: Mapping[str, torch.Tensor] | None = None) -> torch.Tensor:
        """Time (and interval) embedding of the audio's t plus each present condition's, scaled by (1 - t):
        [B, emb_dim]."""
        emb = self.time(timestep_frequencies(t[self.audio], self.emb_dim, scale=self.time_scale))
        h = interval_lengths({self.audio: t[self.audio]}, r, self.interval is not None,
                             "flowcore_audio.network:MelUNet")
        if h is not None:
            emb = emb + self.interval(h[self.audio])
        for name in self.conds:
            if name in tokens:
                v = tokens[name].values
                given = (1.0 - t[name].to(v.dtype))[:, None]  # 1 given (t = 0), 0 dropped (t = 1)
                emb = emb + given * self.cond[name](v.reshape(v.shape[0], -1))
        return emb

    def forward(self, tokens: Mapping[str, Tokens], t: Mapping[str, torch.Tensor],
                r: Mapping[str, torch.Tensor] | None = None) -> dict[str, torch.Tensor]:
        audio = tokens[self.audio]
        mel, index = tokens_to_mel(audio, *self.patch)
        if mel.shape[-2] % self.fold or mel.shape[-1] % self.fold:
            raise DataError(f"flowcore_audio.network:MelUNet: the mel {tuple(mel.shape[-2:])} does not fold by "
                            f"model.options.fold = {self.fold}")
        emb = self.embedding(tokens, t, r).to(mel.dtype)
        h1 = self.down1(self.stem(F.pixel_unshuffle(mel, self.fold)), emb)  # [B, w, M/fold, F/fold]
        h2 = self.down2(self.pool1(h1), emb)                                 # [B, 2w, M/2fold, F/2fold]
        h = self.mid(self.pool2(h2), emb)                                    # [B, 2w, M/4fold, F/4fold]
        h = self.up2(torch.cat([F.interpolate(h, size=h2.shape[-2:], mode="nearest"), h2], 1), emb)
        h = self.up1(torch.cat([F.interpolate(h, size=h1.shape[-2:], mode="nearest"), h1], 1), emb)
        v = F.pixel_shuffle(self.out(F.silu(self.out_norm(h))), self.fold)
        out = {self.audio: mel_to_tokens(v, index, *self.patch) * audio.mask[..., None].to(v.dtype)}
        for name in self.conds:
            if name in tokens:
                out[name] = torch.zeros_like(tokens[name].values)
        return out
