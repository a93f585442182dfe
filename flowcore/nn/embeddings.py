"""Embeddings: timesteps (sinusoid + MLP), conditioning vectors, rotary and sin-cos positions."""

from __future__ import annotations

import math
from typing import Sequence

import torch
from torch import nn

from flowcore.nn.config import SincosPosition


def timestep_frequencies(t: torch.Tensor, dim: int, max_period: float = 10000.0,
                         scale: float = 1000.0) -> torch.Tensor:
    """Sinusoidal features of ``scale * t`` for ``t [B]`` -> [B, 2 (dim // 2)], ``[cos, sin]``
    halves (Flux/DiT convention) at frequencies ``max_period^(-k / (dim // 2))``.

    ``scale`` 1000 stretches t in [0, 1] over the range SD3 and Flux feed their timesteps in; the
    fastest sinusoid then has a period of 0.006 in t, and a network's output can turn as fast.
    Scale 1 (SiT's t in [0, 1] as it is) keeps the fastest period at 2 pi: what an objective that
    differentiates the network in t needs (MeanFlow's du/dt, flowcore.flow.meanflow), since there
    the turns are multiplied by up to 1000 and swamp the target.
    """
    half = dim // 2
    freqs = torch.exp(-math.log(max_period) * torch.arange(half, dtype=torch.float32, device=t.device) / half)
    args = scale * t.float()[:, None] * freqs[None]
    return torch.cat([torch.cos(args), torch.sin(args)], dim=-1)


class MLPEmbedder(nn.Module):
    """Linear -> SiLU -> Linear: a vector [B, in_dim] -> conditioning [B, D]."""

    def __init__(self, in_dim: int, hidden_size: int):
        super().__init__()
        self.in_layer = nn.Linear(in_dim, hidden_size)
        self.out_layer = nn.Linear(hidden_size, hidden_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.out_layer(nn.functional.silu(self.in_layer(x)))


class TimestepEmbedder(nn.Module):
    """t [B] in [0, 1] -> [B, D] through sinusoids of ``scale t`` and an MLP."""

    def __init__(self, hidden_size: int, frequency_dim: int = 256, scale: float = 1000.0):
        super().__init__()
        self.frequency_dim, self.scale = frequency_dim, scale
        self.mlp = MLPEmbedder(frequency_dim, hidden_size)

    def forward(self, t: torch.Tensor) -> torch.Tensor:
        freq = timestep_frequencies(t, self.frequency_dim, scale=self.scale)
        return self.mlp(freq.to(self.mlp.in_layer.weight.dtype))


def rope_angles(positions: torch.Tensor, axes: list[tuple[int, int]], head_dim: int, theta: float,
                periods: Sequence[float | None] | None = None):
    """cos, sin [B, L, head_dim/2] of the rotation each interleaved pair of a head undergoes.

    positions [B, L, A]; ``axes[a] = (start, size)``: head dims ``start:start+size`` rotate
    with axis ``a`` at frequencies ``theta^(-2i/size)`` (Flux's EmbedND per axis). Pairs no
    axis claims get angle 0 (cos 1, sin 0), so other modalities' dims pass through untouched.
    ``periods[a] = P`` makes axis ``a`` circular: each frequency f becomes ``2 pi k / P`` with
    ``k = max(1, round(f P / 2 pi))`` whole turns per period, so positions p and p + P get the
    same rotation and attention sees relative positions modulo P.
    """
    b, length = positions.shape[:2]
    angles = torch.zeros(b, length, head_dim // 2, dtype=torch.float64, device=positions.device)
    for a, (start, size) in enumerate(axes):
        if size == 0:
            continue
        freqs = 1.0 / theta ** (torch.arange(0, size, 2, dtype=torch.float64, device=positions.device) / size)
        period = periods[a] if periods is not None else None
        if period is not None:
            freqs = (freqs * period / (2 * math.pi)).round().clamp(min=1) * (2 * math.pi / period)
        angles[..., start // 2 : (start + size) // 2] = positions[..., a, None].double() * freqs
    return angles.cos().float(), angles.sin().float()


def sincos_position_table(positions: torch.Tensor, mask: torch.Tensor, spec: SincosPosition, dim: int) -> torch.Tensor:
    """SD3's 2-D sin-cos embedding of (row, col) token positions [B, L, 2] -> [B, L, dim].

    The image is centred in the ``max_size`` grid (as SD3 crops its table): row r of an image
    h tokens high sits at grid row ``r + (max_size - h) // 2``. Grid coordinates are scaled by
    ``base_size / max_size / interpolation_scale``. Half the channels encode the column, half
    the row, each as ``[sin, cos]`` of the coordinate times ``10000^(-k/(dim/4))``.
    """
    pos = positions.double()
    real = mask[..., None]
    extent = torch.where(real, pos, torch.full_like(pos, -1)).amax(dim=1, keepdim=True) + 1  # [B, 1, 2]
    grid = (pos + torch.div(spec.max_size - extent, 2, rounding_mode="floor"))
    grid = grid * (spec.base_size / spec.max_size) / spec.interpolation_scale
    omega = 1.0 / 10000 ** (torch.arange(dim // 4, dtype=torch.float64, device=pos.device) / (dim / 4))

    def one_axis(x: torch.Tensor) -> torch.Tensor:
        out = x[..., None] * omega
        return torch.cat([out.sin(), out.cos()], dim=-1)

    return torch.cat([one_axis(grid[..., 1]), one_axis(grid[..., 0])], dim=-1).float()
