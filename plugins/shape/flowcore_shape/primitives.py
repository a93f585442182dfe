"""Procedural solids as implicit functions: f(p) < 0 inside, f(p) = 0 on the surface.

Eight classes: box, sphere, cylinder, cone, torus, capsule, and the union and the difference
of two of the first six. Each shape is drawn with random parameters and a random rotation,
meshed by marching cubes of f on a grid and normalised to the unit cube; its occupancy is the
sign of f, exact at any point (no mesh query needed).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np

CLASSES = ("box", "sphere", "cylinder", "cone", "torus", "capsule", "union", "difference")
SOLIDS = CLASSES[:6]

Implicit = Callable[[np.ndarray], np.ndarray]


def _radial(p: np.ndarray) -> np.ndarray:
    return np.sqrt(p[..., 0] ** 2 + p[..., 1] ** 2)


def box(half: np.ndarray) -> Implicit:
    def f(p):
        q = np.abs(p) - half
        return np.linalg.norm(np.maximum(q, 0), axis=-1) + np.minimum(q.max(-1), 0)
    return f


def sphere(radius: float) -> Implicit:
    return lambda p: np.linalg.norm(p, axis=-1) - radius


def cylinder(radius: float, half_height: float) -> Implicit:
    return lambda p: np.maximum(_radial(p) - radius, np.abs(p[..., 2]) - half_height)


def cone(radius: float, half_height: float) -> Implicit:
    """Base of ``radius`` at z = -h, apex at z = +h (sign-correct, not a true distance)."""
    slope = radius / (2 * half_height)
    return lambda p: np.maximum((_radial(p) - slope * (half_height - p[..., 2])) / np.sqrt(1 + slope ** 2),
                                np.abs(p[..., 2]) - half_height)


def torus(major: float, minor: float) -> Implicit:
    return lambda p: np.sqrt((_radial(p) - major) ** 2 + p[..., 2] ** 2) - minor


def capsule(radius: float, half_length: float) -> Implicit:
    def f(p):
        z = np.clip(p[..., 2], -half_length, half_length)
        return np.sqrt(p[..., 0] ** 2 + p[..., 1] ** 2 + (p[..., 2] - z) ** 2) - radius
    return f


def rotation(rng: np.random.Generator) -> np.ndarray:
    """A uniformly random rotation matrix [3, 3] (QR of a Gaussian matrix, sign-fixed)."""
    q, r = np.linalg.qr(rng.normal(size=(3, 3)))
    q = q * np.sign(np.diag(r))
    if np.linalg.det(q) < 0:
        q[:, 0] = -q[:, 0]
    return q


def placed(f: Implicit, rot: np.ndarray, offset: np.ndarray) -> Implicit:
    """f moved: the solid rotated by ``rot`` then shifted by ``offset``."""
    return lambda p: f((p - offset) @ rot)


def draw_solid(kind: str, rng: np.random.Generator) -> tuple[Implicit, dict[str, float]]:
    """One of the six solids with random parameters, centred, axis z (fits in [-1, 1]^3)."""
    u = rng.uniform
    if kind == "box":
        half = u(0.25, 0.8, 3)
        return box(half), {"half_x": half[0], "half_y": half[1], "half_z": half[2]}
    if kind == "sphere":
        r = u(0.5, 0.9)
        return sphere(r), {"radius": r}
    if kind == "cylinder":
        r, h = u(0.2, 0.7), u(0.3, 0.8)
        return cylinder(r, h), {"radius": r, "half_height": h}
    if kind == "cone":
        r, h = u(0.3, 0.8), u(0.4, 0.8)
        return cone(r, h), {"radius": r, "half_height": h}
    if kind == "torus":
        minor = u(0.1, 0.3)
        major = u(minor + 0.15, 0.95 - minor)
        return torus(major, minor), {"major": major, "minor": minor}
    if kind == "capsule":
        r = u(0.15, 0.45)
        h = u(0.2, 0.9 - r)
        return capsule(r, h), {"radius": r, "half_length": h}
    raise ValueError(kind)


@dataclass
class Primitive:
    """A drawn shape: its class, parameters and implicit function (natural units, before normalising)."""

    label: int
    f: Implicit
    params: dict[str, Any] = field(default_factory=dict)

    @property
    def kind(self) -> str:
        return CLASSES[self.label]


def draw(label: int, rng: np.random.Generator) -> Primitive:
    """A random shape of class ``label`` (index into :data:`CLASSES`)."""
    kind = CLASSES[label]
    if kind in SOLIDS:
        f, params = draw_solid(kind, rng)
        rot = rotation(rng)
        return Primitive(label, placed(f, rot, np.zeros(3)), {"solid": kind, **_floats(params),
                                                              "rotation": rot.round(6).tolist()})
    a_kind, b_kind = rng.choice(SOLIDS, 2)
    fa, pa = draw_solid(str(a_kind), rng)
    fb, pb = draw_solid(str(b_kind), rng)
    ra, rb = rotation(rng), rotation(rng)
    # the second solid is shifted so it overlaps the first partly: a union sticks out, a difference bites
    offset = rng.normal(size=3)
    offset *= rng.uniform(0.35, 0.6) / np.linalg.norm(offset)
    fa, fb = placed(fa, ra, np.zeros(3)), placed(fb, rb, offset)
    if kind == "union":
        f = lambda p: np.minimum(fa(p), fb(p))  # noqa: E731
    else:
        f = lambda p: np.maximum(fa(p), -fb(p))  # noqa: E731
    params = {"a": {"solid": str(a_kind), **_floats(pa), "rotation": ra.round(6).tolist()},
              "b": {"solid": str(b_kind), **_floats(pb), "rotation": rb.round(6).tolist(),
                    "offset": offset.round(6).tolist()}}
    return Primitive(label, f, params)


def _floats(params: dict[str, Any]) -> dict[str, float]:
    return {k: round(float(v), 6) for k, v in params.items()}


def mesh_implicit(f: Implicit, resolution: int = 72, bound: float = 2.2) -> tuple[np.ndarray, np.ndarray]:
    """Marching cubes of f's zero level -> (vertices [V, 3], faces [F, 3], counter-clockwise from outside).

    A coarse 40^3 pass over [-bound, bound]^3 finds the solid's box; the ``resolution``^3 grid
    then covers that box (plus a margin), so every shape gets the same detail whatever its size.
    A solid too thin for the coarse pass is meshed over the whole range; one with no inside
    at all gives no triangles.
    """
    from skimage.measure import marching_cubes

    coarse = np.linspace(-bound, bound, 40)
    points = np.stack(np.meshgrid(coarse, coarse, coarse, indexing="ij"), -1).reshape(-1, 3)
    points = points[f(points) < 0]
    step = coarse[1] - coarse[0]
    if len(points):
        lo, hi = points.min(0) - 1.5 * step, points.max(0) + 1.5 * step
    else:
        lo, hi = np.full(3, -bound), np.full(3, bound)
    axes = [np.linspace(a, b, resolution) for a, b in zip(lo, hi)]
    values = f(np.stack(np.meshgrid(*axes, indexing="ij"), -1).reshape(-1, 3)).reshape((resolution,) * 3)
    if not values.min() < 0 < values.max():
        return np.zeros((0, 3)), np.zeros((0, 3), dtype=np.int64)
    spacing = tuple(float(a[1] - a[0]) for a in axes)
    vertices, faces, _, _ = marching_cubes(values, 0.0, spacing=spacing)
    # f rises outward, so skimage's triangles already turn counter-clockwise seen from outside
    return vertices + lo, np.ascontiguousarray(faces)
