"""A latent set <-> tokens: one token per latent vector, all at position 0.

    latent [B, M, C]  ->  values [B, M, C], positions [B, M, 1] = 0, mask all True

The set has no order (the encoder's farthest-point anchors start anywhere), so every token
gets the same position: rotary embeddings then change nothing and the core transformer is
permutation-equivariant over the set, as VecSet's latent diffusion is.

The encoder gives M tokens; ``layout``'s ``size`` asks for another count (the decoder attends to
a set of any size, as in Dora and TripoSG), and a padded batch of mixed counts decodes to a
list of sets.
"""

from __future__ import annotations

import torch

from flowcore.errors import DataError
from flowcore.modality import Tokenizer, Tokens


class SetTokenizer(Tokenizer):
    """Tokens of a [B, M, C] latent set (M = ``latents`` tokens of C = ``channels``)."""

    position_axes = 1

    def __init__(self, latents: int, channels: int):
        self.latents, self.channels = latents, channels

    def encode(self, latent: torch.Tensor) -> Tokens:
        if latent.dim() != 3 or latent.shape[-1] != self.channels or latent.shape[1] == 0:
            raise DataError(f"set tokenizer wants a latent set [B, M, {self.channels}], got {tuple(latent.shape)}")
        b, m, _ = latent.shape
        return Tokens(latent, latent.new_zeros(b, m, 1), torch.ones(b, m, dtype=torch.bool, device=latent.device))

    def decode(self, tokens: Tokens) -> torch.Tensor | list[torch.Tensor]:
        """values [B, M, C]; a padded batch gives a list of its sets [M_i, C] instead."""
        if tokens.mask.all():
            return tokens.values
        return [v[m] for v, m in zip(tokens.values, tokens.mask)]

    def layout(self, batch_size: int, size: int | None = None) -> Tokens:
        """Zero tokens of ``batch_size`` latent sets of ``size`` tokens (default M, what the encoder gives)."""
        count = self.latents if size is None else size
        if not isinstance(count, int) or isinstance(count, bool) or count < 1:
            raise DataError(f"a shape's size is its number of latent tokens, a positive int; got {size!r}")
        return self.encode(torch.zeros(batch_size, count, self.channels))
