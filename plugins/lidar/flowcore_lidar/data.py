"""The lidar_street dataset: simulated scans of procedural streets, cached once generated.

Items are ``{"lidar": image [2, H, W] in [-1, 1], "label": number of cars in the scene}``. A split
is generated from its own seed (``1000 seed + split index``) and kept in
``flowcore.files.cache_dir("lidar", ...)`` as depth (uint16, 2 mm steps) and reflectance
(uint8), with every scene's parameters in a JSON list beside it.
"""

from __future__ import annotations

import json
import time

import numpy as np
import torch
from torch.utils.data import Dataset

from flowcore.errors import DataError
from flowcore.files import cache_dir
from flowcore.io import atomic_path, write_text_atomic
from flowcore_lidar.sensor import Sensor, make_sensor
from flowcore_lidar.simulate import StreetConfig, cast, street_scene

SPLIT_SEEDS = {"train": 0, "val": 1, "test": 2}
SPLIT_SIZES = {"train": 2000, "val": 200, "test": 500}
#: bump when the simulator changes, so old caches are not reused
VERSION = 1
DEPTH_STEP = 0.002


class Scans(Dataset):
    """Range images and their scene labels."""

    def __init__(self, depth: np.ndarray, reflectance: np.ndarray, labels: list[dict], sensor: Sensor):
        self.depth, self.reflectance, self.labels, self.sensor = depth, reflectance, labels, sensor

    def __len__(self) -> int:
        return len(self.labels)

    def image(self, i: int) -> torch.Tensor:
        depth = self.depth[i].astype(np.float64) * DEPTH_STEP
        return torch.from_numpy(self.sensor.from_depth(depth, self.reflectance[i] / 255.0))

    def __getitem__(self, i: int) -> dict:
        return {"lidar": self.image(i), "label": int(self.labels[i]["cars"])}


def generate(sensor: Sensor, count: int, seed: int, cfg: StreetConfig, progress: bool = False
             ) -> tuple[np.ndarray, np.ndarray, list[dict]]:
    """``count`` simulated scans: depth [N, H, W] uint16 (2 mm), reflectance [N, H, W] uint8, labels."""
    rng = np.random.default_rng(seed)
    depth = np.zeros((count, *sensor.shape), np.uint16)
    refl = np.zeros((count, *sensor.shape), np.uint8)
    labels = []
    start = time.time()
    for i in range(count):
        scene, label = street_scene(rng, cfg)
        d, r = cast(scene, sensor, rng, cfg)
        depth[i] = np.round(d / DEPTH_STEP).astype(np.uint16)
        refl[i] = np.round(r * 255).astype(np.uint8)
        labels.append(label)
        if progress and (i + 1) % 200 == 0:
            print(f"lidar_street: {i + 1}/{count} scans, {time.time() - start:.0f} s", flush=True)
    return depth, refl, labels


def street(split: str = "train", n: int | None = None, held_out: int | None = None, max_cars: int = 6, seed: int = 0,
           cache: bool = True, sensor: str = "hdl64e", rows: int | None = None, cols: int | None = None,
           fov_up: float | None = None, fov_down: float | None = None) -> Scans:
    """Simulated street scans (see flowcore_lidar.simulate); label = car count."""
    if split not in SPLIT_SEEDS:
        raise DataError(f"lidar_street has no split {split!r}; use train, val or test")
    spec = make_sensor(sensor, rows, cols, fov_up, fov_down)
    given = n if split == "train" else held_out
    count = given if given is not None else SPLIT_SIZES[split]
    cfg = StreetConfig(max_cars=max_cars)
    split_seed = 1000 * seed + SPLIT_SEEDS[split]
    key = (f"v{VERSION}_{spec.rows}x{spec.cols}_fov{spec.fov_up:g}_{spec.fov_down:g}_cars{max_cars}_"
           f"seed{split_seed}_n{count}")
    folder = cache_dir("lidar", "street", key)
    if cache and (folder / "labels.json").is_file():
        try:
            arrays = np.load(folder / "scans.npz")
            labels = json.loads((folder / "labels.json").read_text())
            return Scans(arrays["depth"], arrays["reflectance"], labels, spec)
        except (OSError, ValueError, KeyError):
            pass  # unreadable cache: generate again
    depth, refl, labels = generate(spec, count, split_seed, cfg, progress=count >= 1000)
    if cache:
        folder.mkdir(parents=True, exist_ok=True)
        with atomic_path(folder / "scans.npz") as tmp:
            with open(tmp, "wb") as f:
                np.savez(f, depth=depth, reflectance=refl)
        write_text_atomic(folder / "labels.json", json.dumps(labels))
    return Scans(depth, refl, labels, spec)
