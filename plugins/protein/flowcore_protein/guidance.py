"""Steric and bond guidance for sampling: a potential on the clean CA estimate, added to the velocity.

Opt-in (``model.options.guidance``; docs/plugins/protein.md), sampling only. In the last part
of the run (t < ``t_max``) the sampler follows

    v_CA <- v_CA + grad E(x0_hat) / translation_scale,    x0_hat = x_t - t v_CA   (A)

with the potential E (A^2) over the real residues of each chain

    E = clash / 2 * sum_{|i - j| > 2} max(0, clash_distance - |x0_i - x0_j|)^2
      + bond / 2 * sum_i (|x0_{i+1} - x0_i| - 3.8)^2

Time runs from 1 to 0, so a step dt < 0 moves the CA by -|dt| grad E: down the potential,
pulling clashing pairs apart and bonds towards 3.8 A, while the network still moves the rest.
This is the idea of Chroma's conditioners and RFdiffusion's guiding potentials, not their code.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping

import torch

from flowcore.errors import ConfigError
from flowcore_protein.geometry import CA_CA, nonlocal_pairs


@dataclass(frozen=True)
class BackboneGuidance:
    """Weights of the guidance potential (module docstring); 0 turns a term off.

    clash           weight of the clash hinge (1 / A^2 per unit of velocity)
    bond            weight of the consecutive CA-CA term
    t_max           guidance acts while t < t_max (near the data)
    clash_distance  the hinge's distance (A)
    """

    clash: float = 0.0
    bond: float = 0.0
    t_max: float = 0.3
    clash_distance: float = 3.8

    @classmethod
    def from_options(cls, options: Mapping[str, Any] | None, where: str) -> BackboneGuidance | None:
        """None when options is empty or both weights are 0 (then sampling is exactly unguided)."""
        if not options:
            return None
        unknown = sorted(set(options) - {"clash", "bond", "t_max", "clash_distance"})
        if unknown:
            raise ConfigError(f"{where}: unknown guidance key(s) {unknown}; known: clash, bond, t_max, clash_distance")
        guidance = cls(**{k: float(v) for k, v in options.items()})
        if min(guidance.clash, guidance.bond) < 0 or not 0 < guidance.t_max <= 1 or guidance.clash_distance <= 0:
            raise ConfigError(f"{where}: guidance needs clash, bond >= 0, 0 < t_max <= 1 and clash_distance > 0, "
                              f"got {guidance}")
        return guidance if guidance.clash or guidance.bond else None

    def energy(self, ca: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """E per chain [B] (A^2) of CA [B, L, 3] (A) over the real residues mask [B, L]."""
        real = mask.to(ca.dtype)
        energy = ca.new_zeros(ca.shape[0])
        if self.clash:
            dist, pairs = nonlocal_pairs(ca, mask)
            hinge = (self.clash_distance - dist).clamp_min(0) ** 2
            energy = energy + self.clash / 4 * (hinge * pairs).sum((1, 2))  # each pair counted twice
        if self.bond:
            bond = (ca[:, 1:] - ca[:, :-1]).norm(dim=-1) - CA_CA
            both = real[:, 1:] * real[:, :-1]
            energy = energy + self.bond / 2 * (bond ** 2 * both).sum(1)
        return energy

    def gradient(self, ca: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """dE / d CA [B, L, 3] (A), zero at padding."""
        with torch.enable_grad():
            leaf = ca.detach().double().requires_grad_(True)
            (grad,) = torch.autograd.grad(self.energy(leaf, mask).sum(), leaf)
        return grad.to(ca.dtype) * mask.unsqueeze(-1).to(ca.dtype)

    def velocity(self, x_t: torch.Tensor, v: torch.Tensor, t: torch.Tensor, mask: torch.Tensor,
                 translation_scale: float) -> torch.Tensor:
        """The guided CA velocity [B, L, 3] (token units) from state x_t and velocity v [B, L, 3], t [B]."""
        near = (t < self.t_max).to(v.dtype)[:, None, None]
        estimate = (x_t - t[:, None, None].to(v.dtype) * v) * translation_scale
        return v + near * self.gradient(estimate, mask) / translation_scale
