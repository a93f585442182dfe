"""Metric helpers plugins share.

- ``frechet_distance``: ||mu_a - mu_b||^2 + tr(S_a + S_b - 2 (S_a^1/2 S_b S_a^1/2)^1/2) between
  Gaussians fitted to two feature sets (float64; the matrix square roots by eigendecomposition,
  negative eigenvalues from round-off clamped to 0). On a metric classifier's features this is
  FID (images) or FAD (audio) with a network trained here in place of Inception or VGGish.
"""

from __future__ import annotations

import torch

from flowcore.errors import DataError


def _sqrt_psd(m: torch.Tensor) -> torch.Tensor:
    """The square root of a symmetric positive semi-definite ``m [F, F]``."""
    vals, vecs = torch.linalg.eigh(m)
    return (vecs * vals.clamp_min(0).sqrt()) @ vecs.T


def frechet_distance(a: torch.Tensor, b: torch.Tensor) -> float:
    """Fréchet distance between Gaussians fitted to features ``a [N, F]`` and ``b [M, F]`` (float64)."""
    a, b = a.double(), b.double()
    if a.shape[0] < 2 or b.shape[0] < 2:
        raise DataError("Fréchet distance needs at least two samples on each side")
    mu_a, mu_b = a.mean(0), b.mean(0)
    s_a, s_b = torch.cov(a.T).reshape(a.shape[1], -1), torch.cov(b.T).reshape(b.shape[1], -1)
    root_a = _sqrt_psd(s_a)
    middle = root_a @ s_b @ root_a
    cross = torch.linalg.eigvalsh((middle + middle.T) / 2).clamp_min(0).sqrt().sum()
    distance = float((mu_a - mu_b).pow(2).sum() + s_a.trace() + s_b.trace() - 2 * cross)
    return max(0.0, distance)  # >= 0 in exact arithmetic; rounding may leave -1e-12 for equal sets
