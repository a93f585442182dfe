"""Mesh helpers against closed forms: normalisation, surface sampling on a sphere, winding numbers."""

import numpy as np
import pytest
import torch

from flowcore.errors import DataError
from flowcore_shape.mesh import apply, check_mesh, normalise, occupancy, sample_surface, winding_number


def test_normalise_centres_the_box_scales_the_longest_side_to_one_and_records_the_way_back():
    v = np.array([[1.0, 2.0, 3.0], [5.0, 3.0, 4.0], [2.0, 2.5, 3.5]])
    unit, to_world = normalise(v)
    assert np.allclose(unit.min(0) + unit.max(0), 0, atol=1e-7)
    assert np.isclose((unit.max(0) - unit.min(0)).max(), 1.0)
    assert np.allclose(apply(to_world, unit), v, atol=1e-6)
    with pytest.raises(DataError, match="no extent"):
        normalise(np.ones((4, 3)))


def test_surface_samples_lie_on_the_sphere_with_outward_normals(sphere):
    v, f = sphere(4)
    points, normals = sample_surface(v, f, 4000, np.random.default_rng(0))
    r = np.linalg.norm(points, axis=1)
    assert r.max() <= 1 + 1e-6 and r.min() > 0.995  # chords of a subdivision-4 icosphere sag < 0.5%
    assert ((points * normals).sum(1) > 0.99 * r).all()
    # uniform by area: each octant holds an eighth of the points
    octant = (points > 0) @ np.array([1, 2, 4])
    assert np.allclose(np.bincount(octant, minlength=8) / 4000, 1 / 8, atol=0.03)


def test_an_empty_mesh_samples_its_centroid_with_zero_normals():
    points, normals = sample_surface(np.zeros((0, 3)), np.zeros((0, 3), dtype=np.int64), 5, np.random.default_rng(0))
    assert points.shape == (5, 3) and not points.any() and not normals.any()


def test_winding_number_is_one_inside_and_zero_outside_a_closed_mesh(sphere):
    v, f = sphere(3)
    q = torch.tensor([[0.0, 0.0, 0.0], [0.5, -0.3, 0.2], [1.5, 0.0, 0.0], [0.0, 3.0, -2.0]])
    w = winding_number(torch.from_numpy(v), torch.from_numpy(f), q)
    assert torch.allclose(w, torch.tensor([1.0, 1.0, 0.0, 0.0], dtype=torch.float64), atol=1e-9)


def test_winding_number_classifies_points_of_a_sphere_with_a_hole(sphere):
    v, f = sphere(3)
    centres = v[f].mean(1)
    open_faces = f[centres[:, 2] < 0.8]  # a cap cut off: no longer watertight
    rng = np.random.default_rng(1)
    q = rng.uniform(-1.2, 1.2, (2000, 3))
    q = q[np.abs(np.linalg.norm(q, axis=1) - 1) > 0.05]  # away from the surface's facets
    inside = occupancy(torch.from_numpy(v), torch.from_numpy(open_faces), torch.from_numpy(q)).numpy() > 0
    assert (inside == (np.linalg.norm(q, axis=1) < 1)).mean() > 0.99
    flipped = occupancy(torch.from_numpy(v), torch.from_numpy(open_faces[:, ::-1].copy()), torch.from_numpy(q))
    assert (flipped.numpy() > 0).tolist() == inside.tolist()  # clockwise triangles: the same inside


def test_check_mesh_names_the_sample_and_the_fault():
    good = {"vertices": torch.zeros(3, 3), "faces": torch.tensor([[0, 1, 2]])}
    assert check_mesh(good, "x")["faces"].dtype == torch.int64
    bad = {"missing": {"vertices": torch.zeros(3, 3)},
           "flat": {"vertices": torch.zeros(3, 2), "faces": torch.tensor([[0, 1, 2]])},
           "index": {"vertices": torch.zeros(3, 3), "faces": torch.tensor([[0, 1, 3]])},
           "nan": {"vertices": torch.full((3, 3), float("nan")), "faces": torch.tensor([[0, 1, 2]])}}
    for where, sample in bad.items():
        with pytest.raises(DataError, match=f"^{where}:"):
            check_mesh(sample, where)
