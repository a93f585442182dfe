"""The RecTable vector ``x [B, D]`` as tokens, two ways (modality option ``tokenizer``).

``row`` (RecTable): one flat token per row, values [B, 1, D], positions [B, 1, 1] = 0. For
the GLU-MLP and any network that takes one vector per sample.

``column``: one token per column, values [B, Ncols, D], positions [B, Ncols, 1] = the column
index. Token k carries column k's dims of x in their own channels (the same channels as in
the flat vector) and zeros elsewhere, so a token says which column it is by where its values
sit, and the column id also reaches attention through rotary positions. For the
FlowTransformer, and so for any-to-any models and imputation (which tokens are given is a
per-token choice, see :meth:`ColumnTokenizer.given`).
"""

from __future__ import annotations

from typing import Sequence

import torch

from flowcore.errors import DataError
from flowcore.modality import Tokenizer, Tokens

from flowcore_tabular.encoding import TableBatch, TableEncoder

#: what a channel of a token holds, and so which prior it has
ZERO, GAUSSIAN, UNIFORM = 0, 1, 2


class _TableTokenizer(Tokenizer):
    position_axes = 1

    def __init__(self, encoder: TableEncoder):
        self.encoder = encoder
        self.channels = encoder.dim

    def layout(self, batch_size: int, size=None) -> Tokens:
        values = torch.zeros(batch_size, self.length, self.channels)
        return Tokens(values, self.positions(batch_size), torch.ones(batch_size, self.length, dtype=torch.bool))

    def positions(self, batch_size: int) -> torch.Tensor:
        return torch.arange(self.length, dtype=torch.float32).reshape(1, -1, 1).expand(batch_size, -1, -1).clone()

    def given(self, columns: Sequence[str]) -> torch.Tensor:
        """[L, C] bool: the token channels that hold the named columns (True = given)."""
        names = self.encoder.schema.names
        unknown = sorted(set(columns) - set(names))
        if unknown:
            raise DataError(f"given columns {unknown} are not in the table; columns are {names}")
        flat = torch.zeros(self.channels, dtype=torch.bool)
        for block in self.encoder.blocks:
            if block.column.name in columns:
                flat[block.start:block.stop] = True
        return self.channel_kinds().ne(ZERO) & flat

    def channel_kinds(self) -> torch.Tensor:
        """[L, C] int: ZERO (always 0), GAUSSIAN (N(0,1) prior) or UNIFORM (U(-1,1) prior) per channel."""
        kinds = torch.where(self.encoder.gaussian, GAUSSIAN, UNIFORM)
        return kinds.unsqueeze(0) * self.occupancy()

    def occupancy(self) -> torch.Tensor:
        raise NotImplementedError

    length: int


class RowTokenizer(_TableTokenizer):
    """x [B, D] <-> values [B, 1, D]: one flat token per row (RecTable)."""

    length = 1

    def encode(self, latent: TableBatch) -> Tokens:
        x = self.encoder.encode(latent)
        b = x.shape[0]
        return Tokens(x.unsqueeze(1), self.positions(b), torch.ones(b, 1, dtype=torch.bool))

    def decode(self, tokens: Tokens) -> TableBatch:
        return self.encoder.decode(tokens.values[:, 0, :])

    def occupancy(self) -> torch.Tensor:
        return torch.ones(1, self.channels, dtype=torch.long)


class ColumnTokenizer(_TableTokenizer):
    """x [B, D] <-> values [B, Ncols, D]: token k holds column k's dims, zeros elsewhere."""

    def __init__(self, encoder: TableEncoder):
        super().__init__(encoder)
        self.length = len(encoder.blocks)
        occ = torch.zeros(self.length, self.channels, dtype=torch.long)
        for k, block in enumerate(encoder.blocks):
            occ[k, block.start:block.stop] = 1
        self._occupancy = occ

    def occupancy(self) -> torch.Tensor:
        return self._occupancy

    def encode(self, latent: TableBatch) -> Tokens:
        x = self.encoder.encode(latent)
        b = x.shape[0]
        values = x.unsqueeze(1) * self._occupancy.unsqueeze(0).to(x.dtype)
        return Tokens(values, self.positions(b), torch.ones(b, self.length, dtype=torch.bool))

    def decode(self, tokens: Tokens) -> TableBatch:
        occ = self._occupancy.to(tokens.values.device, tokens.values.dtype)
        # each channel belongs to exactly one token: pick it, ignore what others hold there
        x = (tokens.values * occ.unsqueeze(0)).sum(1)
        return self.encoder.decode(x)


TOKENIZERS = {"row": RowTokenizer, "column": ColumnTokenizer}
