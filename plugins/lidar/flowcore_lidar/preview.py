"""Preview PNGs of scans: each row a range image (depth over reflectance) and a bird's-eye view."""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np

from flowcore_lidar.sensor import Sensor

#: a dark-blue -> green -> yellow ramp (viridis anchors)
RAMP = np.array([[68, 1, 84], [59, 82, 139], [33, 145, 140], [94, 201, 98], [253, 231, 37]], np.float64)
BEV_SIZE = 256
BEV_REACH = 40.0
GUTTER = 4


def colourise(x: np.ndarray, empty: np.ndarray | None = None) -> np.ndarray:
    """values in [0, 1] [H, W] -> RGB uint8 [H, W, 3]; ``empty`` pixels black."""
    t = np.clip(x, 0, 1) * (len(RAMP) - 1)
    rgb = np.stack([np.interp(t, np.arange(len(RAMP)), RAMP[:, c]) for c in range(3)], -1)
    if empty is not None:
        rgb[empty] = 0
    return rgb.astype(np.uint8)


def range_view(sensor: Sensor, image: np.ndarray, width: int) -> np.ndarray:
    """[2, H, W] -> RGB of depth (near bright) over reflectance, each scaled to ``width`` columns."""
    depth = sensor.depth(image)
    empty = depth == 0
    near = 1 - np.log2(depth + 1) / np.log2(sensor.max_depth + 1)
    refl = (np.asarray(image[1]) + 1) / 2
    k = max(1, width // sensor.cols)
    rows = max(1, (width // 8) // sensor.rows)  # stretch short sensors vertically so they stay readable
    views = [np.repeat(np.repeat(colourise(v, empty), rows, 0), k, 1) for v in (near, refl)]
    return np.concatenate([views[0], np.full((GUTTER, views[0].shape[1], 3), 255, np.uint8), views[1]])


def bev_view(sensor: Sensor, image: np.ndarray) -> np.ndarray:
    """Points seen from above (x up, +-40 m), coloured by height, as 2 x 2 dots: RGB [256, 256, 3]."""
    points = sensor.unproject(image)
    out = np.zeros((BEV_SIZE, BEV_SIZE, 3), np.uint8)
    keep = (np.abs(points[:, 0]) < BEV_REACH) & (np.abs(points[:, 1]) < BEV_REACH)
    p = points[keep]
    order = np.argsort(p[:, 2])  # higher points drawn last
    p = p[order]
    row = ((BEV_REACH - p[:, 0]) / (2 * BEV_REACH) * BEV_SIZE).astype(int).clip(0, BEV_SIZE - 1)
    col = ((BEV_REACH - p[:, 1]) / (2 * BEV_REACH) * BEV_SIZE).astype(int).clip(0, BEV_SIZE - 1)
    colours = colourise(((p[:, 2] + 1.9) / 3.5)[None])[0]  # road dark, 1.6 m above it (car roofs) bright
    for dr in (0, 1):  # 2 x 2 dots: sparse far rings stay visible
        for dc in (0, 1):
            out[(row + dr).clip(max=BEV_SIZE - 1), (col + dc).clip(max=BEV_SIZE - 1)] = colours
    out[BEV_SIZE // 2 - 1: BEV_SIZE // 2 + 2, BEV_SIZE // 2 - 1: BEV_SIZE // 2 + 2] = (255, 0, 0)  # the sensor
    return out


def scan_rows(sensor: Sensor, images: Sequence, width: int = 768) -> np.ndarray:
    """One RGB canvas: a row per scan, its range view left of its bird's-eye view, white gutters."""
    rows = []
    for image in images:
        image = np.asarray(image, np.float32)
        left, right = range_view(sensor, image, width), bev_view(sensor, image)
        h = max(left.shape[0], right.shape[0])
        row = np.full((h, left.shape[1] + GUTTER + right.shape[1], 3), 255, np.uint8)
        row[: left.shape[0], : left.shape[1]] = left
        row[: right.shape[0], left.shape[1] + GUTTER:] = right
        rows.append(row)
    w = max(r.shape[1] for r in rows)
    canvas = np.full((sum(r.shape[0] for r in rows) + GUTTER * (len(rows) - 1), w, 3), 255, np.uint8)
    y = 0
    for r in rows:
        canvas[y: y + r.shape[0], : r.shape[1]] = r
        y += r.shape[0] + GUTTER
    return canvas


def write_preview(sensor: Sensor, images: Sequence, path: Path, limit: int = 8) -> Path:
    from PIL import Image

    from flowcore.io import atomic_path

    path = Path(path).with_suffix(".png")
    with atomic_path(path) as tmp:
        Image.fromarray(scan_rows(sensor, list(images)[:limit])).save(tmp, format="PNG")
    return path
