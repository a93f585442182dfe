"""The backbone's building blocks, one idea per class (after Flux ``modules/layers.py``).

Shapes: x [B, L, D] tokens, c [B, D] a stream's conditioning after SiLU, q/k/v [B, H, L, Dh].
All fused elementwise work goes through :mod:`flowcore.kernels`.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from flowcore import kernels
from flowcore.nn.config import FlowTransformerConfig

#: LayerNorm / RMSNorm epsilon of SD3 and Flux
NORM_EPS = 1e-6

Rope = tuple[torch.Tensor, torch.Tensor]


class Modulation(nn.Module):
    """adaLN(-Zero): c [B, D] -> ``n`` vectors [B, 1, D] (shift, scale, gate, ...). Zero-initialised."""

    def __init__(self, hidden_size: int, n: int):
        super().__init__()
        self.n = n
        self.lin = nn.Linear(hidden_size, n * hidden_size)

    def forward(self, c: torch.Tensor) -> tuple[torch.Tensor, ...]:
        return self.lin(c)[:, None, :].chunk(self.n, dim=-1)


class QKNorm(nn.Module):
    """RMSNorm with a learned scale over each head's queries and keys, both in one call.

    qk [B, L, 2, H, Dh] (queries at index 0 of dim 2, keys at 1) -> the same shape.
    """

    def __init__(self, head_dim: int):
        super().__init__()
        self.query_scale = nn.Parameter(torch.ones(head_dim))
        self.key_scale = nn.Parameter(torch.ones(head_dim))

    def forward(self, qk: torch.Tensor) -> torch.Tensor:
        # one norm over q and k with the scales stacked [2, 1, Dh]: half the kernel calls
        # and one weight-gradient reduction instead of two
        scale = torch.stack([self.query_scale, self.key_scale])[:, None]
        return kernels.rms_norm(qk, scale, NORM_EPS)


class MLP(nn.Module):
    """Linear -> GELU(tanh) -> Linear, the feed-forward of SD3 and Flux."""

    def __init__(self, hidden_size: int, mlp_hidden: int):
        super().__init__()
        self.fc1 = nn.Linear(hidden_size, mlp_hidden)
        self.fc2 = nn.Linear(mlp_hidden, hidden_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(F.gelu(self.fc1(x), approximate="tanh"))


def split_heads(qkv: torch.Tensor, num_heads: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Fused projections [B, L, 3D] -> qk [B, L, 2, H, Dh], v [B, L, 1, H, Dh] (views, no copy).

    q and k stay together so QK norm is one call; one split (whose backward is one
    concatenation) instead of three selects (each a zero-filled buffer in backward).
    """
    return qkv.unflatten(-1, (3, num_heads, -1)).split([2, 1], dim=2)


def attention(qk: torch.Tensor, v: torch.Tensor, rope: Rope | None, mask: torch.Tensor | None) -> torch.Tensor:
    """One SDPA call over the joint sequence: qk [B, L, 2, H, Dh], v [B, L, 1, H, Dh] -> [B, L, H*Dh].

    q, k, v reach SDPA as [B, H, L, Dh] views of the token-major tensors (no copy); the flash
    kernels return token-major memory, so the output's flatten is then a view too.
    rope: cos, sin [B, L, Dh/2] or None; mask: [B, 1, 1, L] bool (True = attend) or None.
    """
    q, k = qk.permute(2, 0, 3, 1, 4).unbind(0)
    v = v.squeeze(2).transpose(1, 2)
    if rope is not None:
        q, k = kernels.apply_rope(q, *rope), kernels.apply_rope(k, *rope)
    out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
    return out.transpose(1, 2).flatten(2)


def joint(parts: list[torch.Tensor]) -> torch.Tensor:
    """Concatenate the streams' tokens along L (dim 1); a single stream passes through uncopied."""
    return parts[0] if len(parts) == 1 else torch.cat(parts, 1)


class StreamBranch(nn.Module):
    """One stream's own weights inside a double-stream block.

    ``pre_only``: the stream only supplies keys and values (a condition-only stream in the
    last block before the heads, SD3's ``context_pre_only``); then modulation gives just
    (shift, scale) and there is no output projection or MLP.
    """

    def __init__(self, cfg: FlowTransformerConfig, pre_only: bool = False):
        super().__init__()
        d = cfg.hidden_size
        self.pre_only = pre_only
        self.modulation = Modulation(d, 2 if pre_only else 6)
        self.qkv = nn.Linear(d, 3 * d)
        self.qk_norm = QKNorm(cfg.head_dim) if cfg.qk_norm else None
        if not pre_only:
            self.proj = nn.Linear(d, d)
            self.mlp = MLP(d, cfg.mlp_hidden)

    def qkv_heads(self, x: torch.Tensor, shift: torch.Tensor, scale: torch.Tensor, num_heads: int):
        """x [B, L, D] -> qk [B, L, 2, H, Dh] (QK-normed), v [B, L, 1, H, Dh]."""
        qk, v = split_heads(self.qkv(kernels.modulated_layer_norm(x, shift, scale, NORM_EPS)), num_heads)
        if self.qk_norm is not None:
            qk = self.qk_norm(qk)
        return qk, v


class DoubleStreamBlock(nn.Module):
    """MMDiT block: per-stream weights, one joint attention over the concatenated streams."""

    def __init__(self, cfg: FlowTransformerConfig, pre_only: frozenset[str] = frozenset()):
        super().__init__()
        self.num_heads = cfg.num_heads
        self.branches = nn.ModuleDict({name: StreamBranch(cfg, name in pre_only) for name in cfg.streams})

    def forward(self, xs: dict[str, torch.Tensor], cs: dict[str, torch.Tensor], rope: Rope | None,
                mask: torch.Tensor | None) -> dict[str, torch.Tensor]:
        """xs: present streams in config order {name: [B, L_n, D]} -> the same (minus pre-only ones)."""
        mods, heads = {}, []
        for name, x in xs.items():
            branch = self.branches[name]
            mods[name] = branch.modulation(cs[name])
            heads.append(branch.qkv_heads(x, mods[name][0], mods[name][1], self.num_heads))
        qk, v = (joint(list(parts)) for parts in zip(*heads))
        attended = attention(qk, v, rope, mask)
        out = {}
        for (name, x), a in zip(xs.items(), attended.split([x.shape[1] for x in xs.values()], 1)):
            branch = self.branches[name]
            if branch.pre_only:
                continue
            _, _, gate, shift_mlp, scale_mlp, gate_mlp = mods[name]
            x = kernels.gated_residual(x, branch.proj(a), gate)
            h = kernels.modulated_layer_norm(x, shift_mlp, scale_mlp, NORM_EPS)
            out[name] = kernels.gated_residual(x, branch.mlp(h), gate_mlp)
        return out


class SingleStreamBlock(nn.Module):
    """Flux block: shared weights; attention and MLP in parallel from one input projection,
    fused again by one output projection. Modulation still comes from each token's stream."""

    def __init__(self, cfg: FlowTransformerConfig):
        super().__init__()
        d = cfg.hidden_size
        self.num_heads = cfg.num_heads
        self.hidden_size = d
        self.modulation = Modulation(d, 3)
        self.linear1 = nn.Linear(d, 3 * d + cfg.mlp_hidden)
        self.linear2 = nn.Linear(d + cfg.mlp_hidden, d)
        self.qk_norm = QKNorm(cfg.head_dim) if cfg.qk_norm else None

    def forward(self, x: torch.Tensor, cs: list[torch.Tensor], lengths: list[int], rope: Rope | None,
                mask: torch.Tensor | None) -> torch.Tensor:
        """x [B, L, D] joint sequence; cs[i] conditioning of the stream owning ``lengths[i]`` tokens."""
        shift, scale, gate = per_token(self.modulation, cs, lengths)
        qkv, mlp = self.linear1(kernels.modulated_layer_norm(x, shift, scale, NORM_EPS)).split(
            [3 * self.hidden_size, self.linear1.out_features - 3 * self.hidden_size], dim=-1
        )
        qk, v = split_heads(qkv, self.num_heads)
        if self.qk_norm is not None:
            qk = self.qk_norm(qk)
        a = attention(qk, v, rope, mask)
        return kernels.gated_residual(x, self.linear2(torch.cat([a, F.gelu(mlp, approximate="tanh")], -1)), gate)


def per_token(modulation: Modulation, cs: list[torch.Tensor], lengths: list[int]) -> tuple[torch.Tensor, ...]:
    """Modulation vectors [B, 1, D] for one stream, or [B, L, D] when streams differ along L."""
    mods = [modulation(c) for c in cs]
    if len(mods) == 1:
        return mods[0]
    return tuple(torch.cat([m.expand(-1, n, -1) for m, n in zip(parts, lengths)], 1) for parts in zip(*mods))


class OutputHead(nn.Module):
    """Final adaLN (shift, scale) and a zero-initialised linear to the stream's velocity channels."""

    def __init__(self, hidden_size: int, out_channels: int):
        super().__init__()
        self.modulation = Modulation(hidden_size, 2)
        self.linear = nn.Linear(hidden_size, out_channels)

    def forward(self, x: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        shift, scale = self.modulation(c)
        return self.linear(kernels.modulated_layer_norm(x, shift, scale, NORM_EPS))
