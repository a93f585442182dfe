"""Network-free metrics against closed forms and known scenes."""

import math

import numpy as np
import pytest
from scipy.spatial.distance import jensenshannon

from flowcore_lidar import metrics as M
from flowcore_lidar.sensor import Sensor
from flowcore_lidar.simulate import SENSOR_HEIGHT, Scene, StreetConfig, cast, templates


def test_bev_histogram_bins_xy_over_80_m_and_keeps_3_to_63_m():
    points = np.array([[10.0, 0.5, 0, 0], [-79.0, 79.0, 0, 0], [2.0, 0, 0, 0], [0, 64.0, 0, 0], [10.1, 0.6, 0, 0]])
    h = M.bev_histogram(points)
    assert h.shape == (100, 100) and h.sum() == 2
    assert h[int((10 + 80) / 1.6), int((0.5 + 80) / 1.6)] == 2


def test_bev_jsd_is_scipys_distance_of_the_summed_histograms():
    s = Sensor(rows=16, cols=64)
    rng = np.random.default_rng(0)
    a = [s.from_depth(rng.uniform(4, 60, s.shape), rng.random(s.shape)) for _ in range(3)]
    b = [s.from_depth(rng.uniform(4, 20, s.shape), rng.random(s.shape)) for _ in range(2)]
    p, q = M.bev_histograms(s, a).sum(0).ravel(), M.bev_histograms(s, b).sum(0).ravel()
    assert M.bev_jsd(s, a, b) == pytest.approx(jensenshannon(p / p.sum(), q / q.sum()))
    assert M.bev_jsd(s, a, a) == pytest.approx(0, abs=1e-7)


def test_rbf_mmd_matches_the_sum_over_all_pairs():
    rng = np.random.default_rng(1)
    x, y = rng.random((4, 3)), rng.random((5, 3)) + 0.3

    def k(a, b):
        return math.exp(-np.sum((a - b) ** 2) / (2 * 0.5 ** 2))

    def mean(u, v):
        return np.mean([k(a, b) for a in u for b in v])

    assert M.rbf_mmd(x, y) == pytest.approx(mean(x, x) + mean(y, y) - 2 * mean(x, y))
    assert M.rbf_mmd(x, x) == pytest.approx(0, abs=1e-12)


def test_chamfer_distance_of_a_shifted_grid_is_twice_the_shift():
    grid = np.stack(np.meshgrid(np.arange(5.0), np.arange(5.0), [0.0]), -1).reshape(-1, 3)
    assert M.chamfer_distance(grid, grid + [0.1, 0, 0]) == pytest.approx(0.2)
    assert M.chamfer_distance(grid, grid) == 0


def street_with(cars, wall=True):
    """Road, a wall along the street, a pole, a pedestrian and cars at (x, y): a known number of cars."""
    rng = np.random.default_rng(0)
    t, scene, ground = templates(), Scene(), -SENSOR_HEIGHT
    scene.add(t["box"], (200, 200, 1), (0, 0, ground - 0.5), 0, "asphalt", rng)
    if wall:
        scene.add(t["box"], (60, 1, 10), (0, 9, ground + 5), 0, "facade", rng)
    scene.add(t["cylinder"], (0.2, 0.2, 6), (4, -6, ground + 3), 0, "metal", rng)
    scene.add(t["capsule"], (1, 1, 1.7), (-6, -5, ground + 0.85), 0, "cloth", rng)
    for x, y in cars:
        scene.add(t["box"], (4.4, 1.8, 0.8), (x, y, ground + 0.7), 0, "paint", rng)
        scene.add(t["box"], (2.2, 1.6, 0.6), (x, y, ground + 1.4), 0, "paint", rng)
    return scene


@pytest.mark.parametrize("cars", [[], [(12, -3)], [(12, -3), (-15, 4), (-2, -7), (25, 5)]])
def test_count_cars_finds_the_cars_of_a_known_street(cars):
    s = Sensor()
    depth, refl = cast(street_with(cars), s, np.random.default_rng(0), StreetConfig(range_noise=0.0, drop=0.0))
    assert M.count_cars(s.unproject(s.from_depth(depth, refl))) == len(cars)


def test_ray_drop_rate_counts_empty_pixels():
    s = Sensor(rows=4, cols=8)
    depth = np.full(s.shape, 10.0)
    depth[0] = 0
    assert M.ray_drop_rate(s, [s.from_depth(depth, np.zeros(s.shape))]) == pytest.approx(0.25)
