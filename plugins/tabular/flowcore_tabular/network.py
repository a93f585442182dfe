"""RecTable's velocity network: a GLU MLP on flat rows.

    net(tokens: {modality: Tokens}, t: {modality: t [B]}) -> {modality: v [B, L, C]}

the same call as the core pipeline's networks (``flowcore.train.networks``), so it can
stand in for ``model.network: mlp``; :meth:`RecTableMLP.velocity` is the bare
``x [B, D], t [B] -> v [B, D]`` form. Layout (RecTable's ``DDPM`` model): the flattened
token values are projected to ``time_dim`` and the time embedding is added; then GLU blocks
``a(h) * sigmoid(b(h))`` of widths ``hidden`` (RecTable: 1024-2048-1024-1024); then a linear
head back to the input width, started at zero so a fresh network predicts v = 0.

The default widths are RecTable's (a GPU budget of 30,000 steps). The blocks have no residual
path, so depth learns slowly on a few hundred CPU steps: there ``hidden=(128, 128)`` with lr
3e-3 learns the tables' column pairs faster (benchmarks/notes/tabular.md, "GLU-MLP sizes").
``residual=True`` (not RecTable's) gives the blocks a pre-norm residual path instead
(:class:`ResidualGLUBlock`); on Adult it did not beat the plain blocks, so it is off by default.
"""

from __future__ import annotations

from typing import Mapping, Sequence

import torch
from torch import nn

from flowcore.errors import DataError
from flowcore.modality import Tokens
from flowcore.nn.embeddings import timestep_frequencies

RECTABLE_HIDDEN = (1024, 2048, 1024, 1024)


class GLUBlock(nn.Module):
    """h [B, d_in] -> a(h) * sigmoid(b(h)) [B, d_out]."""

    def __init__(self, d_in: int, d_out: int, dropout: float = 0.0):
        super().__init__()
        self.a = nn.Linear(d_in, d_out)
        self.b = nn.Linear(d_in, d_out)
        self.dropout = nn.Dropout(dropout)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        return self.dropout(self.a(h) * torch.sigmoid(self.b(h)))


class ResidualGLUBlock(nn.Module):
    """h [B, d] -> h + out(GLU(LayerNorm(h))) [B, d], GLU width ``inner``; ``out`` starts at zero.

    Not RecTable's: a plain GLU block shrinks a unit-variance signal (about 0.3x per block at
    PyTorch's initialisation), so a stack of them starts near zero and learns slowly; this
    pre-norm residual form starts as the identity and keeps the signal's scale at any depth.
    """

    def __init__(self, d: int, inner: int, dropout: float = 0.0):
        super().__init__()
        self.norm = nn.LayerNorm(d)
        self.glu = GLUBlock(d, inner, dropout)
        self.out = nn.Linear(inner, d)
        nn.init.zeros_(self.out.weight)
        nn.init.zeros_(self.out.bias)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        return h + self.out(self.glu(self.norm(h)))


class RecTableMLP(nn.Module):
    """GLU MLP over the concatenated, flattened token values of fixed-length modalities.

    shapes    {modality: (L, C)}: the token count and channels of each modality it sees
    hidden    the GLU blocks' widths
    residual  False: RecTable's plain stack of GLU blocks. True (a departure from RecTable):
              a residual stream of width ``time_dim``, each block ``h + out(GLU(LayerNorm(h)))``
              with GLU width ``hidden[i]`` (:class:`ResidualGLUBlock`), then a LayerNorm before
              the head
    """

    def __init__(self, shapes: Mapping[str, tuple[int, int]], hidden: Sequence[int] = RECTABLE_HIDDEN,
                 time_dim: int = 128, dropout: float = 0.0, residual: bool = False):
        super().__init__()
        if not shapes or not hidden:
            raise DataError("RecTableMLP needs at least one modality shape and one hidden width")
        self.shapes = {k: (int(l), int(c)) for k, (l, c) in shapes.items()}
        self.time_dim = time_dim
        width = sum(l * c for l, c in self.shapes.values())
        self.proj = nn.Linear(width, time_dim)
        self.time = nn.Sequential(nn.Linear(time_dim * len(self.shapes), time_dim), nn.SiLU(),
                                  nn.Linear(time_dim, time_dim))
        self.residual = residual
        if residual:
            self.blocks = nn.ModuleList(ResidualGLUBlock(time_dim, w, dropout) for w in hidden)
            self.norm: nn.Module = nn.LayerNorm(time_dim)
            out_dim = time_dim
        else:
            dims = [time_dim, *hidden]
            self.blocks = nn.ModuleList(GLUBlock(a, b, dropout) for a, b in zip(dims[:-1], dims[1:]))
            self.norm = nn.Identity()
            out_dim = dims[-1]
        self.head = nn.Linear(out_dim, width)
        nn.init.zeros_(self.head.weight)
        nn.init.zeros_(self.head.bias)

    def velocity(self, x: torch.Tensor, t: torch.Tensor | Sequence[torch.Tensor]) -> torch.Tensor:
        """x [B, D] and t [B] (or one t [B] per modality) -> v [B, D]."""
        ts = [t] if isinstance(t, torch.Tensor) else list(t)
        temb = self.time(torch.cat([timestep_frequencies(ti, self.time_dim) for ti in ts], -1).to(x.dtype))
        h = self.proj(x) + temb
        for block in self.blocks:
            h = block(h)
        return self.head(self.norm(h))

    def forward(self, tokens: Mapping[str, Tokens], t: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        parts = []
        for name, (length, channels) in self.shapes.items():
            v = tokens[name].values
            if tuple(v.shape[1:]) != (length, channels):
                raise DataError(f"RecTableMLP: {name} tokens are {tuple(v.shape[1:])}, the network was built for "
                                f"({length}, {channels})")
            parts.append(v.reshape(v.shape[0], -1))
        flat = self.velocity(torch.cat(parts, -1), [t[n] for n in self.shapes])
        out, start = {}, 0
        for name, (length, channels) in self.shapes.items():
            out[name] = flat[:, start:start + length * channels].reshape(-1, length, channels)
            start += length * channels
        return out


class ColumnTransformer(nn.Module):
    """The core FlowTransformer on column tokens, with a learned embedding per column.

    shapes  {modality: (L, C)}: L column tokens of C channels each (tokenizer ``column``)
    column_ids  True: each token gets L more input channels, a one-hot of its column index, so
            the input projection adds a learned vector per column (FT-Transformer's feature
            embedding). Without it a token knows its column only through which channels its
            values occupy (a one-channel numeric near 0 looks like any other) and, relatively,
            through rotary positions
    rope    rotary positions on the column index. A table's column order means nothing, and
            with ``column_ids`` the token already knows its column, so it is off by default
            (it also costs a quarter of a step on the CPU)
    own_channels  True: the velocity is 0 wherever the state is exactly 0. A column token's
            channels that belong to other columns are 0 in data and prior alike (the path's
            ZERO kind), so their velocity must be 0; a shared linear head of width ``hidden_size``
            cannot give 0 on every foreign channel of every column at once when the table has
            more channels than that (Adult: 125), so without this the loss there competes with the
            token's own channels. Owned channels are never exactly 0 for t > 0 (continuous noise);
            a flag channel at 0 has target velocity 0 anyway
    the rest: FlowTransformerConfig's keys (hidden_size, num_heads, depth_single, ...)

    The velocity head predicts C channels per token, as ``model.network: transformer`` does.
    """

    def __init__(self, shapes: Mapping[str, tuple[int, int]], column_ids: bool = True, rope: bool = False,
                 own_channels: bool = True, **transformer: object):
        super().__init__()
        from flowcore.nn import FlowTransformer, FlowTransformerConfig

        if not shapes:
            raise DataError("ColumnTransformer needs at least one modality shape")
        self.shapes = {k: (int(l), int(c)) for k, (l, c) in shapes.items()}
        self.column_ids, self.own_channels = column_ids, own_channels
        streams = {name: {"in_channels": c + (l if column_ids else 0), "out_channels": c, "position_axes": 1,
                          **({} if rope else {"rope_axes_dim": []})}
                   for name, (l, c) in self.shapes.items()}
        config = FlowTransformerConfig.from_dict({**transformer, "streams": streams},
                                                 where="model.options (ColumnTransformer)")
        self.transformer = FlowTransformer(config)
        # the one-hot column ids [L, L] of each modality, built once; not saved (checkpoints unchanged)
        self._ids = {}
        for i, (name, (length, _)) in enumerate(self.shapes.items()):
            if column_ids:
                self._ids[name] = f"column_ids_{i}"
                self.register_buffer(self._ids[name], torch.eye(length), persistent=False)

    def forward(self, tokens: Mapping[str, Tokens], t: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        inputs = {}
        for name, (length, channels) in self.shapes.items():
            tok = tokens[name]
            if tuple(tok.values.shape[1:]) != (length, channels):
                raise DataError(f"ColumnTransformer: {name} tokens are {tuple(tok.values.shape[1:])}, the network "
                                f"was built for ({length}, {channels})")
            if self.column_ids:
                ids = getattr(self, self._ids[name]).to(tok.values.dtype)
                tok = tok.with_values(torch.cat([tok.values, ids.expand(tok.values.shape[0], -1, -1)], -1))
            inputs[name] = tok
        out = self.transformer(inputs, dict(t))
        if self.own_channels:
            out = {name: v * (tokens[name].values != 0).to(v.dtype) for name, v in out.items()}
        return out
