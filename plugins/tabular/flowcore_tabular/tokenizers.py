"""The RecTable vector ``x [B, D]`` as tokens, two ways (modality option ``tokenizer``).

``row`` (RecTable): one flat token per row, values [B, 1, C], positions [B, 1, 1] = 0. For
the GLU-MLP and any network that takes one vector per sample.

``column``: one token per column, values [B, Ncols, C], positions [B, Ncols, 1] = the column
index. Ncols counts the modelled columns: a relabelled column (``flowcore_tabular.relabel``)
has no token or dims, it is decoded from its source's. Token k carries column k's dims of x
in their own channels (the same channels as in the flat vector) and zeros elsewhere, so a
token says which column it is by where its values sit, and the column id also reaches
attention through rotary positions. For the
FlowTransformer, and so for any-to-any models and imputation.

With ``flags`` (modality option ``masking`` > 0) the tokens get ``Ncols`` more channels,
one per column, after the D value channels: 1 where the column is *known* (held at its
data value, see :class:`~flowcore_tabular.path.MaskedColumnPath`), 0 where it is generated.
Column k's flag sits in channel D + k, owned by token k (``column``) or by the one token
(``row``). Data encode with every flag at 0; decoding ignores the flags.
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
    length: int

    def __init__(self, encoder: TableEncoder, flags: bool = False):
        self.encoder = encoder
        self.n_columns = len(encoder.blocks)
        self.flags = flags
        self.channels = encoder.dim + (self.n_columns if flags else 0)

    def layout(self, batch_size: int, size=None) -> Tokens:
        values = torch.zeros(batch_size, self.length, self.channels)
        return Tokens(values, self.positions(batch_size), torch.ones(batch_size, self.length, dtype=torch.bool))

    def positions(self, batch_size: int) -> torch.Tensor:
        return torch.arange(self.length, dtype=torch.float32).reshape(1, -1, 1).expand(batch_size, -1, -1).clone()

    def column_index(self, columns: Sequence[str]) -> list[int]:
        """Column names -> the indices of the blocks that model them (a relabelled column's is its
        source's; a DataError names unknown columns)."""
        names = self.encoder.schema.names
        unknown = sorted(set(columns) - set(names))
        if unknown:
            raise DataError(f"given columns {unknown} are not in the table; columns are {names}")
        return [self.encoder.block_index(c) for c in columns]

    def given(self, columns: Sequence[str]) -> torch.Tensor:
        """[L, C] bool: the token value channels that hold the named columns (True = given)."""
        known = torch.zeros(1, self.n_columns, dtype=torch.bool)
        known[0, self.column_index(columns)] = True
        return known_channels(known, self.column_map())[0]

    def column_map(self) -> torch.Tensor:
        """[L, C] long: the column whose value a channel holds, -1 for zero and flag channels."""
        col = torch.full((self.encoder.dim,), -1, dtype=torch.long)
        for k, block in enumerate(self.encoder.blocks):
            col[block.start:block.stop] = k
        values = torch.where(self.occupancy().bool(), col.unsqueeze(0), -1)
        return self._pad(values, -1)

    def flag_map(self) -> torch.Tensor:
        """[L, C] long: the column whose known-flag a channel holds, -1 elsewhere (all -1 without flags)."""
        out = torch.full((self.length, self.channels), -1, dtype=torch.long)
        if self.flags:
            d = self.encoder.dim
            own = self.flag_owner()
            out[:, d:] = torch.where(own, torch.arange(self.n_columns).unsqueeze(0), -1)
        return out

    def channel_kinds(self) -> torch.Tensor:
        """[L, C] int: ZERO (always 0 in data and prior), GAUSSIAN (N(0,1) prior) or UNIFORM (U(-1,1) prior)."""
        kinds = torch.where(self.encoder.gaussian, GAUSSIAN, UNIFORM)
        return self._pad(kinds.unsqueeze(0) * self.occupancy(), ZERO)

    def _pad(self, values: torch.Tensor, fill: int) -> torch.Tensor:
        """[L, D] per value channel -> [L, C] with ``fill`` on the flag channels."""
        if not self.flags:
            return values
        return torch.cat([values, torch.full((self.length, self.n_columns), fill, dtype=values.dtype)], 1)

    def _with_flags(self, values: torch.Tensor) -> torch.Tensor:
        """values [B, L, D] -> [B, L, C]: flags appended at 0 (data are never known-flagged)."""
        if not self.flags:
            return values
        return torch.cat([values, values.new_zeros(*values.shape[:2], self.n_columns)], -1)

    def occupancy(self) -> torch.Tensor:
        """[L, D] long: 1 where a token holds a value channel."""
        raise NotImplementedError

    def flag_owner(self) -> torch.Tensor:
        """[L, Ncols] bool: which token holds column k's flag."""
        raise NotImplementedError


class RowTokenizer(_TableTokenizer):
    """x [B, D] <-> values [B, 1, C]: one flat token per row (RecTable)."""

    length = 1

    def encode(self, latent: TableBatch) -> Tokens:
        x = self.encoder.encode(latent)
        b = x.shape[0]
        return Tokens(self._with_flags(x.unsqueeze(1)), self.positions(b), torch.ones(b, 1, dtype=torch.bool))

    def decode(self, tokens: Tokens) -> TableBatch:
        return self.encoder.decode(tokens.values[:, 0, :self.encoder.dim])

    def occupancy(self) -> torch.Tensor:
        return torch.ones(1, self.encoder.dim, dtype=torch.long)

    def flag_owner(self) -> torch.Tensor:
        return torch.ones(1, self.n_columns, dtype=torch.bool)


class ColumnTokenizer(_TableTokenizer):
    """x [B, D] <-> values [B, Ncols, C]: token k holds column k's dims (and flag), zeros elsewhere."""

    def __init__(self, encoder: TableEncoder, flags: bool = False):
        super().__init__(encoder, flags)
        self.length = self.n_columns
        occ = torch.zeros(self.length, encoder.dim, dtype=torch.long)
        for k, block in enumerate(encoder.blocks):
            occ[k, block.start:block.stop] = 1
        self._occupancy = occ

    def occupancy(self) -> torch.Tensor:
        return self._occupancy

    def flag_owner(self) -> torch.Tensor:
        return torch.eye(self.n_columns, dtype=torch.bool)

    def encode(self, latent: TableBatch) -> Tokens:
        x = self.encoder.encode(latent)
        b = x.shape[0]
        values = x.unsqueeze(1) * self._occupancy.unsqueeze(0).to(x.dtype)
        return Tokens(self._with_flags(values), self.positions(b), torch.ones(b, self.length, dtype=torch.bool))

    def decode(self, tokens: Tokens) -> TableBatch:
        occ = self._occupancy.to(tokens.values.device, tokens.values.dtype)
        # each value channel belongs to exactly one token: pick it, ignore what others hold there
        x = (tokens.values[..., :self.encoder.dim] * occ.unsqueeze(0)).sum(1)
        return self.encoder.decode(x)


def known_channels(known: torch.Tensor, columns: torch.Tensor) -> torch.Tensor:
    """known [B, Ncols] bool per column -> [B, L, C] bool per channel, via a map ``columns [L, C]``
    (column_map or flag_map; -1 = no column)."""
    picked = known[:, columns.clamp_min(0).to(known.device)]
    return picked & columns.ge(0).to(known.device)


TOKENIZERS = {"row": RowTokenizer, "column": ColumnTokenizer}
