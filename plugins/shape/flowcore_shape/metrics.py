"""Network-free shape metrics on surface point clouds (all coordinates in the unit cube).

Reconstruction, one reference and one reconstruction at a time:

    chamfer(a, b)   = 1/2 (mean_a min_b |a - b| + mean_b min_a |a - b|)   (Euclidean, not squared)
    fscore(a, b)    = harmonic mean of precision (b within tau of a) and recall (a within tau of b), tau = 0.02
    volume_iou      = |inside both| / |inside either| at the same query points

Conditioned generation with a paired target (a mesh made from the item's depth image):
paired_chamfer and paired_iou, the means of the two above between each generated mesh and the
real item it was made for.

Generation, sets of real and generated shapes (PointFlow, Yang et al. 2019), with the Chamfer
distance above between every pair:

    MMD    mean over real shapes of the distance to the nearest generated one (lower is better)
    COV    fraction of real shapes that are the nearest real shape of some generated one (higher)
    1-NNA  accuracy of the leave-one-out 1-nearest-neighbour classifier telling real from
           generated in their union: 50% is ideal (indistinguishable), 100% fully apart, and
           below 50% means generated shapes copy the real ones
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np
import torch
from scipy.spatial import cKDTree

from flowcore_shape.mesh import sample_surface

#: points per shape for the pairwise generation metrics (PointFlow uses 2,048; every pair costs N^2)
SET_POINTS = 1024
TAU = 0.02
#: uniform points of the unit cube for the paired volume IoU
IOU_QUERIES = 4096


def surface_points(samples: Sequence[Any], count: int, seed: int = 0) -> torch.Tensor:
    """[S, count, 3] points uniform on each sample's surface (a failed, empty mesh: its centroid or the origin)."""
    out = []
    for i, s in enumerate(samples):
        rng = np.random.default_rng([seed, i])
        out.append(torch.from_numpy(sample_surface(s["vertices"], s["faces"], count, rng)[0]))
    return torch.stack(out)


def nearest(a, b) -> tuple[np.ndarray, np.ndarray]:
    """For clouds a [N, 3] and b [K, 3]: distance from each a to its nearest b [N], and from each b to a [K]."""
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    return cKDTree(b).query(a, k=1)[0], cKDTree(a).query(b, k=1)[0]


def chamfer(a, b) -> float:
    """Chamfer distance of point clouds a [N, 3] and b [K, 3]."""
    ab, ba = nearest(a, b)
    return float(0.5 * (ab.mean() + ba.mean()))


def fscore(reference, other, tau: float = TAU) -> float:
    """F-score at ``tau`` of ``other`` [K, 3] against ``reference`` [N, 3]."""
    ref_to_other, other_to_ref = nearest(reference, other)
    recall, precision = float((ref_to_other < tau).mean()), float((other_to_ref < tau).mean())
    return 2 * precision * recall / (precision + recall) if precision + recall > 0 else 0.0


def volume_iou(inside_a, inside_b) -> float:
    """IoU of two occupancies at the same points (bool [Q]); 1 when both are empty."""
    a, b = np.asarray(inside_a, dtype=bool), np.asarray(inside_b, dtype=bool)
    union = int((a | b).sum())
    return int((a & b).sum()) / union if union else 1.0


def pairwise_chamfer(x, y) -> np.ndarray:
    """Chamfer distance of every pair: clouds x [S, N, 3], y [T, K, 3] -> [S, T] (k-d trees, built once)."""
    x, y = np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)
    tx, ty = [cKDTree(p) for p in x], [cKDTree(p) for p in y]
    out = np.empty((len(x), len(y)))
    for i in range(len(x)):
        for j in range(len(y)):
            out[i, j] = 0.5 * (ty[j].query(x[i], k=1)[0].mean() + tx[i].query(y[j], k=1)[0].mean())
    return out


def generation_scores(real, generated) -> dict[str, float]:
    """MMD, COV and 1-NNA (Chamfer) of point clouds real [S, N, 3] vs generated [T, N, 3]."""
    rg = pairwise_chamfer(real, generated)
    cov = len(set(rg.argmin(0).tolist())) / len(rg)
    rr, gg = pairwise_chamfer(real, real), pairwise_chamfer(generated, generated)
    return {"mmd": float(rg.min(1).mean()), "cov": float(cov), "nna": one_nna(rr, rg, gg)}


def one_nna(rr, rg, gg) -> float:
    """Leave-one-out 1-NN accuracy from the distance blocks real-real [S, S], real-gen [S, T], gen-gen [T, T].

    Ties go to the other set (a generated copy of a real shape counts as a miss).
    """
    rr, rg, gg = (np.asarray(d, dtype=np.float64) for d in (rr, rg, gg))
    s, t = rg.shape
    full = np.block([[rr, rg], [rg.T, gg]])
    np.fill_diagonal(full, np.inf)
    labels = np.r_[np.zeros(s), np.ones(t)]
    at_min = full <= full.min(1, keepdims=True)
    other = labels[None, :] != labels[:, None]
    return float((~(at_min & other).any(1)).mean())


def paired_chamfer(real: Sequence[Any], generated: Sequence[Any]) -> float:
    """Mean Chamfer distance of each generated mesh to the real item it was made for (same order)."""
    if len(real) != len(generated):
        raise ValueError(f"paired Chamfer needs one generated mesh per real one, got {len(generated)} for {len(real)}")
    pts_r, pts_g = surface_points(real, SET_POINTS), surface_points(generated, SET_POINTS)
    return float(np.mean([chamfer(a, b) for a, b in zip(pts_r.numpy(), pts_g.numpy())]))


def paired_iou(real: Sequence[Any], generated: Sequence[Any], queries: int = IOU_QUERIES) -> float:
    """Mean volume IoU of each generated mesh and the real item it was made for, at uniform points
    of the unit cube. Inside is by ray parity (trimesh, Embree when installed): marching-cubes
    meshes are closed, and the winding number would cost seconds a mesh at their face counts.
    An empty mesh has no inside."""
    import trimesh

    if len(real) != len(generated):
        raise ValueError(f"paired IoU needs one generated mesh per real one, got {len(generated)} for {len(real)}")
    q = np.random.default_rng(0).uniform(-0.5, 0.5, (queries, 3))

    def inside(s) -> np.ndarray:
        v, f = np.asarray(s["vertices"], dtype=np.float64), np.asarray(s["faces"], dtype=np.int64)
        if not len(f):
            return np.zeros(queries, dtype=bool)
        return np.asarray(trimesh.Trimesh(v, f, process=False).contains(q), dtype=bool)

    return float(np.mean([volume_iou(inside(a), inside(b)) for a, b in zip(real, generated)]))


def mmd(real: Sequence[Any], generated: Sequence[Any]) -> float:
    return generation_scores(surface_points(real, SET_POINTS), surface_points(generated, SET_POINTS))["mmd"]


def coverage(real: Sequence[Any], generated: Sequence[Any]) -> float:
    return generation_scores(surface_points(real, SET_POINTS), surface_points(generated, SET_POINTS))["cov"]


def nna(real: Sequence[Any], generated: Sequence[Any]) -> float:
    return generation_scores(surface_points(real, SET_POINTS), surface_points(generated, SET_POINTS))["nna"]
