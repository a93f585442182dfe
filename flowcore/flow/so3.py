"""Unit quaternions as rotations: products, exp/log maps, geodesics on S^3 and SO(3).

Quaternions are scalar-first, ``q = [w, x, y, z]`` in the last dim (``[..., 4]``). q and -q are
the same rotation; :func:`canonical` picks the one with w >= 0. Angles on S^3 (between two
quaternions as 4-vectors) are half the rotation angle between the rotations they stand for.
"""

from __future__ import annotations

import torch

# Below this angle the sinc-style ratios switch to their Taylor series (float32-safe).
_SMALL = 1e-4


def _sinc(a: torch.Tensor) -> torch.Tensor:
    """sin(a) / a, exact 1 at a = 0."""
    small = a.abs() < _SMALL
    safe = torch.where(small, torch.ones_like(a), a)
    return torch.where(small, 1 - a * a / 6, torch.sin(safe) / safe)


def normalize(q: torch.Tensor) -> torch.Tensor:
    """q / |q| over the last dim."""
    return q / q.norm(dim=-1, keepdim=True).clamp_min(1e-12)


def canonical(q: torch.Tensor) -> torch.Tensor:
    """Unit q with the sign that makes w >= 0 (one representative per rotation)."""
    q = normalize(q)
    return torch.where(q[..., :1] < 0, -q, q)


def multiply(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Hamilton product a * b, ``[..., 4]`` (rotation b first, then a)."""
    aw, ax, ay, az = a.unbind(-1)
    bw, bx, by, bz = b.unbind(-1)
    return torch.stack([
        aw * bw - ax * bx - ay * by - az * bz,
        aw * bx + ax * bw + ay * bz - az * by,
        aw * by - ax * bz + ay * bw + az * bx,
        aw * bz + ax * by - ay * bx + az * bw,
    ], -1)


def conjugate(q: torch.Tensor) -> torch.Tensor:
    """[w, -x, -y, -z]: the inverse rotation of a unit quaternion."""
    return q * q.new_tensor([1.0, -1.0, -1.0, -1.0])


def exp(rotvec: torch.Tensor) -> torch.Tensor:
    """Rotation vector (axis * angle) ``[..., 3]`` -> unit quaternion ``[..., 4]``."""
    half = rotvec.norm(dim=-1, keepdim=True) / 2
    return torch.cat([torch.cos(half), _sinc(half) * rotvec / 2], -1)


def log(q: torch.Tensor) -> torch.Tensor:
    """Unit quaternion ``[..., 4]`` -> rotation vector ``[..., 3]`` with angle in [0, pi]."""
    q = canonical(q)
    vec = q[..., 1:]
    half = torch.atan2(vec.norm(dim=-1, keepdim=True), q[..., :1])
    return 2 * vec / _sinc(half)


def to_matrix(q: torch.Tensor) -> torch.Tensor:
    """Unit quaternion ``[..., 4]`` -> rotation matrix ``[..., 3, 3]`` (acts on column vectors)."""
    w, x, y, z = normalize(q).unbind(-1)
    return torch.stack([
        1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y),
        2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x),
        2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y),
    ], -1).reshape(*q.shape[:-1], 3, 3)


def rotation_angle(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Geodesic distance on SO(3): the angle in [0, pi] of the rotation taking a to b, ``[...]``."""
    dot = (normalize(a) * normalize(b)).sum(-1).abs().clamp(max=1.0)
    return 2 * torch.acos(dot)


def align(q: torch.Tensor, ref: torch.Tensor) -> torch.Tensor:
    """The sign of q (as a 4-vector) nearest to ``ref``: the shortest SO(3) path between them."""
    return torch.where((q * ref).sum(-1, keepdim=True) < 0, -q, q)


def sphere_exp(q: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
    """Exponential map of S^3 at unit q for a tangent 4-vector w (w . q = 0): a great circle."""
    theta = w.norm(dim=-1, keepdim=True)
    return normalize(torch.cos(theta) * q + _sinc(theta) * w)


def sphere_log(q: torch.Tensor, p: torch.Tensor) -> torch.Tensor:
    """Tangent 4-vector at unit q pointing to unit p along the great circle, length = angle."""
    cos = (q * p).sum(-1, keepdim=True)
    perp = p - cos * q
    # atan2 keeps small angles accurate where acos(cos) would lose half the digits
    theta = torch.atan2(perp.norm(dim=-1, keepdim=True), cos)
    return perp / _sinc(theta)


def tangent(q: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """The part of 4-vector v tangent to S^3 at unit q."""
    return v - (v * q).sum(-1, keepdim=True) * q


def transport(v: torch.Tensor, src: torch.Tensor, dst: torch.Tensor) -> torch.Tensor:
    """Parallel transport of tangent v at unit src to unit dst along their great circle.

    v - <dst, v> / (1 + <src, dst>) (src + dst); needs src . dst > -1 (not antipodal).
    """
    coef = (dst * v).sum(-1, keepdim=True) / (1 + (src * dst).sum(-1, keepdim=True)).clamp_min(1e-12)
    return v - coef * (src + dst)


def uniform(shape: tuple[int, ...], *, generator: torch.Generator | None = None,
            device: torch.device | str | None = None, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """Haar-uniform rotations ``[*shape, 4]``: a normalised 4-D Gaussian, canonical sign."""
    g = torch.randn((*shape, 4), generator=generator, device=device, dtype=dtype)
    return canonical(g)
