"""Ray-cast pictures against the closed form of a ball."""

import math

import numpy as np
import trimesh

from flowcore_shape.render import HALF_WIDTH, depth_image, ray_engine, view_from_angles


def test_depth_image_of_a_ball_has_its_area_and_its_nearest_point_in_the_middle():
    ball = trimesh.creation.icosphere(4, radius=0.5)
    image = depth_image(ball.vertices, ball.faces, view_from_angles(40, 20), 64)
    hit = image > -1
    assert abs(hit.mean() - math.pi * 0.25 / (2 * HALF_WIDTH) ** 2) < 0.01
    nearest = 0.5 + 0.5 * 0.5 / HALF_WIDTH  # the hit at t = d0 - r
    assert abs(image[31:33, 31:33].mean() - nearest) < 0.005
    assert image[hit].min() >= 0.5 - 1e-6  # no hit lies behind the ball's centre plane


def test_an_empty_mesh_is_all_background():
    image = depth_image(np.zeros((0, 3)), np.zeros((0, 3), dtype=np.int64), np.array([0, 0, 1.0]), 8)
    assert (image == -1).all()
    assert ray_engine() in ("embree", "trimesh")
