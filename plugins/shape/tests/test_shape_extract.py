"""Marching cubes of occupancy logits: a sphere comes back round; coarse-to-fine matches the full grid."""

import torch

from flowcore_shape.extract import extract_mesh, logit_grid


def ball(p: torch.Tensor) -> torch.Tensor:
    return 0.4 - p.norm(dim=-1)  # > 0 inside a ball of radius 0.4


def test_a_ball_meshes_to_its_radius_with_outward_faces():
    v, f = extract_mesh(ball, resolution=32, coarse=0)
    assert (v.norm(dim=1) - 0.4).abs().max() < 0.01
    tri = v[f]
    normal = torch.linalg.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0])
    assert ((normal * tri.mean(1)).sum(1) > 0).float().mean() > 0.99


def test_coarse_to_fine_gives_the_full_grid_mesh_with_fewer_evaluations():
    full, n_full = logit_grid(ball, 128, 0)
    fine, n_fine = logit_grid(ball, 128, 32)
    assert n_fine < n_full / 3
    assert torch.equal(fine > 0, full > 0)
    v1, f1 = extract_mesh(ball, 48, 0)
    v2, f2 = extract_mesh(ball, 48, 12)
    assert torch.allclose(v1, v2, atol=1e-6) and torch.equal(f1, f2)


def test_no_zero_crossing_is_an_empty_mesh():
    v, f = extract_mesh(lambda p: -torch.ones(len(p)), 16, 0)
    assert v.shape == (0, 3) and f.shape == (0, 3)
