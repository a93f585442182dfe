"""Frames, quaternions, NeRF and the ideal-geometry decoder, checked against scipy, biotite and geometry."""

import math

import numpy as np
import torch
from scipy.spatial.transform import Rotation

from flowcore.flow import so3
from flowcore_protein import geometry as g


def test_quaternion_from_matrix_agrees_with_scipy_including_half_turns():
    rots = Rotation.concatenate([Rotation.random(500, random_state=0),
                                 Rotation.from_rotvec(np.pi * np.eye(3)),  # w = 0 exactly
                                 Rotation.from_rotvec([[0, 0, 3.14159], [1e-9, 0, 0]])])
    q = g.quaternion_from_matrix(torch.from_numpy(rots.as_matrix()))
    ref = torch.from_numpy(rots.as_quat()[:, [3, 0, 1, 2]])  # scipy is scalar-last
    # q and -q are one rotation: compare up to sign, and w >= 0 always
    assert torch.allclose((q * ref).sum(-1).abs(), torch.ones(len(ref), dtype=q.dtype), atol=1e-9)
    assert (q[:, 0] >= 0).all()
    assert torch.allclose(so3.to_matrix(q), torch.from_numpy(rots.as_matrix()), atol=1e-9)


def test_frame_puts_atoms_at_their_ideal_local_coordinates():
    rot = torch.from_numpy(Rotation.random(7, random_state=1).as_matrix())
    ca = torch.randn(7, 3, dtype=torch.float64) * 10
    n = ca + rot @ torch.tensor(g.IDEAL_N, dtype=torch.float64)
    c = ca + rot @ torch.tensor(g.IDEAL_C, dtype=torch.float64)
    r, t = g.frames_from_atoms(n, ca, c)
    assert torch.allclose(r, rot, atol=1e-12) and torch.equal(t, ca)
    # Gram-Schmidt gives a proper rotation even for a non-ideal N-CA-C angle
    r2, _ = g.frames_from_atoms(n + 0.3 * torch.randn(7, 3, dtype=torch.float64), ca, c)
    assert torch.allclose(r2.transpose(-1, -2) @ r2, torch.eye(3, dtype=torch.float64).expand(7, 3, 3), atol=1e-12)
    assert torch.allclose(torch.linalg.det(r2), torch.ones(7, dtype=torch.float64))


def test_ideal_frame_geometry_matches_the_published_constants():
    assert math.isclose(g.N_CA_BOND, 1.4606, abs_tol=1e-4)  # |(-0.525, 1.363, 0)|
    assert math.isclose(g.N_CA_C_ANGLE, 111.07, abs_tol=0.01)


def test_nerf_backbone_has_the_requested_torsions_per_biotite():
    import biotite.structure as struc

    from flowcore_protein.pdbio import backbone_array

    rng = np.random.default_rng(0)
    phi = torch.from_numpy(rng.uniform(-180, 180, 30))
    psi = torch.from_numpy(rng.uniform(-180, 180, 30))
    omega = torch.from_numpy(rng.choice([180.0, 0.0], 30, p=[0.9, 0.1]))
    atoms = g.build_backbone(phi, psi, omega)
    b_phi, b_psi, b_omega = struc.dihedral_backbone(backbone_array(atoms.numpy()))
    wrap = lambda a: (a + 180) % 360 - 180  # noqa: E731
    assert np.allclose(wrap(np.degrees(b_phi[1:]) - phi[1:].numpy()), 0, atol=1e-3)
    assert np.allclose(wrap(np.degrees(b_psi[:-1]) - psi[:-1].numpy()), 0, atol=1e-3)
    assert np.allclose(wrap(np.degrees(b_omega[:-1]) - omega[:-1].numpy()), 0, atol=1e-3)


def test_trans_peptides_give_the_ideal_ca_ca_distance():
    atoms = g.build_backbone(torch.full((20,), -120.0), torch.full((20,), 130.0))
    ca = atoms[:, 1]
    assert torch.allclose((ca[1:] - ca[:-1]).norm(dim=-1), torch.full((19,), 3.80, dtype=ca.dtype), atol=0.01)


def test_decoder_places_o_in_the_peptide_plane_1_23_from_c():
    atoms = g.build_backbone(torch.full((12,), -63.0), torch.full((12,), -43.0))
    n, ca, c, o = atoms.unbind(1)
    assert torch.allclose((o - c).norm(dim=-1), torch.full((12,), 1.23, dtype=o.dtype))
    # O, CA, C and the next N are coplanar, O opposite the next N across the C-CA line
    assert torch.allclose(g.dihedral(o[:-1], c[:-1], ca[:-1], n[1:]).abs(), torch.full((11,), 180.0, dtype=o.dtype),
                          atol=1e-6)
    ang = g.bond_angle(ca, c, o)
    assert ((ang > 119) & (ang < 124)).all()


def test_frames_to_atoms_to_frames_round_trip():
    atoms = g.build_backbone(torch.full((30,), -63.0), torch.full((30,), -43.0))
    frames = g.frames_from_backbone(atoms)
    back = g.backbone_from_frames(frames)
    centred = (atoms - atoms[:, 1].mean(0)).float()
    assert torch.allclose(back, centred, atol=1e-5)
    assert torch.allclose(g.frames_from_backbone(back), frames, atol=1e-5)
