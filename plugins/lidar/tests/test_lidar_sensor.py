"""Range-image projection: pixel of a known direction, nearest wins, round trips, depth scaling."""

import math

import numpy as np
import pytest

from flowcore_lidar.sensor import SENSORS, Sensor, make_sensor


def point_at(sensor: Sensor, row: int, col: int, depth: float, refl: float = 0.5) -> np.ndarray:
    el, az = sensor.elevations()[row], sensor.azimuths()[col]
    return np.array([depth * math.cos(el) * math.cos(-az), depth * math.cos(el) * math.sin(-az),
                     depth * math.sin(el), refl])


def test_hdl64e_is_the_default_sensor_and_presets_can_be_changed():
    s = make_sensor()
    assert (s.rows, s.cols, s.fov_up, s.fov_down, s.max_depth) == (64, 1024, 3.0, -25.0, 80.0)
    assert make_sensor("cpu32", fov_up=2.0).shape == (32, 256) and SENSORS["cpu16"].shape == (16, 512)


def test_a_point_lands_in_the_pixel_of_its_elevation_and_azimuth():
    s = Sensor(rows=8, cols=16)
    # straight ahead (+x) at the horizon: azimuth 0 is the middle of the columns
    image = s.project(np.array([[10.0, 0.0, 0.0, 1.0]]))
    rows, cols = np.nonzero(image[0] > -1)
    top_row = int(math.floor(3.0 / 28.0 * 8))
    assert rows.tolist() == [top_row] and cols.tolist() == [8]
    # +y is at azimuth -pi/2: a quarter turn before the middle
    image = s.project(np.array([[0.0, 10.0, 0.0, 1.0]]))
    assert np.nonzero(image[0] > -1)[1].tolist() == [4]
    assert image[0].max() == pytest.approx(2 * math.log2(11) / math.log2(81) - 1, abs=1e-6)
    assert image[1].max() == pytest.approx(1.0)


def test_the_nearest_point_of_a_pixel_wins():
    s = Sensor(rows=8, cols=16)
    far, near = point_at(s, 3, 5, 30.0, 0.9), point_at(s, 3, 5, 12.0, 0.2)
    for points in ([far, near], [near, far]):
        image = s.project(np.array(points))
        assert s.depth(image)[3, 5] == pytest.approx(12.0, rel=1e-5)
        assert image[1, 3, 5] == pytest.approx(0.2 * 2 - 1, abs=1e-6)


def test_points_outside_the_depth_range_or_field_of_view_are_left_out():
    s = Sensor(rows=8, cols=16)
    points = np.array([[1.0, 0, 0, 1], [90.0, 0, 0, 1], [5.0, 0, 5.0, 1], [0.0, 0, -10.0, 1]])
    assert (s.project(points) == -1).all()


def test_unproject_then_project_gives_the_image_back():
    s = Sensor(rows=16, cols=64)
    rng = np.random.default_rng(0)
    depth = rng.uniform(2, 79, s.shape) * (rng.random(s.shape) > 0.2)
    image = s.from_depth(depth, rng.random(s.shape))
    points = s.unproject(image)
    assert len(points) == (depth > 0).sum()
    assert np.allclose(s.project(points), image, atol=2e-6)
    assert np.allclose(s.depth(image), depth, rtol=1e-5)


def test_log_depth_spans_minus_one_to_one():
    s = Sensor()
    assert s.depth_to_unit(np.array([0.0, 80.0])).tolist() == pytest.approx([-1.0, 1.0])
    d = np.array([1.45, 10.0, 79.9])
    assert np.allclose(s.unit_to_depth(s.depth_to_unit(d)), d)
