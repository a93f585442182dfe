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

Self-conditioning (``self_condition=True``, FrameFlow): the network also sees a clean CA
estimate x0_hat (the CA its own velocity points back to, x_t - t v): in training, for half the
batches, from a first pass without it (no gradient); in sampling, from the previous call of
the same generation (``SelfCondition``); zeros with a flag 0 otherwise. It enters as invariant
features (x0_hat of residues i +- 1..K and of i itself, relative to x0_hat_i / x_i, in residue
i's frame) and as one more distance bias per head on |x0_hat_i - x0_hat_j|^2.

Attention sink (``attention_sink=True``): softmax attention averages, so a head cannot say "the
two residues within 4 A of me, and nothing when there are none" -- the sum a steric repulsion
is. Each head gets one more key with zero value and zero point offset and a learned logit
(StreamingLLM's sink, Miller's "softmax + 1"): weight left on it is weight taken off the
residues, and a sharp distance head becomes a sum over the close residues. On-policy
distillation of the clash guidance needs exactly that (benchmarks/notes/protein.md).

Position updates (``position_updates=True``): every block reads the distances of the input CA,
so no block can ask "where do the residues end up, and do they collide there?". With this
option each block but the last also moves every CA by R_i u (u from the block's output,
zero-initialised, so a new network is the plain one) and the later blocks take their distance
biases and point offsets from the moved CA, as IPA's backbone update does for FrameFlow (CA
only; the rotations stay the input's).

Select it in a config with ``model.network: flowcore_protein.network:FrameNet`` and its
options under ``model.options`` (docs/plugins/protein.md).
"""

from __future__ import annotations

import math
import weakref
from contextlib import contextmanager
from typing import Mapping

import torch
import torch.nn.functional as F
from torch import nn

from flowcore.errors import ConfigError, DataError
from flowcore.flow import so3
from flowcore.modality import Tokens
from flowcore.nn.embeddings import timestep_frequencies
from flowcore_protein.geometry import CA_CA  # local geometry is measured in this unit
from flowcore_protein.guidance import BackboneGuidance


def local_vectors(rotation: torch.Tensor, vectors: torch.Tensor) -> torch.Tensor:
    """Lab-frame vectors [B, L, ..., 3] -> the same vectors in each residue's frame (R_i^T v).

    rotation [B, L, 3, 3] (columns = the frame's axes in the lab).
    """
    extra = vectors.dim() - rotation.dim() + 1
    r = rotation.reshape(*rotation.shape[:2], *([1] * extra), 3, 3)
    return (r.transpose(-1, -2) @ vectors.unsqueeze(-1)).squeeze(-1)


def lab_vectors(rotation: torch.Tensor, vectors: torch.Tensor) -> torch.Tensor:
    """Per-residue vectors [B, L, 3] in each residue's frame -> the lab frame (R_i u)."""
    return (rotation @ vectors.unsqueeze(-1)).squeeze(-1)


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


class SelfConditionFeatures(nn.Module):
    """Invariant features [B, L, F] of a clean CA estimate x0_hat [B, L, 3] (A / 3.8), seen from frames.

    Per offset k: R_i^T (x0_hat_{i+k} - x0_hat_i) and its presence; then R_i^T (x0_hat_i - x_i) and
    a flag, 1 where an estimate is given (the features of a missing one are all zero).
    """

    def __init__(self, neighbours: int):
        super().__init__()
        self.offsets = [k for k in range(-neighbours, neighbours + 1) if k]
        self.dim = 4 * len(self.offsets) + 4

    def forward(self, estimate: torch.Tensor, x: torch.Tensor, rotation: torch.Tensor, mask: torch.Tensor,
                given: torch.Tensor) -> torch.Tensor:
        b, length = mask.shape
        index = torch.arange(length, device=mask.device)
        on = (mask & given[:, None]).unsqueeze(-1).to(x.dtype)  # [B, L, 1]
        feats = []
        for k in self.offsets:
            j = (index + k).clamp(0, length - 1)
            present = ((index + k >= 0) & (index + k < length))[None, :] & mask & mask[:, j]
            p = present.unsqueeze(-1).to(x.dtype) * on
            feats += [local_vectors(rotation, estimate[:, j] - estimate) * p, p]
        feats += [local_vectors(rotation, estimate - x) * on, on]
        return torch.cat(feats, -1)


class SelfCondition:
    """The clean CA estimate of a network's previous call, offered to its next call in sampling.

    Kept per generation: an estimate is reused only by a call with the very same mask tensor
    (the sampler's layout, held by weak reference) at a time t no later than the one it was made
    at (solvers walk from t = 1 to 0); any other call (a new generation, a training batch)
    starts without one.
    """

    def __init__(self):
        self._mask: weakref.ref | None = None
        self._t: torch.Tensor | None = None
        self._estimate: torch.Tensor | None = None

    def get(self, mask: torch.Tensor, t: torch.Tensor) -> torch.Tensor | None:
        if self._mask is None or self._mask() is not mask or self._t.shape != t.shape or bool((t > self._t).any()):
            return None
        return self._estimate

    def put(self, mask: torch.Tensor, t: torch.Tensor, estimate: torch.Tensor) -> None:
        self._mask, self._t, self._estimate = weakref.ref(mask), t.detach().clone(), estimate.detach()


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

    def __init__(self, hidden: int, heads: int, max_offset: int, self_condition: bool = False,
                 sink: bool = False):
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
        #: per head, the weight of -|x0_hat_i - x0_hat_j|^2 (self-conditioning); zero: no effect at init
        self.estimate_weight = nn.Parameter(torch.zeros(heads)) if self_condition else None
        #: per head, the logit of a sink: a key with zero value and zero offset that every residue may
        #: attend to instead (module docstring, "attention sink"); None: plain softmax over residues
        self.sink = nn.Parameter(torch.zeros(heads)) if sink else None

    def forward(self, h, x, rotation, d2, key_bias, d2_estimate=None):
        b, length, _ = h.shape
        q, k, v = self.qkv(h).reshape(b, length, 3, self.heads, self.head_dim).permute(2, 0, 3, 1, 4)
        offsets = torch.arange(length, device=h.device)
        rel = (offsets[None, :] - offsets[:, None]).clamp(-self.max_offset, self.max_offset) + self.max_offset
        bias = self.offset_bias[:, rel] - F.softplus(self.distance_weight)[:, None, None] * d2.unsqueeze(1)
        if d2_estimate is not None:
            bias = bias - self.estimate_weight[:, None, None] * d2_estimate.unsqueeze(1)
        bias = bias + key_bias
        # the CA coordinates ride along as 3 extra value channels: the same weights give sum_j a_ij x_j
        v = torch.cat([v, x.unsqueeze(1).expand(b, self.heads, length, 3)], -1)
        if self.sink is not None:
            # one more key: zero query-key logit, zero value; a ones channel gives each residue's weight
            # on the real residues, s_i = 1 - a_i,sink, for the point offsets below
            v = torch.cat([v, torch.ones_like(v[..., :1])], -1)
            k = torch.cat([k, k.new_zeros(b, self.heads, 1, self.head_dim)], 2)
            v = torch.cat([v, v.new_zeros(b, self.heads, 1, v.shape[-1])], 2)
            sink = self.sink.to(bias.dtype)[None, :, None, None].expand(b, -1, length, 1)
            bias = torch.cat([bias, sink], -1)  # bias is [B, H, L, L] already
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=bias)  # [B, H, L, dh + 3 (+ 1)]
        values = out[..., :self.head_dim].transpose(1, 2).reshape(b, length, -1)
        weight = out[..., -1:] if self.sink is not None else 1.0
        # sum_j a_ij (x_j - x_i) = (A x)_i - s_i x_i (s_i = 1 without a sink), in residue i's frame
        points = out[..., self.head_dim:self.head_dim + 3] - weight * x.unsqueeze(1)
        points = local_vectors(rotation, points.transpose(1, 2))  # [B, L, H, 3]
        norms = points.norm(dim=-1, keepdim=True)
        return self.out(torch.cat([values, torch.cat([points, norms], -1).flatten(2)], -1))


class Block(nn.Module):
    """Pre-norm geometric attention and MLP, each gated and modulated by the time (adaLN-Zero)."""

    def __init__(self, hidden: int, heads: int, mlp_ratio: float, max_offset: int, self_condition: bool = False,
                 sink: bool = False):
        super().__init__()
        self.norm1 = nn.LayerNorm(hidden, elementwise_affine=False)
        self.attn = GeometricAttention(hidden, heads, max_offset, self_condition, sink)
        self.norm2 = nn.LayerNorm(hidden, elementwise_affine=False)
        width = int(hidden * mlp_ratio)
        self.mlp = nn.Sequential(nn.Linear(hidden, width), nn.GELU(approximate="tanh"), nn.Linear(width, hidden))
        self.modulation = Modulation(hidden, 2)

    def forward(self, h, c, x, rotation, d2, key_bias, d2_estimate=None):
        shift1, scale1, gate1, shift2, scale2, gate2 = self.modulation(c)
        h = h + gate1 * self.attn(self.norm1(h) * (1 + scale1) + shift1, x, rotation, d2, key_bias, d2_estimate)
        return h + gate2 * self.mlp(self.norm2(h) * (1 + scale2) + shift2)


class FrameNet(nn.Module):
    """The protein velocity network (module docstring). Options (``model.options``):

    translation_scale  Angstrom per token unit; must equal ``modalities.protein.translation_scale``
    hidden, depth, heads, mlp_ratio  the transformer's width, blocks, heads and MLP width factor
    neighbours         K: residues i +- 1..K enter residue i's input features
    max_offset         sequence offsets |j - i| beyond this share one attention bias
    modality           the name of the protein modality in the config
    self_condition     feed the network its own clean CA estimate (module docstring; FrameFlow)
    attention_sink     give every attention head a sink key (module docstring): a head can then sum over
                       the few residues close in space rather than average over all of them
    position_updates   after every block but the last, move each CA by R_i u (u from the block's output,
                       zero-initialised) and give the next blocks the distances of the moved CA
                       (module docstring)
    guidance           sampling only (eval mode): steric / bond guidance weights {clash, bond, t_max,
                       clash_distance} (``guidance.BackboneGuidance``); None or zero weights: off
    """

    def __init__(self, shapes: Mapping[str, tuple[int, int]], translation_scale: float = 10.0, hidden: int = 128,
                 depth: int = 4, heads: int = 4, mlp_ratio: float = 2.0, neighbours: int = 3, max_offset: int = 32,
                 time_dim: int = 64, modality: str = "protein", self_condition: bool = False,
                 attention_sink: bool = False, position_updates: bool = False,
                 guidance: Mapping[str, float] | None = None):
        super().__init__()
        if set(shapes) != {modality} or shapes[modality][1] != 7:
            raise ConfigError(f"FrameNet generates one protein modality {modality!r} of 7-channel frames; the "
                              f"config has {dict(shapes)} (set model.options.modality to its name)")
        self.modality, self.scale, self.time_dim = modality, float(translation_scale) / CA_CA, time_dim
        self.features = NeighbourFeatures(neighbours)
        self.self_condition = bool(self_condition)
        self.estimate_features = SelfConditionFeatures(neighbours) if self.self_condition else None
        self.embed = nn.Linear(self.features.dim + (self.estimate_features.dim if self.self_condition else 0), hidden)
        self.previous = SelfCondition()
        self.guidance = BackboneGuidance.from_options(guidance, "model.options.guidance")
        self.time = nn.Sequential(nn.Linear(time_dim, hidden), nn.SiLU(), nn.Linear(hidden, hidden))
        self.blocks = nn.ModuleList(Block(hidden, heads, mlp_ratio, max_offset, self_condition, attention_sink)
                                    for _ in range(depth))
        #: per block but the last: residue stream -> a CA move u [3] in the residue's frame, zero at init
        self.updates = nn.ModuleList(
            nn.Sequential(nn.LayerNorm(hidden, elementwise_affine=False), nn.Linear(hidden, 3))
            for _ in range(depth - 1)) if position_updates else None
        for update in self.updates or ():
            nn.init.zeros_(update[1].weight)
            nn.init.zeros_(update[1].bias)
        self.final_norm = nn.LayerNorm(hidden, elementwise_affine=False)
        self.final_modulation = Modulation(hidden, 1)
        self.head = nn.Linear(hidden, 6)
        nn.init.zeros_(self.head.weight)
        nn.init.zeros_(self.head.bias)

    def forward(self, tokens: Mapping[str, Tokens], t: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        if set(tokens) != {self.modality}:
            raise DataError(f"FrameNet takes tokens of {self.modality!r} only, got {sorted(tokens)}")
        tok, time = tokens[self.modality], t[self.modality]
        if self.training:
            estimate = None
            if self.self_condition and torch.rand(()) < 0.5:  # FrameFlow: half the batches learn to use one
                with torch.no_grad():
                    estimate = self.estimate(tok, time, self.velocity(tok, time))
            return {self.modality: self.velocity(tok, time, estimate)}
        if not self.self_condition:
            v = self.velocity(tok, time)
        else:
            v = self.velocity(tok, time, self.previous.get(tok.mask, time))
            self.previous.put(tok.mask, time, self.estimate(tok, time, v))
        if self.guidance is not None:
            ca = self.guidance.velocity(tok.values[..., 4:], v[..., 4:], time, tok.mask, self.scale * CA_CA)
            v = torch.cat([v[..., :4], ca], -1)
        return {self.modality: v}

    @contextmanager
    def unaided(self):
        """Within it, eval-mode calls give the network's own velocity, without guidance (the core's
        on-policy distillation rolls the network out alone: flowcore/train/distill.py)."""
        guidance, self.guidance = self.guidance, None
        try:
            yield self
        finally:
            self.guidance = guidance

    def estimate(self, tok: Tokens, t: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        """The clean CA [B, L, 3] (A / 3.8) that velocity v [B, L, 7] at tokens and time t [B] points back to."""
        return (tok.values[..., 4:] - t[:, None, None].to(v.dtype) * v[..., 4:]) * self.scale

    def velocity(self, tok: Tokens, t: torch.Tensor, estimate: torch.Tensor | None = None) -> torch.Tensor:
        """v [B, L, 7] at tokens and time t [B]; estimate: a clean CA [B, L, 3] (A / 3.8) or None."""
        mask = tok.mask
        q = so3.canonical(tok.values[..., :4])
        x = tok.values[..., 4:] * self.scale  # CA in units of the CA-CA bond
        rotation = so3.to_matrix(q)
        features = self.features(q, x, rotation, mask)
        d2_estimate = None
        if self.self_condition:
            given = torch.full((mask.shape[0],), estimate is not None, device=mask.device)
            estimate = torch.zeros_like(x) if estimate is None else estimate.to(x.dtype)
            features = torch.cat([features, self.estimate_features(estimate, x, rotation, mask, given)], -1)
            d2_estimate = torch.cdist(estimate, estimate) ** 2
        h = self.embed(features)
        c = self.time(timestep_frequencies(t, self.time_dim).to(h.dtype))
        d2 = torch.cdist(x, x) ** 2
        # a chain with no real residue would softmax over nothing: let it attend freely (zeroed below)
        key_mask = (mask | ~mask.any(1, keepdim=True))[:, None, None, :]
        key_bias = torch.zeros(key_mask.shape, dtype=h.dtype, device=h.device).masked_fill(~key_mask, float("-inf"))
        real = mask.unsqueeze(-1).to(x.dtype)
        for i, block in enumerate(self.blocks):
            h = block(h, c, x, rotation, d2, key_bias, d2_estimate)
            if self.updates is not None and i < len(self.updates):
                # the next blocks see a moved structure (IPA's backbone update, CA only): distances of
                # where the network thinks the CA are going, not only of where they are
                x = x + lab_vectors(rotation, self.updates[i](h)) * real
                d2 = torch.cdist(x, x) ** 2
        shift, scale, _ = self.final_modulation(c)
        out = self.head(self.final_norm(h) * (1 + scale) + shift)
        u, w = out[..., :3], out[..., 3:]
        v_translation = lab_vectors(rotation, u)
        v_rotation = so3.multiply(q, F.pad(w, (1, 0)))
        return torch.cat([v_rotation, v_translation], -1) * mask.unsqueeze(-1).to(out.dtype)
