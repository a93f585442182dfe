"""A simulated spinning LiDAR in procedural street scenes (no real scans ship offline).

A scene is a straight street along x with the sensor 1.73 m above the road at the origin
(KITTI's mounting height): road, raised sidewalks and lots behind a 0.15 m kerb, buildings in
rows along both sides (some missing), parked cars along the kerbs and cars in the lanes (a body
box with a cabin box of glass), poles, trees (trunk and crown) and pedestrians (capsules).
Every part is a template mesh scaled, turned and moved with numpy, so a scene builds in a few
milliseconds; the sensor's rays (one per range-image pixel, :meth:`Sensor.directions`) are cast
with Embree through trimesh (trimesh's own ray test, ~100x slower, when embreex is missing).

Returns: depth = hit distance + N(0, ``range_noise``); reflectance = the material's albedo x
(0.5 + 0.5 cos incidence) + N(0, 0.02); a return is dropped with probability
``drop + material drop + 0.3 (1 - cos incidence)^4`` (glass and foliage drop more), and rays
that hit nothing or land beyond ``max_depth`` give none. The labels of a scan are its scene
parameters: ``cars`` (parked + moving), ``moving_cars``, ``street_width``, ``buildings``,
``trees``, ``poles``, ``pedestrians``.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass, field

import numpy as np

from flowcore_lidar.sensor import Sensor

SENSOR_HEIGHT = 1.73
KERB = 0.15

#: material -> (albedo low, albedo high, extra drop probability)
MATERIALS = {
    "asphalt": (0.08, 0.18, 0.0),
    "pavement": (0.25, 0.40, 0.0),
    "facade": (0.30, 0.70, 0.0),
    "paint": (0.20, 0.90, 0.0),
    "glass": (0.03, 0.08, 0.5),
    "metal": (0.50, 0.80, 0.0),
    "bark": (0.20, 0.30, 0.0),
    "foliage": (0.20, 0.35, 0.35),
    "cloth": (0.30, 0.60, 0.0),
}


@dataclass(frozen=True)
class StreetConfig:
    """Ranges the scene parameters are drawn from."""

    max_cars: int = 6
    #: share of the cars that stand in the lanes rather than along the kerbs
    moving_share: float = 0.3
    street_width: tuple[float, float] = (7.0, 12.0)
    sidewalk: tuple[float, float] = (2.0, 4.0)
    max_pedestrians: int = 4
    range_noise: float = 0.02
    drop: float = 0.02


@dataclass
class Scene:
    """Triangles with a material per face, and the scene parameters."""

    vertices: list = field(default_factory=list)
    faces: list = field(default_factory=list)
    albedo: list = field(default_factory=list)
    drop: list = field(default_factory=list)
    count: int = 0

    def add(self, template: tuple[np.ndarray, np.ndarray], size, center, yaw: float, material: str,
            rng: np.random.Generator) -> None:
        """A template mesh (unit-sized, centred at 0) scaled by ``size``, turned by ``yaw``, moved to ``center``."""
        v, f = template
        c, s = math.cos(yaw), math.sin(yaw)
        rot = np.array([[c, -s, 0], [s, c, 0], [0, 0, 1]])
        self.vertices.append((v * np.asarray(size)) @ rot.T + np.asarray(center))
        self.faces.append(f + self.count)
        self.count += len(v)
        low, high, drop = MATERIALS[material]
        self.albedo.append(np.full(len(f), rng.uniform(low, high)))
        self.drop.append(np.full(len(f), drop))

    def mesh(self):
        import trimesh

        return trimesh.Trimesh(np.concatenate(self.vertices), np.concatenate(self.faces), process=False)


@functools.cache
def templates() -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Unit meshes: box (1 x 1 x 1), cylinder and sphere (diameter 1, height 1), capsule (0.3 x 0.3 x 1)."""
    import trimesh

    def vf(m):
        return np.asarray(m.vertices, np.float64), np.asarray(m.faces, np.int64)

    return {"box": vf(trimesh.creation.box((1, 1, 1))),
            "cylinder": vf(trimesh.creation.cylinder(0.5, 1.0, sections=8)),
            "sphere": vf(trimesh.creation.icosphere(1, 0.5)),
            "capsule": vf(trimesh.creation.capsule(0.7, 0.15, count=(6, 6)))}


def street_scene(rng: np.random.Generator, cfg: StreetConfig = StreetConfig()) -> tuple[Scene, dict]:
    """A random street scene and its parameters."""
    t = templates()
    scene = Scene()
    ground = -SENSOR_HEIGHT
    half = rng.uniform(*cfg.street_width) / 2
    walk = rng.uniform(*cfg.sidewalk)
    scene.add(t["box"], (240, 2 * half, 1), (0, 0, ground - 0.5), 0, "asphalt", rng)
    for side in (-1, 1):
        scene.add(t["box"], (240, 100, 1), (0, side * (half + 50), ground + KERB - 0.5), 0, "pavement", rng)
    labels = {"street_width": round(2 * half, 3), "buildings": 0, "trees": 0, "poles": 0}
    top = ground + KERB
    for side in (-1, 1):
        if rng.random() < 0.15:  # an open lot on this side
            continue
        x = -100 + rng.uniform(0, 10)
        while x < 100:
            length, depth, height = rng.uniform(8, 30), rng.uniform(10, 20), rng.uniform(4, 25)
            setback = rng.uniform(0, 5)
            y = side * (half + walk + setback + depth / 2)
            scene.add(t["box"], (length, depth, height), (x + length / 2, y, top + height / 2), 0, "facade", rng)
            labels["buildings"] += 1
            x += length + (rng.uniform(8, 16) if rng.random() < 0.2 else rng.uniform(0, 3))
        x = -60 + rng.uniform(0, 20)
        while x < 60:  # poles and trees along the kerb
            y = side * (half + rng.uniform(0.4, 0.8))
            if rng.random() < 0.5:
                h = rng.uniform(5, 8)
                scene.add(t["cylinder"], (0.2, 0.2, h), (x, y, top + h / 2), 0, "metal", rng)
                labels["poles"] += 1
            else:
                trunk, crown = rng.uniform(2, 3), rng.uniform(2.5, 5)
                scene.add(t["cylinder"], (0.35, 0.35, trunk), (x, y, top + trunk / 2), 0, "bark", rng)
                scene.add(t["sphere"], (crown, crown, crown * 0.9), (x, y, top + trunk + crown * 0.4), 0,
                          "foliage", rng)
                labels["trees"] += 1
            x += rng.uniform(10, 30)
    labels["pedestrians"] = int(rng.integers(0, cfg.max_pedestrians + 1))
    for _ in range(labels["pedestrians"]):
        side = rng.choice((-1, 1))
        x, y = rng.uniform(-30, 30), side * (half + rng.uniform(1.0, walk))
        h = rng.uniform(1.5, 1.9)
        scene.add(t["capsule"], (1.0, 1.0, h), (x, y, top + h / 2), 0, "cloth", rng)
    cars, moving = place_cars(rng, cfg, half)
    for x, y, yaw in cars:
        length, width = rng.uniform(3.9, 4.8), rng.uniform(1.65, 1.9)
        scene.add(t["box"], (length, width, 0.8), (x, y, ground + 0.3 + 0.4), yaw, "paint", rng)
        back = np.array([math.cos(yaw), math.sin(yaw)]) * rng.uniform(-0.4, 0.0)
        scene.add(t["box"], (length * 0.5, width * 0.88, 0.6), (x + back[0], y + back[1], ground + 1.1 + 0.3), yaw,
                  "glass", rng)
    labels["cars"] = len(cars)
    labels["moving_cars"] = moving
    return scene, labels


def place_cars(rng: np.random.Generator, cfg: StreetConfig, half: float) -> tuple[list, int]:
    """Up to ``max_cars`` cars (x, y, yaw), one per slot: slots are 7.5 m apart along each side within
    34 m of the sensor (at least 1.1 m between neighbours); a car stands at the kerb (parked) or, away
    from the sensor, in the lane of its side (moving, facing the lane's direction)."""
    slots = [(x, side) for side in (-1, 1) for x in np.arange(-33.75, 33.76, 7.5)]
    n = int(rng.integers(0, min(cfg.max_cars, len(slots)) + 1))
    cars, moving = [], 0
    for i in rng.choice(len(slots), n, replace=False):
        x, side = slots[i]
        x += rng.uniform(-0.8, 0.8)
        if abs(x) > 6 and rng.random() < cfg.moving_share:
            cars.append((x, side * half / 2 + rng.uniform(-0.3, 0.3), rng.normal(0, 0.02) + math.pi * (side > 0)))
            moving += 1
        else:
            cars.append((x, side * (half - 1.1) + rng.uniform(-0.15, 0.15), rng.normal(0, 0.05)))
    return cars, moving


@functools.cache
def _embree_available() -> bool:
    try:
        import embreex  # noqa: F401
    except ImportError:
        return False
    return True


def cast(scene: Scene, sensor: Sensor, rng: np.random.Generator, cfg: StreetConfig = StreetConfig()
         ) -> tuple[np.ndarray, np.ndarray]:
    """depth [H, W] in m (0 = no return) and reflectance [H, W] in [0, 1] of one scan of ``scene``."""
    mesh = scene.mesh()
    if _embree_available():
        from trimesh.ray.ray_pyembree import RayMeshIntersector
    else:
        from trimesh.ray.ray_triangle import RayMeshIntersector
    dirs = sensor.directions().reshape(-1, 3)
    tri, ray, loc = RayMeshIntersector(mesh).intersects_id(np.zeros_like(dirs), dirs, multiple_hits=False,
                                                           return_locations=True)
    albedo, drop = np.concatenate(scene.albedo), np.concatenate(scene.drop)
    cos = np.abs(np.einsum("ij,ij->i", mesh.face_normals[tri], dirs[ray]))
    depth = np.linalg.norm(loc, axis=1) + rng.normal(0, cfg.range_noise, len(ray))
    refl = np.clip(albedo[tri] * (0.5 + 0.5 * cos) + rng.normal(0, 0.02, len(ray)), 0, 1)
    kept = rng.random(len(ray)) >= cfg.drop + drop[tri] + 0.3 * (1 - cos) ** 4
    kept &= (depth >= sensor.min_depth) & (depth <= sensor.max_depth)
    out_depth = np.zeros(sensor.rows * sensor.cols)
    out_refl = np.zeros(sensor.rows * sensor.cols)
    out_depth[ray[kept]] = depth[kept]
    out_refl[ray[kept]] = refl[kept]
    return out_depth.reshape(sensor.shape), out_refl.reshape(sensor.shape)


def simulate(sensor: Sensor, rng: np.random.Generator, cfg: StreetConfig = StreetConfig()
             ) -> tuple[np.ndarray, dict]:
    """One scan: the range image [2, H, W] in [-1, 1] and the scene's labels."""
    scene, labels = street_scene(rng, cfg)
    depth, refl = cast(scene, sensor, rng, cfg)
    return sensor.from_depth(depth, refl), labels
