"""Network-free distances between sets of scans (range images [2, H, W] of one sensor).

- ``bev_jsd``, ``bev_mmd``: R2Flow's ``metrics/bev.py`` (after LiDARGen). Points with
  3 < d < 63 m go into 100 x 100 xy histograms over +-80 m. JSD: scipy's Jensen-Shannon
  *distance* (square root of the divergence, natural log) of the set-summed histograms. MMD:
  squared MMD (biased, all pairs) with an RBF kernel of sigma 0.5 on the per-scan normalised,
  flattened histograms.
- ``chamfer``: for each generated scan, the Chamfer distance (mean unsquared nearest-neighbour
  distance both ways, summed) to its nearest real scan among the first 32, on 2,048 points per
  scan drawn with a fixed seed; the mean over generated scans (PointFlow's MMD-CD, in metres).
- ``range_histogram_tv``: total variation of the depth histograms (1 m bins, 0-80 m) of all
  returns.
- ``ray_drop_gap``: |difference| of the fraction of pixels with no return.
- ``car_count_gap``: |difference| of the mean number of cars :func:`count_cars` finds per scan.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage
from scipy.spatial import cKDTree
from scipy.spatial.distance import jensenshannon

from flowcore_lidar.sensor import Sensor
from flowcore_lidar.simulate import SENSOR_HEIGHT

BEV_BINS = 100
BEV_EXTENT = 80.0
BEV_DEPTH = (3.0, 63.0)
CHAMFER_POINTS = 2048
CHAMFER_REFERENCES = 32


def as_images(samples) -> list[np.ndarray]:
    return [np.asarray(s, dtype=np.float32) for s in samples]


def bev_histogram(points: np.ndarray) -> np.ndarray:
    """points [N, >=3] -> [100, 100] counts of x, y over +-80 m, points with 3 < d < 63 m."""
    d = np.linalg.norm(points[:, :3], axis=1)
    keep = (d > BEV_DEPTH[0]) & (d < BEV_DEPTH[1])
    edges = np.linspace(-BEV_EXTENT, BEV_EXTENT, BEV_BINS + 1)
    return np.histogram2d(points[keep, 0], points[keep, 1], bins=(edges, edges))[0]


def bev_histograms(sensor: Sensor, samples) -> np.ndarray:
    return np.stack([bev_histogram(sensor.unproject(s)) for s in as_images(samples)])


def bev_jsd(sensor: Sensor, real, generated) -> float:
    p = bev_histograms(sensor, real).sum(0).ravel()
    q = bev_histograms(sensor, generated).sum(0).ravel()
    if p.sum() == 0 or q.sum() == 0:
        return float(np.sqrt(np.log(2)))  # the largest distance: one set has no points in range
    return float(jensenshannon(p / p.sum(), q / q.sum()))


def rbf_mmd(x: np.ndarray, y: np.ndarray, sigma: float = 0.5) -> float:
    """Squared MMD, biased (every pair, diagonals included), of rows of x and y; RBF kernel."""
    def k(a, b):
        d2 = (a * a).sum(1)[:, None] + (b * b).sum(1)[None] - 2 * a @ b.T
        return np.exp(-np.maximum(d2, 0) / (2 * sigma * sigma))

    return float(k(x, x).mean() + k(y, y).mean() - 2 * k(x, y).mean())


def bev_mmd(sensor: Sensor, real, generated) -> float:
    def normalised(h):
        h = h.reshape(len(h), -1)
        return h / np.maximum(h.sum(1, keepdims=True), 1)

    return rbf_mmd(normalised(bev_histograms(sensor, real)), normalised(bev_histograms(sensor, generated)))


def chamfer_distance(a: np.ndarray, b: np.ndarray) -> float:
    """Mean nearest-neighbour distance a -> b plus b -> a (xyz, unsquared)."""
    if len(a) == 0 or len(b) == 0:
        return float("inf") if len(a) != len(b) else 0.0
    return float(cKDTree(b).query(a)[0].mean() + cKDTree(a).query(b)[0].mean())


def _subsample(points: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    xyz = points[:, :3]
    if len(xyz) > CHAMFER_POINTS:
        xyz = xyz[rng.choice(len(xyz), CHAMFER_POINTS, replace=False)]
    return xyz


def chamfer(sensor: Sensor, real, generated) -> float:
    rng = np.random.default_rng(0)
    refs = [_subsample(sensor.unproject(s), rng) for s in as_images(real)[:CHAMFER_REFERENCES]]
    total = 0.0
    images = as_images(generated)
    for s in images:
        g = _subsample(sensor.unproject(s), rng)
        total += min(chamfer_distance(g, r) for r in refs)
    return total / max(len(images), 1)


def range_histogram(sensor: Sensor, samples) -> np.ndarray:
    depths = np.concatenate([sensor.depth(s).ravel() for s in as_images(samples)])
    h = np.histogram(depths[depths > 0], bins=int(sensor.max_depth), range=(0, sensor.max_depth))[0]
    return h / max(h.sum(), 1)


def range_histogram_tv(sensor: Sensor, real, generated) -> float:
    return float(0.5 * np.abs(range_histogram(sensor, real) - range_histogram(sensor, generated)).sum())


def ray_drop_rate(sensor: Sensor, samples) -> float:
    """Fraction of pixels with no return."""
    return float(np.mean([(sensor.depth(s) == 0).mean() for s in as_images(samples)]))


def ray_drop_gap(sensor: Sensor, real, generated) -> float:
    return abs(ray_drop_rate(sensor, real) - ray_drop_rate(sensor, generated))


def count_cars(points: np.ndarray, cell: float = 0.4, ground_clearance: float = 0.3,
               reach: float = 40.0) -> int:
    """Cars among the non-ground points of a scan from a sensor 1.73 m above a flat road along x.

    Points more than ``ground_clearance`` above the road (above the kerb) within ``reach`` m go
    into an xy grid of ``cell`` m; connected occupied cells (8-neighbours) are objects. An object
    of at least 4 points is a car when its top is 0.8-2.2 m above the road (walls and trees seen
    from 10 m on reach higher in a +3 deg field of view), its footprint is 1.2-6.5 m long and at
    most 2.6 m wide, and it spans at least 0.5 m across the street (a car's front, back or more;
    a wall along the street spans a few centimetres). Poles, trunks and pedestrians are smaller.
    Cars hidden behind others are not found.
    """
    z = points[:, 2] + SENSOR_HEIGHT
    keep = (z > ground_clearance) & (np.abs(points[:, 0]) < reach) & (np.abs(points[:, 1]) < reach)
    pts, z = points[keep], z[keep]
    if not len(pts):
        return 0
    n = int(np.ceil(2 * reach / cell))
    ix = np.clip(((pts[:, 0] + reach) / cell).astype(int), 0, n - 1)
    iy = np.clip(((pts[:, 1] + reach) / cell).astype(int), 0, n - 1)
    occupied = np.zeros((n, n), bool)
    occupied[ix, iy] = True
    labels, count = ndimage.label(occupied, structure=np.ones((3, 3)))
    obj = labels[ix, iy] - 1
    sizes = np.bincount(obj, minlength=count)
    found = 0
    for k in np.flatnonzero(sizes >= 4):
        mine = obj == k
        xy = pts[mine, :2]
        ext = xy.max(0) - xy.min(0)
        top = z[mine].max()
        if 0.8 <= top <= 2.2 and 1.2 <= ext.max() <= 6.5 and ext.min() <= 2.6 and ext[1] >= 0.5:
            found += 1
    return found


def cars_found(sensor: Sensor, samples) -> list[int]:
    return [count_cars(sensor.unproject(s)) for s in as_images(samples)]


def car_count_gap(sensor: Sensor, real, generated) -> float:
    return abs(float(np.mean(cars_found(sensor, real))) - float(np.mean(cars_found(sensor, generated))))


METRICS = {
    "bev_jsd": (bev_jsd, "Jensen-Shannon distance of set-summed 100x100 BEV histograms (R2Flow)"),
    "bev_mmd": (bev_mmd, "squared MMD, RBF sigma 0.5, of per-scan BEV histograms (R2Flow)"),
    "chamfer": (chamfer, "mean over generated scans of the Chamfer distance to the nearest of 32 real scans, m"),
    "range_histogram_tv": (range_histogram_tv, "total variation of 1 m depth histograms of the returns"),
    "ray_drop_gap": (ray_drop_gap, "|difference| of the fraction of pixels with no return"),
    "car_count_gap": (car_count_gap, "|difference| of the mean cars per scan found by BEV clustering"),
}


def metric_functions(sensor: Sensor) -> dict[str, tuple]:
    """name -> (fn(real, generated), description) bound to ``sensor``."""
    def bind(fn):
        return lambda real, generated: fn(sensor, real, generated)

    return {name: (bind(fn), text) for name, (fn, text) in METRICS.items()}


__all__ = ["bev_jsd", "bev_mmd", "chamfer", "chamfer_distance", "count_cars", "rbf_mmd", "ray_drop_rate",
           "range_histogram", "METRICS", "metric_functions"]
