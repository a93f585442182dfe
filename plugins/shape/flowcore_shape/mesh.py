"""Triangle meshes as samples: checks, unit-cube normalisation, surface sampling, inside/outside.

A shape sample is a dict::

    vertices  [V, 3] float32, in the unit cube [-0.5, 0.5]^3 (bounding box centred, longest side 1)
    faces     [F, 3] int64, indices into vertices
    to_world  [4, 4] float64, optional: unit-cube coordinates -> the file's coordinates

A dataset's samples are :class:`ShapeSample` dicts that also carry, as an attribute and not as
content, the autoencoder's supervision computed when the set was built (exact occupancy from
the generating implicit function, or winding numbers computed once).

Inside/outside is the generalised winding number (Jacobson et al. 2013): the solid angle the
surface subtends at a point over 4 pi. It is 1 inside and 0 outside a closed mesh, and degrades
gracefully on holes, open borders and self-intersections (a point counts as inside when the
number's magnitude exceeds 1/2), where ray parity flips with each missing triangle.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch

from flowcore.errors import DataError

KEYS = ("vertices", "faces")
#: what the autoencoder trains on: surface [P, 6] (points, unit normals), queries [Q, 3], occupancy [Q]
SUPERVISION = ("surface", "queries", "occupancy")


class ShapeSample(dict):
    """A mesh sample (the dict) with ``supervision``: {surface, queries, occupancy} tensors, or None."""

    def __init__(self, *args, supervision: dict[str, torch.Tensor] | None = None, **kwargs):
        super().__init__(*args, **kwargs)
        self.supervision = supervision


def check_mesh(sample: Any, where: str) -> dict[str, torch.Tensor]:
    """A valid shape sample (tensors converted), or DataError naming ``where``."""
    if not isinstance(sample, dict) or not set(KEYS) <= set(sample):
        raise DataError(f"{where}: a shape sample is a dict with 'vertices' [V, 3] and 'faces' [F, 3], "
                        f"got {type(sample).__name__}")
    v = torch.as_tensor(sample["vertices"])
    f = torch.as_tensor(sample["faces"])
    if v.dim() != 2 or v.shape[1] != 3 or not v.is_floating_point():
        raise DataError(f"{where}: vertices must be floats [V, 3], got {tuple(v.shape)} {v.dtype}")
    if f.dim() != 2 or f.shape[1] != 3 or f.is_floating_point():
        raise DataError(f"{where}: faces must be integers [F, 3], got {tuple(f.shape)} {f.dtype}")
    if not torch.isfinite(v).all():
        raise DataError(f"{where}: vertices hold NaN or infinite values")
    if len(f) and (int(f.min()) < 0 or int(f.max()) >= len(v)):
        raise DataError(f"{where}: faces index vertices {int(f.min())}..{int(f.max())}, but there are {len(v)}")
    out = {"vertices": v.float(), "faces": f.long()}
    if "to_world" in sample:
        m = torch.as_tensor(sample["to_world"], dtype=torch.float64)
        if m.shape != (4, 4) or not torch.isfinite(m).all():
            raise DataError(f"{where}: to_world must be a finite 4x4 matrix, got {tuple(m.shape)}")
        out["to_world"] = m
    return out


def normalise(vertices: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """vertices [V, 3] -> (unit-cube vertices [V, 3] float32, to_world [4, 4] float64).

    The bounding box is centred at the origin and its longest side scaled to 1;
    ``to_world @ [v, 1]`` gives the original coordinates back.
    """
    v = np.asarray(vertices, dtype=np.float64)
    lo, hi = v.min(0), v.max(0)
    center, size = (lo + hi) / 2, float((hi - lo).max())
    if not size > 0:
        raise DataError("a mesh whose vertices all coincide has no extent to normalise")
    to_world = np.eye(4)
    to_world[:3, :3] *= size
    to_world[:3, 3] = center
    return ((v - center) / size).astype(np.float32), to_world


def apply(matrix: np.ndarray, vertices: np.ndarray) -> np.ndarray:
    """[V, 3] points through a homogeneous 4x4 matrix."""
    m = np.asarray(matrix, dtype=np.float64)
    return np.asarray(vertices, dtype=np.float64) @ m[:3, :3].T + m[:3, 3]


def face_areas_normals(vertices: np.ndarray, faces: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Area [F] and unit normal [F, 3] of each triangle (zero normal for degenerate ones)."""
    tri = np.asarray(vertices, dtype=np.float64)[faces]
    cross = np.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0])
    norm = np.linalg.norm(cross, axis=-1)
    return 0.5 * norm, cross / np.maximum(norm, 1e-20)[:, None]


def sample_surface(vertices, faces, count: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """``count`` points uniform on the surface (area-weighted) and their face normals: [count, 3] float32 each.

    A mesh without area (empty, or all faces degenerate) gives its vertex centroid (the origin
    when it has none) with zero normals, so metrics of a failed sample stay finite.
    """
    vertices, faces = np.asarray(vertices, dtype=np.float64), np.asarray(faces, dtype=np.int64)
    areas, normals = face_areas_normals(vertices, faces) if len(faces) else (np.zeros(0), None)
    if not len(faces) or areas.sum() <= 0:
        center = vertices.mean(0) if len(vertices) else np.zeros(3)
        return np.tile(center, (count, 1)).astype(np.float32), np.zeros((count, 3), np.float32)
    cdf = np.cumsum(areas)
    idx = np.minimum(np.searchsorted(cdf, rng.uniform(0, cdf[-1], count)), len(faces) - 1)
    r = rng.uniform(size=(count, 2))
    flip = r.sum(-1) > 1
    r[flip] = 1 - r[flip]
    tri = vertices[faces[idx]]
    points = tri[:, 0] + r[:, :1] * (tri[:, 1] - tri[:, 0]) + r[:, 1:] * (tri[:, 2] - tri[:, 0])
    return points.astype(np.float32), normals[idx].astype(np.float32)


def winding_number(vertices: torch.Tensor, faces: torch.Tensor, queries: torch.Tensor,
                   chunk: int = 2_000_000) -> torch.Tensor:
    """Generalised winding number [Q] of ``queries`` [Q, 3] w.r.t. the mesh (Van Oosterom-Strackee solid angles)."""
    tri = vertices.double()[faces]  # [F, 3, 3]
    out = torch.empty(len(queries), dtype=torch.float64)
    step = max(1, chunk // max(len(faces), 1))
    for s in range(0, len(queries), step):
        d = tri[None] - queries[s: s + step].double()[:, None, None]  # [q, F, 3, 3]
        a, b, c = d.unbind(2)
        la, lb, lc = a.norm(dim=-1), b.norm(dim=-1), c.norm(dim=-1)
        det = (a * torch.linalg.cross(b, c)).sum(-1)
        den = la * lb * lc + (a * b).sum(-1) * lc + (b * c).sum(-1) * la + (c * a).sum(-1) * lb
        out[s: s + step] = torch.atan2(det, den).sum(-1) / (2 * math.pi)
    return out


def occupancy(vertices: torch.Tensor, faces: torch.Tensor, queries: torch.Tensor) -> torch.Tensor:
    """1.0 where the winding number's magnitude exceeds 1/2 (inside), else 0.0: [Q] float32.

    The magnitude, so a mesh whose triangles all turn the other way (clockwise seen from
    outside, -1 inside) is read the same.
    """
    return (winding_number(vertices, faces, queries).abs() > 0.5).float()
