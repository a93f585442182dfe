"""A spinning multi-beam sensor and its range image (R2Flow / R2DM conventions).

    points [N, 4] = (x, y, z, reflectance)  <->  image [2, H, W] = (log-depth, reflectance) in [-1, 1]

Row i looks at elevation ``fov_up - (i + 1/2) (fov_up - fov_down) / H``; column j at azimuth
``a_j = (2 (j + 1/2) / W - 1) pi`` where ``a = -atan2(y, x)`` (column 0 looks backwards, the
middle column forwards along +x, azimuth grows clockwise seen from above). Depth d is stored as
``2 log2(d + 1) / log2(max_depth + 1) - 1``; an empty pixel (no return, or d outside
[min_depth, max_depth]) holds depth 0 and reflectance 0, i.e. -1 in both channels. When points
share a pixel the nearest wins.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

#: a pixel counts as a return when its decoded depth is at least this fraction of min_depth
VALID_FRACTION = 0.5


@dataclass(frozen=True)
class Sensor:
    """Beams (rows), azimuth resolution (columns), vertical field of view in degrees, depth range in m."""

    rows: int = 64
    cols: int = 1024
    fov_up: float = 3.0
    fov_down: float = -25.0
    min_depth: float = 1.45
    max_depth: float = 80.0

    @property
    def shape(self) -> tuple[int, int]:
        return self.rows, self.cols

    def elevations(self) -> np.ndarray:
        """[H] elevation of each row's beam, radians, top row first."""
        up, down = math.radians(self.fov_up), math.radians(self.fov_down)
        return up - (np.arange(self.rows) + 0.5) * (up - down) / self.rows

    def azimuths(self) -> np.ndarray:
        """[W] azimuth ``-atan2(y, x)`` of each column, radians in (-pi, pi)."""
        return (2 * (np.arange(self.cols) + 0.5) / self.cols - 1) * math.pi

    def directions(self) -> np.ndarray:
        """[H, W, 3] unit ray directions of the pixel centres."""
        el = self.elevations()[:, None]
        az = self.azimuths()[None, :]
        return np.stack(np.broadcast_arrays(np.cos(el) * np.cos(-az), np.cos(el) * np.sin(-az), np.sin(el)), -1)

    # ---------------------------------------------------------------- depth <-> [-1, 1]

    def depth_to_unit(self, depth: np.ndarray) -> np.ndarray:
        return 2 * np.log2(depth + 1) / math.log2(self.max_depth + 1) - 1

    def unit_to_depth(self, x: np.ndarray) -> np.ndarray:
        return np.exp2((np.clip(x, -1, 1) + 1) / 2 * math.log2(self.max_depth + 1)) - 1

    def valid(self, depth: np.ndarray) -> np.ndarray:
        return depth >= VALID_FRACTION * self.min_depth

    # ---------------------------------------------------------------- projection

    def project(self, points: np.ndarray) -> np.ndarray:
        """points [N, >=3] (x, y, z[, reflectance in [0, 1]]) -> image [2, H, W] float32 in [-1, 1].

        Points outside the field of view or the depth range are left out; the nearest point
        of each pixel wins.
        """
        points = np.asarray(points, dtype=np.float64)
        xyz = points[:, :3]
        refl = points[:, 3] if points.shape[1] > 3 else np.zeros(len(points))
        depth = np.linalg.norm(xyz, axis=1)
        keep = (depth >= self.min_depth) & (depth <= self.max_depth)
        xyz, refl, depth = xyz[keep], refl[keep], depth[keep]
        elevation = np.arcsin(np.clip(xyz[:, 2] / depth, -1, 1))
        azimuth = -np.arctan2(xyz[:, 1], xyz[:, 0])
        up, down = math.radians(self.fov_up), math.radians(self.fov_down)
        row = np.floor((up - elevation) / (up - down) * self.rows).astype(np.int64)
        col = np.floor((azimuth / math.pi + 1) / 2 * self.cols).astype(np.int64) % self.cols
        inside = (row >= 0) & (row < self.rows)
        row, col, depth, refl = row[inside], col[inside], depth[inside], refl[inside]
        order = np.argsort(-depth, kind="stable")  # far first: the nearest is written last and wins
        image = np.zeros((2, self.rows, self.cols))
        image[0, row[order], col[order]] = depth[order]
        image[1, row[order], col[order]] = np.clip(refl[order], 0, 1)
        return self.from_depth(image[0], image[1])

    def from_depth(self, depth: np.ndarray, reflectance: np.ndarray) -> np.ndarray:
        """depth [H, W] in m (0 = no return) and reflectance [H, W] in [0, 1] -> image [2, H, W] float32."""
        empty = depth <= 0
        out = np.stack([self.depth_to_unit(np.where(empty, 0, depth)), np.where(empty, 0, reflectance) * 2 - 1])
        return out.astype(np.float32)

    def depth(self, image: np.ndarray) -> np.ndarray:
        """image [2, H, W] -> depth [H, W] in m, 0 where there is no return."""
        d = self.unit_to_depth(np.asarray(image[0], dtype=np.float64))
        return np.where(self.valid(d), d, 0.0)

    def unproject(self, image: np.ndarray) -> np.ndarray:
        """image [2, H, W] -> points [N, 4] float32 (x, y, z, reflectance) of the pixels with a return."""
        image = np.asarray(image, dtype=np.float64)
        depth = self.depth(image)
        hit = depth > 0
        xyz = self.directions()[hit] * depth[hit][:, None]
        refl = np.clip((image[1][hit] + 1) / 2, 0, 1)
        return np.concatenate([xyz, refl[:, None]], 1).astype(np.float32)


#: named sensors: Velodyne HDL-64E as R2Flow uses it on KITTI-360, and smaller ones for CPU runs
SENSORS = {
    "hdl64e": Sensor(),
    "cpu32": Sensor(rows=32, cols=256),
    "cpu16": Sensor(rows=16, cols=512),
}


def make_sensor(preset: str = "hdl64e", rows: int | None = None, cols: int | None = None,
                fov_up: float | None = None, fov_down: float | None = None) -> Sensor:
    """A preset with any of its fields replaced."""
    base = SENSORS[preset]
    given = {"rows": rows, "cols": cols, "fov_up": fov_up, "fov_down": fov_down}
    fields = {k: v for k, v in given.items() if v is not None}
    return Sensor(**{**base.__dict__, **fields})
