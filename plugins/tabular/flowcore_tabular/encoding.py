"""Rows <-> typed columns (lossless) <-> the RecTable vector (what the flow moves).

Two steps, kept apart because only the first is exact:

1. :func:`collate` / :func:`split`: rows -> a :data:`TableBatch` of tensors and back, exactly.
   ``{"numeric": float64 [B, Nc], "category": int64 [B, Nk], "missing": bool [B, Ncols]}``:
   continuous columns (numeric, integer, datetime as seconds) in schema order, then the
   category index of each categorical/boolean column; missing cells hold 0 and are flagged.

2. :class:`TableEncoder` (fitted on the training rows): the batch <-> the RecTable vector
   ``x [B, D]`` (RecTable, Tabular section of REFERENCES.md):

   - a continuous column -> one dim, scikit-learn's ``QuantileTransformer`` to a standard
     normal with ``n_quantiles = max(min(N / 30, 1000), 10)``; if the column has missing
     values, one more dim: a missing indicator, +1 missing / -1 present (the value dim is 0);
   - a categorical/boolean column -> one-hot scaled to {-1, +1}, with one extra slot for
     "missing" when the column has missing values;
   - with ``integer_levels = K > 0`` (not RecTable's), an integer column with at most K
     distinct training values -> one-hot over those values, as a categorical (a value
     the training rows lack encodes as the nearest of them). A quantile-normal dim holds
     such a column as a few point masses that decoding must round to exactly; one-hot
     slots let the network tie each value to other columns' categories (Adult's
     education_num is a relabelling of education). CTGAN's mode-specific normalisation
     gives such columns one mode per value to the same end;
   - a column that relabels another (``schema.relabels``, :mod:`flowcore_tabular.relabel`)
     -> no dims: decoding looks it up from its source's decoded value.

   Columns keep schema order; :attr:`TableEncoder.blocks` gives each modelled column's dims, and
   :attr:`TableEncoder.gaussian` says which dims have the N(0, 1) prior (quantile-normal
   values); every other dim is ±1-valued and has the U(-1, 1) prior.

Decoding inverts each step: inverse quantile (the fitted range's ends exactly), rounded
to the column's decimals / to an integer / to its datetime resolution; argmax for one-hot
blocks (an integer column's one-hot block: the value of its slot); a positive missing
indicator (or the missing slot's argmax) gives ``None``.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Any, Mapping, NoReturn, Sequence

import numpy as np
import torch
from scipy.special import ndtr, ndtri

from flowcore.errors import DataError
from flowcore_tabular.relabel import lookup
from flowcore_tabular.schema import Column, Schema, from_seconds, to_seconds

TableBatch = dict  # {"numeric": float64 [B, Nc], "category": int64 [B, Nk], "missing": bool [B, Ncols]}


def continuous_columns(schema: Schema) -> list[Column]:
    return [c for c in schema.columns if c.continuous]


def discrete_columns(schema: Schema) -> list[Column]:
    return [c for c in schema.columns if not c.continuous]


def collate(schema: Schema, rows: Sequence[Mapping[str, Any]]) -> TableBatch:
    """Rows -> a :data:`TableBatch` (exact: float64 holds ints to 2^53 and seconds to the µs)."""
    cont, disc = continuous_columns(schema), discrete_columns(schema)
    numeric = np.zeros((len(rows), len(cont)), dtype=np.float64)
    category = np.zeros((len(rows), len(disc)), dtype=np.int64)
    missing = np.zeros((len(rows), len(schema.columns)), dtype=bool)
    col_index = {c.name: i for i, c in enumerate(schema.columns)}
    # a dict per column: list.index per cell was a tenth of a training step on small tables
    lookup = [_category_lookup(col) for col in disc]
    for i, row in enumerate(rows):
        for j, col in enumerate(cont):
            v = row[col.name]
            if v is None:
                missing[i, col_index[col.name]] = True
            else:
                numeric[i, j] = to_seconds(v) if col.kind == "datetime" else float(v)
        for j, col in enumerate(disc):
            v = row[col.name]
            if v is None:
                missing[i, col_index[col.name]] = True
            else:
                index = lookup[j].get(v) if col.kind != "boolean" else int(bool(v))
                if index is None:
                    _unseen(col, v, f"row {i}")
                category[i, j] = index
    return {"numeric": torch.from_numpy(numeric), "category": torch.from_numpy(category),
            "missing": torch.from_numpy(missing)}


@functools.lru_cache(maxsize=256)
def _category_lookup(col: Column) -> dict[Any, int]:
    """{category: its index} of a categorical column (columns are frozen, so this is cached)."""
    return {c: i for i, c in enumerate(col.categories)}


def _unseen(col: Column, value: Any, where: str) -> NoReturn:
    raise DataError(f"{where}, column {col.name!r}: category {value!r} was not seen when the schema was "
                    f"fitted ({len(col.categories)} known, e.g. {list(col.categories[:5])})")


def split(schema: Schema, batch: TableBatch) -> list[dict[str, Any]]:
    """The inverse of :func:`collate`: a batch -> rows of Python values (None where missing)."""
    cont, disc = continuous_columns(schema), discrete_columns(schema)
    numeric = batch["numeric"].double().cpu().numpy()
    if batch["numeric"].dtype != torch.float64:
        # a batch cast to float32 on its way here (e.g. moved to the CPU as float) lost digits:
        # give values back the precision their columns have
        numeric = np.stack([_round(c, numeric[:, j]) for j, c in enumerate(cont)], 1).reshape(numeric.shape)
    category = batch["category"].cpu().numpy()
    missing = batch["missing"].cpu().numpy()
    cj = {c.name: j for j, c in enumerate(cont)}
    dj = {c.name: j for j, c in enumerate(disc)}
    rows = []
    for i in range(numeric.shape[0]):
        row: dict[str, Any] = {}
        for k, col in enumerate(schema.columns):
            if missing[i, k]:
                row[col.name] = None
            elif col.continuous:
                v = float(numeric[i, cj[col.name]])
                row[col.name] = (int(round(v)) if col.kind == "integer"
                                 else from_seconds(v, col.date_only) if col.kind == "datetime" else v)
            else:
                idx = int(category[i, dj[col.name]])
                row[col.name] = bool(idx) if col.kind == "boolean" else col.categories[idx]
        rows.append(row)
    return rows


def n_quantiles(n_rows: int) -> int:
    """RecTable's rule: max(min(N / 30, 1000), 10)."""
    return int(max(min(n_rows // 30, 1000), 10))


@dataclass(frozen=True)
class Block:
    """Where one column lives in the RecTable vector: dims [start, start + width)."""

    column: Column
    start: int
    width: int

    @property
    def stop(self) -> int:
        return self.start + self.width


class QuantileNormal:
    """One column's quantile-normal map, fitted by scikit-learn's ``QuantileTransformer``.

    Two departures from scikit-learn's ``transform`` / ``inverse_transform``, both at the ends
    of the fitted range:

    - a value tied over several quantiles maps to the middle of its tie, at the ends too
      (scikit-learn sends every copy of the minimum to -5.2: Adult's capital_gain, 92 %
      zeros, would put 92 % of its rows at -5.2, far out in the prior's tail);
    - scores at the clip (about ±5.2) decode to the fitted minimum / maximum exactly, so the
      extreme training values survive a round trip through float32 tokens.
    """

    BOUND = 1e-7  # scikit-learn's BOUNDS_THRESHOLD: ranks are clipped to [BOUND, 1 - BOUND]

    def __init__(self, values: np.ndarray, seed: int):
        from sklearn.preprocessing import QuantileTransformer

        self.qt = QuantileTransformer(output_distribution="normal", n_quantiles=n_quantiles(len(values)),
                                      subsample=10**9, random_state=seed)
        self.qt.fit(values.reshape(-1, 1))
        self.q = self.qt.quantiles_[:, 0]
        self.r = self.qt.references_
        self.low, self.high = float(self.q[0]), float(self.q[-1])
        # a little inside the clip, so float32 scores at the clip still count as the ends
        self.z_clip = float(ndtri(1 - self.BOUND)) - 1e-4

    def forward(self, x: np.ndarray) -> np.ndarray:
        """x [N] -> normal scores [N]: rank by interpolating the quantiles (ties -> their middle)."""
        x = np.asarray(x, dtype=np.float64)
        rank = 0.5 * (np.interp(x, self.q, self.r) - np.interp(-x, -self.q[::-1], -self.r[::-1]))
        return ndtri(np.clip(rank, self.BOUND, 1 - self.BOUND))

    def inverse(self, z: np.ndarray) -> np.ndarray:
        """normal scores [N] -> values [N] (scikit-learn's inverse, exact at the ends)."""
        z = np.asarray(z, dtype=np.float64)
        x = np.interp(ndtr(z), self.r, self.q)
        x = np.where(z <= -self.z_clip, self.low, x)
        return np.where(z >= self.z_clip, self.high, x)


class TableEncoder:
    """The fitted RecTable map between a :data:`TableBatch` and ``x [B, D]`` (see module doc)."""

    def __init__(self, schema: Schema, rows: Sequence[Mapping[str, Any]], seed: int = 0, integer_levels: int = 0):
        if not rows:
            raise DataError("the tabular encoder needs training rows to fit its quantiles")
        if integer_levels < 0:
            raise DataError(f"tabular option integer_levels: {integer_levels}; use a count >= 0 (0 turns it off)")
        self.schema = schema
        batch = collate(schema, rows)
        self.cont, self.disc = continuous_columns(schema), discrete_columns(schema)
        #: {column: its Relabel}: columns decoded from their source, not encoded
        self.relabels = {r.column: r for r in schema.relabels}
        #: {column name: (its index among all columns, its index in the batch's numeric or category)}
        self._slot = {c.name: (k, (self.cont if c.continuous else self.disc).index(c))
                      for k, c in enumerate(schema.columns)}
        self.quantiles: dict[str, QuantileNormal] = {}
        #: integer columns encoded one-hot: {name: their sorted training values [K]}
        self.levels: dict[str, np.ndarray] = {}
        for col in self.cont:
            if col.name in self.relabels:
                continue
            k, j = self._slot[col.name]
            present = ~batch["missing"][:, k].numpy()
            values = batch["numeric"][:, j].numpy()[present]
            if values.size == 0:
                raise DataError(f"column {col.name!r} has no values in the training rows; drop it or give it a kind")
            distinct = np.unique(values)
            if col.kind == "integer" and len(distinct) <= integer_levels:
                self.levels[col.name] = distinct
            else:
                self.quantiles[col.name] = QuantileNormal(values, seed)
        blocks, start = [], 0
        for col in schema.columns:
            if col.name in self.relabels:
                continue
            if col.name in self.levels:
                width = len(self.levels[col.name]) + col.has_missing
            else:
                width = (1 + col.has_missing) if col.continuous else self.n_slots(col)
            blocks.append(Block(col, start, width))
            start += width
        #: one block per modelled column (every column but the relabelled ones), in schema order
        self.blocks: list[Block] = blocks
        self.dim = start
        gaussian = torch.zeros(self.dim, dtype=torch.bool)
        for b in blocks:
            if b.column.name in self.quantiles:
                gaussian[b.start] = True
        #: [D] True where the dim is a quantile-normal value (N(0, 1) prior), else ±1-valued (U(-1, 1))
        self.gaussian = gaussian

    def block_index(self, name: str) -> int:
        """The block (column token) that models column ``name``: its own, or its source's if relabelled."""
        name = self.relabels[name].source if name in self.relabels else name
        for k, block in enumerate(self.blocks):
            if block.column.name == name:
                return k
        raise DataError(f"no column {name!r} in the table; columns are {self.schema.names}")

    @staticmethod
    def n_slots(col: Column) -> int:
        known = 2 if col.kind == "boolean" else len(col.categories)
        return known + col.has_missing

    def encode(self, batch: TableBatch) -> torch.Tensor:
        """A :data:`TableBatch` -> x [B, D] float32 (relabelled columns are not encoded)."""
        numeric, category, missing = batch["numeric"], batch["category"], batch["missing"]
        b = numeric.shape[0]
        x = torch.full((b, self.dim), -1.0, dtype=torch.float32)
        for block in self.blocks:
            col = block.column
            k, j = self._slot[col.name]
            miss = missing[:, k].cpu()
            if col.name in self.levels:
                self._one_hot(x, block, self._level_index(col.name, numeric[:, j]), miss)
            elif col.continuous:
                z = self.quantiles[col.name].forward(numeric[:, j].double().cpu().numpy())
                z = torch.from_numpy(z).float().masked_fill(miss, 0.0)
                x[:, block.start] = z
                if col.has_missing:
                    x[:, block.start + 1] = torch.where(miss, 1.0, -1.0)
            else:
                self._one_hot(x, block, category[:, j], miss)
        return x

    @staticmethod
    def _one_hot(x: torch.Tensor, block: Block, index: torch.Tensor, miss: torch.Tensor) -> None:
        """Set ``block``'s slot ``index [B]`` of x to +1 (the last slot where ``miss``)."""
        idx = index.cpu().clone()
        if miss.any():
            idx[miss] = block.width - 1
        if idx.numel() and (idx.min() < 0 or idx.max() >= block.width):
            raise DataError(f"column {block.column.name!r}: category index outside [0, {block.width})")
        x[torch.arange(x.shape[0]), block.start + idx] = 1.0

    def _level_index(self, name: str, values: torch.Tensor) -> torch.Tensor:
        """values [B] of a one-hot integer column -> the index of the nearest training value [B]."""
        levels = self.levels[name]  # at most integer_levels values: a [B, K] table is cheap
        v = values.double().cpu().numpy()
        nearest = np.abs(v[:, None] - levels[None, :]).argmin(1)  # a tie goes to the lower value
        return torch.from_numpy(nearest.astype(np.int64))

    def decode(self, x: torch.Tensor) -> TableBatch:
        """x [B, D] -> a :data:`TableBatch` of values typed and rounded as the schema says;
        relabelled columns by lookup from their decoded source."""
        x = x.detach().float().cpu()
        b = x.shape[0]
        numeric = torch.zeros(b, len(self.cont), dtype=torch.float64)
        category = torch.zeros(b, len(self.disc), dtype=torch.int64)
        missing = torch.zeros(b, len(self.schema.columns), dtype=torch.bool)
        for block in self.blocks:
            col = block.column
            k, j = self._slot[col.name]
            if col.name in self.levels:
                idx = x[:, block.start:block.stop].argmax(-1)
                miss = (idx == block.width - 1) if col.has_missing else torch.zeros(b, dtype=torch.bool)
                values = torch.from_numpy(self.levels[col.name][idx.masked_fill(miss, 0).numpy()])
                numeric[:, j] = values.masked_fill(miss, 0.0)
            elif col.continuous:
                miss = x[:, block.start + 1] > 0 if col.has_missing else torch.zeros(b, dtype=torch.bool)
                values = _round(col, self.quantiles[col.name].inverse(x[:, block.start].double().numpy()))
                numeric[:, j] = torch.from_numpy(values).masked_fill(miss, 0.0)
            else:
                idx = x[:, block.start:block.stop].argmax(-1)
                miss = (idx == block.width - 1) if col.has_missing else torch.zeros(b, dtype=torch.bool)
                category[:, j] = idx.masked_fill(miss, 0)
            missing[:, k] = miss
        batch = {"numeric": numeric, "category": category, "missing": missing}
        for rel in self.relabels.values():
            source = self.schema[rel.source]
            self._set_values(batch, rel.column, lookup(rel, source.kind, self._values(batch, source)))
        return batch

    def _values(self, batch: TableBatch, col: Column) -> list[Any]:
        """A discrete or integer column's values in ``batch`` (None where missing)."""
        k, j = self._slot[col.name]
        miss = batch["missing"][:, k].tolist()
        if col.continuous:
            raw = [int(v) for v in batch["numeric"][:, j].tolist()]
        else:
            idx = batch["category"][:, j].tolist()
            raw = [bool(i) for i in idx] if col.kind == "boolean" else [col.categories[i] for i in idx]
        return [None if m else v for v, m in zip(raw, miss)]

    def _set_values(self, batch: TableBatch, name: str, values: Sequence[Any]) -> None:
        """Write a discrete or integer column's values (None = missing) into ``batch``."""
        col = self.schema[name]
        k, j = self._slot[name]
        batch["missing"][:, k] = torch.tensor([v is None for v in values], dtype=torch.bool)
        if col.continuous:
            batch["numeric"][:, j] = torch.tensor([0.0 if v is None else float(v) for v in values],
                                                  dtype=torch.float64)
        else:
            index = _category_lookup(col)
            batch["category"][:, j] = torch.tensor(
                [0 if v is None else int(v) if col.kind == "boolean" else index[v] for v in values], dtype=torch.int64)


def _round(col: Column, values: np.ndarray) -> np.ndarray:
    """Give decoded values the precision their column has: integers, decimals, whole days/µs."""
    if col.kind == "integer":
        return np.rint(values)
    if col.kind == "numeric" and col.decimals is not None:
        return np.round(values, col.decimals)
    if col.kind == "datetime":
        return np.round(values / col.unit) * col.unit
    return values
