"""The simulated sensor: exact ranges on a known scene, labels, seeds, speed."""

import time

import numpy as np
import pytest

from flowcore_lidar.sensor import Sensor
from flowcore_lidar.simulate import SENSOR_HEIGHT, Scene, StreetConfig, cast, simulate, street_scene, templates

EXACT = StreetConfig(range_noise=0.0, drop=0.0)


def test_downward_beams_hit_a_flat_road_at_height_over_sine():
    s = Sensor(rows=16, cols=1024)
    rng = np.random.default_rng(0)
    scene = Scene()
    scene.add(templates()["box"], (400, 400, 1), (0, 0, -SENSOR_HEIGHT - 0.5), 0, "asphalt", rng)
    depth, refl = cast(scene, s, rng, EXACT)
    expected = SENSOR_HEIGHT / np.sin(-s.elevations())
    hit = depth > 0
    rows = np.nonzero(hit)[0]
    assert np.allclose(depth[hit], expected[rows], rtol=1e-5)
    down = s.elevations() < 0
    kept = 1 - 0.3 * (1 - np.sin(-s.elevations()[down])) ** 4  # grazing returns drop more
    assert np.allclose(hit[down].mean(1), kept, atol=0.06)
    assert not hit[s.elevations() > 0].any()  # upward beams see the sky
    albedo = scene.albedo[0][0]
    residual = refl[hit] - albedo * (0.5 + 0.5 * np.sin(-s.elevations()[rows]))  # albedo x (1 + cos incidence) / 2
    assert abs(residual.mean()) < 0.003 and residual.std() == pytest.approx(0.02, abs=0.003)


def test_a_seed_gives_the_same_scan_and_labels():
    s = Sensor(rows=8, cols=64)
    a, la = simulate(s, np.random.default_rng(5))
    b, lb = simulate(s, np.random.default_rng(5))
    assert np.array_equal(a, b) and la == lb
    assert a.shape == (2, 8, 64) and a.min() >= -1 and a.max() <= 1


def test_the_car_label_counts_the_cars_in_the_scene():
    rng = np.random.default_rng(3)
    for _ in range(5):
        scene, labels = street_scene(rng, StreetConfig(max_cars=6))
        heights = [np.ptp(v[:, 2]) for v, a in zip(scene.vertices, scene.albedo) if len(a) == 12]
        paint = sum(1 for h in heights if abs(h - 0.8) < 1e-9)  # car bodies: the only boxes 0.8 m high
        assert labels["cars"] == paint <= 6
        assert 7 <= labels["street_width"] <= 12 and labels["moving_cars"] <= labels["cars"]


def test_scans_are_fast():
    s = Sensor(rows=32, cols=256)
    rng = np.random.default_rng(0)
    simulate(s, rng)
    start = time.process_time()
    for _ in range(10):
        simulate(s, rng)
    per_scan = (time.process_time() - start) / 10
    assert per_scan < 0.25, f"{per_scan:.3f} s per scan"


@pytest.mark.parametrize("drop", [0.0, 0.3])
def test_drop_probability_empties_that_share_of_returns(drop):
    s = Sensor(rows=16, cols=256)
    rng = np.random.default_rng(0)
    scene = Scene()
    scene.add(templates()["box"], (400, 400, 1), (0, 0, -SENSOR_HEIGHT - 0.5), 0, "asphalt", rng)
    steep = s.elevations() < -0.2
    base = (cast(scene, s, rng, EXACT)[0][steep] > 0).mean()
    cfg = StreetConfig(range_noise=0.0, drop=drop)
    assert (cast(scene, s, rng, cfg)[0][steep] > 0).mean() == pytest.approx(base * (1 - drop) if drop else base,
                                                                          abs=0.03)
