"""Pictures of meshes without a display: orthographic ray casting with trimesh.

trimesh casts rays with Embree when the ``embreex`` package is installed (``pip install
flowcore-shape[embree]``; about 100x faster) and with its own numpy ray-triangle tests
otherwise; :func:`ray_engine` says which is in use.

    depth_image    [S, S] in [-1, 1]: -1 where the ray misses, else 0.5 + 0.5 (d0 - t) / r
    normal_image   [S, S, 3] uint8: the hit triangle's normal in camera axes as colour, white background
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from flowcore.io import atomic_path

CAMERA_DISTANCE = 2.0
#: the half-width of the orthographic view: the unit cube's circumradius, sqrt(3) / 2
HALF_WIDTH = math.sqrt(3) / 2
#: the views of a preview sheet: (azimuth, elevation) in degrees
PREVIEW_VIEWS = ((30, 25), (150, 25), (270, 60))


def ray_engine() -> str:
    """"embree" when trimesh casts rays with Embree (embreex installed), else "trimesh"."""
    from trimesh.ray import has_embree

    return "embree" if has_embree else "trimesh"


def random_view(rng: np.random.Generator) -> np.ndarray:
    """A direction uniform on the sphere: where the camera sits, seen from the origin [3]."""
    v = rng.normal(size=3)
    return v / np.linalg.norm(v)


def view_from_angles(azimuth: float, elevation: float) -> np.ndarray:
    a, e = math.radians(azimuth), math.radians(elevation)
    return np.array([math.cos(e) * math.cos(a), math.cos(e) * math.sin(a), math.sin(e)])


def camera(view: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Right, up and forward unit vectors [3] of a camera at ``view`` looking at the origin (z up)."""
    forward = -np.asarray(view, dtype=np.float64) / np.linalg.norm(view)
    helper = np.array([0.0, 0.0, 1.0]) if abs(forward[2]) < 0.99 else np.array([0.0, 1.0, 0.0])
    right = np.cross(forward, helper)
    right /= np.linalg.norm(right)
    return right, np.cross(right, forward), forward


def cast(vertices, faces, view: np.ndarray, size: int):
    """Orthographic rays, one per pixel (row 0 at the top): hit distance [S, S] (inf on a miss),
    the hit triangle [S, S] (-1 on a miss) and the camera's axes."""
    import trimesh

    right, up, forward = camera(view)
    s = (np.arange(size) + 0.5) / size * 2 - 1
    x, y = np.meshgrid(s * HALF_WIDTH, -s * HALF_WIDTH)
    origins = (-forward * CAMERA_DISTANCE)[None] + x.reshape(-1, 1) * right + y.reshape(-1, 1) * up
    directions = np.tile(forward, (len(origins), 1))
    depth, tri = np.full(size * size, np.inf), np.full(size * size, -1)
    if len(faces):
        mesh = trimesh.Trimesh(np.asarray(vertices, dtype=np.float64), np.asarray(faces), process=False)
        locations, rays, triangles = mesh.ray.intersects_location(origins, directions, multiple_hits=False)
        depth[rays] = ((locations - origins[rays]) * forward).sum(-1)
        tri[rays] = triangles
    return depth.reshape(size, size), tri.reshape(size, size), (right, up, forward)


def depth_image(vertices, faces, view: np.ndarray, size: int = 32) -> np.ndarray:
    """[S, S] float32 in [-1, 1]: -1 where the ray misses, 0.5 + 0.5 (d0 - t) / r on a hit (nearer is brighter)."""
    depth, _, _ = cast(vertices, faces, view, size)
    hit = np.isfinite(depth)
    image = np.full(depth.shape, -1.0, dtype=np.float32)
    image[hit] = np.clip(0.5 + 0.5 * (CAMERA_DISTANCE - depth[hit]) / HALF_WIDTH, 0.0, 1.0)
    return image


def normal_image(vertices, faces, view: np.ndarray, size: int = 128) -> np.ndarray:
    """[S, S, 3] uint8: the hit triangle's unit normal in camera axes (right, up, towards the viewer) as
    RGB = 255 (n + 1) / 2, shaded by its facing ratio; white where the ray misses."""
    from flowcore_shape.mesh import face_areas_normals

    _, tri, (right, up, forward) = cast(vertices, faces, view, size)
    image = np.full((size, size, 3), 255, dtype=np.uint8)
    hit = tri >= 0
    if hit.any():
        normals = face_areas_normals(np.asarray(vertices), np.asarray(faces))[1][tri[hit]]
        n = np.stack([normals @ right, normals @ up, -(normals @ forward)], -1)
        n[n[:, 2] < 0] *= -1  # a back face seen through a hole: shade it as if it faced the viewer
        shade = 0.35 + 0.65 * n[:, 2:3]
        image[hit] = np.clip(255 * (n + 1) / 2 * shade, 0, 255).astype(np.uint8)
    return image


def preview_sheet(samples: Sequence[dict[str, Any]], path: Path, size: int = 128, gutter: int = 4,
                  columns: int = 1) -> Path:
    """A PNG of the samples, each as len(PREVIEW_VIEWS) normal-shaded views side by side; ``columns``
    samples per row of the sheet."""
    from PIL import Image

    views = [view_from_angles(a, e) for a, e in PREVIEW_VIEWS]
    cell = size + gutter
    per_row = columns * len(views)
    rows = math.ceil(len(samples) / columns)
    sheet = np.full((rows * cell + gutter, per_row * cell + gutter, 3), 255, dtype=np.uint8)
    sheet[:] = 200
    for i, sample in enumerate(samples):
        r, c0 = divmod(i, columns)
        for j, view in enumerate(views):
            y, x = gutter + r * cell, gutter + (c0 * len(views) + j) * cell
            sheet[y: y + size, x: x + size] = normal_image(sample["vertices"], sample["faces"], view, size)
    path = Path(path)
    with atomic_path(path) as tmp:
        Image.fromarray(sheet).save(tmp, format="PNG")
    return path
