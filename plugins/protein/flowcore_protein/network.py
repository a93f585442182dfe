"""FrameNet: a small velocity network that sees each residue's neighbourhood in its own frame.

A plain transformer on (quaternion, CA) tokens has to learn from data that a backbone looks
the same however it is turned. FrameNet builds that in, the way IPA does for FrameFlow and
ReQFlow, at a fraction of the cost:

* inputs are invariant: for residue i, the CA of residues i +- 1..K expressed in i's frame
  (R_i^T (x_j - x_i)), their rotations relative to i's (q_i^-1 q_j), and the chain centre in
  i's frame;
* attention adds two invariant biases per head: a learned bias per sequence offset j - i
  (clipped) and -w_h |x_i - x_j|^2 (each head its own radius), and returns, beside the usual
  values, the attention-weighted CA offsets R_i^T (x_j - x_i) (IPA's point output, CA only);
* the head predicts, per residue, a translation u and an angular rate w in the residue's own
  frame; the velocity is R_i u for the CA and q_i (0, w) (a tangent vector at q_i) for the
  quaternion. Turning the input turns the output the same way (tested).

    net({"protein": Tokens(values [B, L, 7], positions [B, L, 1], mask [B, L])}, {"protein": t [B]})
      -> {"protein": v [B, L, 7]}, zero at padded residues

Select it in a config with ``model.network: flowcore_protein.network:FrameNet`` and its
options under ``model.options`` (docs/plugins/protein.md).
"""

from __future__ import annotations

import math
from typing import Mapping

import torch
import torch.nn.functional as F
from torch import nn

from flowcore.errors import ConfigError, DataError
from flowcore.flow import so3
from flowcore.modality import Tokens
from flowcore.train.networks import timestep_embedding

#: consecutive CA-CA distance (Angstrom): local geometry is measured in this unit
CA_CA = 3.8


def local_vectors(rotation: torch.Tensor, vectors: torch.Tensor) -> torch.Tensor:
    """Lab-frame vectors [B, L, ..., 3] -> the same vectors in each residue's frame (R_i^T v).

    rotation [B, L, 3, 3] (columns = the frame's axes in the lab).
    """
    extra = vectors.dim() - rotation.dim() + 1
    r = rotation.reshape(*rotation.shape[:2], *([1] * extra), 3, 3)
    return (r.transpose(-1, -2) @ vectors.unsqueeze(-1)).squeeze(-1)


class NeighbourFeatures(nn.Module):
    """Invariant per-residue features [B, L, F] from frames (q [B, L, 4], CA x [B, L, 3] in A / 3.8)."""

    def __init__(self, neighbours: int):
        super().__init__()
        self.offsets = [k for k in range(-neighbours, neighbours + 1) if k]
        #: per offset: CA in frame (3), relative quaternion (4), present (1); then centre (3), log length (1)
        self.dim = 8 * len(self.offsets) + 4

    def forward(self, q: torch.Tensor, x: torch.Tensor, rotation: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        b, length = mask.shape
        index = torch.arange(length, device=mask.device)
        feats = []
        for k in self.offsets:
            j = (index + k).clamp(0, length - 1)
            present = ((index + k >= 0) & (index + k < length))[None, :] & mask & mask[:, j]
            p = present.unsqueeze(-1).to(x.dtype)
            rel = local_vectors(rotation, x[:, j] - x)
            rot = so3.canonical(so3.multiply(so3.conjugate(q), q[:, j]))
            feats += [rel * p, rot * p, p]
        real = mask.unsqueeze(-1).to(x.dtype)
        count = real.sum(1, keepdim=True).clamp_min(1.0)
        centre = (x * real).sum(1, keepdim=True) / count
        # the centre is ~Rg away (tens of A): in 10 A units it stays O(1) for any chain here
        feats += [local_vectors(rotation, centre - x) * (CA_CA / 10.0), torch.log(count).expand(b, length, 1) / 5]
        return torch.cat(feats, -1)


class Modulation(nn.Module):
    """adaLN-Zero: conditioning c [B, D] -> n (shift, scale, gate) triples [B, 1, D], zero at init."""

    def __init__(self, hidden: int, n: int):
        super().__init__()
        self.lin = nn.Linear(hidden, 3 * n * hidden)
        nn.init.zeros_(self.lin.weight)
        nn.init.zeros_(self.lin.bias)

    def forward(self, c: torch.Tensor) -> list[torch.Tensor]:
        return list(self.lin(F.silu(c)).unsqueeze(1).chunk(self.lin.out_features // c.shape[-1], -1))


class GeometricAttention(nn.Module):
    """Self-attention with sequence-offset and distance biases and an invariant point output.

    h [B, L, D], x [B, L, 3] (CA, A / 3.8), rotation [B, L, 3, 3], d2 [B, L, L] squared CA
    distances, key_bias [B, 1, 1, L] (0 at real residues, -inf at padding) -> [B, L, D].
    """

    def __init__(self, hidden: int, heads: int, max_offset: int):
        super().__init__()
        if hidden % heads:
            raise ConfigError(f"FrameNet: hidden {hidden} must be a multiple of heads {heads}")
        self.heads, self.head_dim, self.max_offset = heads, hidden // heads, max_offset
        self.qkv = nn.Linear(hidden, 3 * hidden)
        self.offset_bias = nn.Parameter(torch.zeros(heads, 2 * max_offset + 1))
        # softplus^-1 of weights spread over 0.02..2 per (3.8 A)^2: radii from ~30 A to ~3 A
        weights = torch.logspace(math.log10(0.02), math.log10(2.0), heads)
        self.distance_weight = nn.Parameter(torch.log(torch.expm1(weights)))
        self.out = nn.Linear(hidden + 4 * heads, hidden)

    def forward(self, h, x, rotation, d2, key_bias):
        b, length, _ = h.shape
        q, k, v = self.qkv(h).reshape(b, length, 3, self.heads, self.head_dim).permute(2, 0, 3, 1, 4)
        offsets = torch.arange(length, device=h.device)
        rel = (offsets[None, :] - offsets[:, None]).clamp(-self.max_offset, self.max_offset) + self.max_offset
        bias = self.offset_bias[:, rel] - F.softplus(self.distance_weight)[:, None, None] * d2.unsqueeze(1)
        # the CA coordinates ride along as 3 extra value channels: the same weights give sum_j a_ij x_j
        v = torch.cat([v, x.unsqueeze(1).expand(b, self.heads, length, 3)], -1)
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=bias + key_bias)  # [B, H, L, dh + 3]
        values = out[..., :self.head_dim].transpose(1, 2).reshape(b, length, -1)
        # sum_j a_ij (x_j - x_i) = (A x)_i - x_i, expressed in residue i's frame
        points = local_vectors(rotation, (out[..., self.head_dim:] - x.unsqueeze(1)).transpose(1, 2))  # [B, L, H, 3]
        norms = points.norm(dim=-1, keepdim=True)
        return self.out(torch.cat([values, torch.cat([points, norms], -1).flatten(2)], -1))


class Block(nn.Module):
    """Pre-norm geometric attention and MLP, each gated and modulated by the time (adaLN-Zero)."""

    def __init__(self, hidden: int, heads: int, mlp_ratio: float, max_offset: int):
        super().__init__()
        self.norm1 = nn.LayerNorm(hidden, elementwise_affine=False)
        self.attn = GeometricAttention(hidden, heads, max_offset)
        self.norm2 = nn.LayerNorm(hidden, elementwise_affine=False)
        width = int(hidden * mlp_ratio)
        self.mlp = nn.Sequential(nn.Linear(hidden, width), nn.GELU(approximate="tanh"), nn.Linear(width, hidden))
        self.modulation = Modulation(hidden, 2)

    def forward(self, h, c, x, rotation, d2, key_bias):
        shift1, scale1, gate1, shift2, scale2, gate2 = self.modulation(c)
        h = h + gate1 * self.attn(self.norm1(h) * (1 + scale1) + shift1, x, rotation, d2, key_bias)
        return h + gate2 * self.mlp(self.norm2(h) * (1 + scale2) + shift2)


class FrameNet(nn.Module):
    """The protein velocity network (module docstring). Options (``model.options``):

    translation_scale  Angstrom per token unit; must equal ``modalities.protein.translation_scale``
    hidden, depth, heads, mlp_ratio  the transformer's width, blocks, heads and MLP width factor
    neighbours         K: residues i +- 1..K enter residue i's input features
    max_offset         sequence offsets |j - i| beyond this share one attention bias
    modality           the name of the protein modality in the config
    """

    def __init__(self, shapes: Mapping[str, tuple[int, int]], translation_scale: float = 10.0, hidden: int = 128,
                 depth: int = 4, heads: int = 4, mlp_ratio: float = 2.0, neighbours: int = 3, max_offset: int = 32,
                 time_dim: int = 64, modality: str = "protein"):
        super().__init__()
        if set(shapes) != {modality} or shapes[modality][1] != 7:
            raise ConfigError(f"FrameNet generates one protein modality {modality!r} of 7-channel frames; the "
                              f"config has {dict(shapes)} (set model.options.modality to its name)")
        self.modality, self.scale, self.time_dim = modality, float(translation_scale) / CA_CA, time_dim
        self.features = NeighbourFeatures(neighbours)
        self.embed = nn.Linear(self.features.dim, hidden)
        self.time = nn.Sequential(nn.Linear(time_dim, hidden), nn.SiLU(), nn.Linear(hidden, hidden))
        self.blocks = nn.ModuleList(Block(hidden, heads, mlp_ratio, max_offset) for _ in range(depth))
        self.final_norm = nn.LayerNorm(hidden, elementwise_affine=False)
        self.final_modulation = Modulation(hidden, 1)
        self.head = nn.Linear(hidden, 6)
        nn.init.zeros_(self.head.weight)
        nn.init.zeros_(self.head.bias)

    def forward(self, tokens: Mapping[str, Tokens], t: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        if set(tokens) != {self.modality}:
            raise DataError(f"FrameNet takes tokens of {self.modality!r} only, got {sorted(tokens)}")
        tok = tokens[self.modality]
        mask = tok.mask
        q = so3.canonical(tok.values[..., :4])
        x = tok.values[..., 4:] * self.scale  # CA in units of the CA-CA bond
        rotation = so3.to_matrix(q)
        h = self.embed(self.features(q, x, rotation, mask))
        c = self.time(timestep_embedding(t[self.modality], self.time_dim).to(h.dtype))
        d2 = torch.cdist(x, x) ** 2
        # a chain with no real residue would softmax over nothing: let it attend freely (zeroed below)
        key_mask = (mask | ~mask.any(1, keepdim=True))[:, None, None, :]
        key_bias = torch.zeros(key_mask.shape, dtype=h.dtype, device=h.device).masked_fill(~key_mask, float("-inf"))
        for block in self.blocks:
            h = block(h, c, x, rotation, d2, key_bias)
        shift, scale, _ = self.final_modulation(c)
        out = self.head(self.final_norm(h) * (1 + scale) + shift)
        u, w = out[..., :3], out[..., 3:]
        v_translation = (rotation @ u.unsqueeze(-1)).squeeze(-1)
        v_rotation = so3.multiply(q, F.pad(w, (1, 0)))
        v = torch.cat([v_rotation, v_translation], -1) * mask.unsqueeze(-1).to(out.dtype)
        return {self.modality: v}
