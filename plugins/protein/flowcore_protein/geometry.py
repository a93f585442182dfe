"""Backbone geometry: rigid residue frames, unit quaternions, ideal atoms, NeRF chain building.

A residue frame is a rotation R [..., 3, 3] (columns = the frame's axes in the lab) and a
translation (the CA position). It is built from N, CA, C by Gram-Schmidt (AlphaFold2 Alg. 21):

    e1 = (C - CA) / |C - CA|
    e2 = u / |u|,  u = (N - CA) - (e1 . (N - CA)) e1
    e3 = e1 x e2

so that in its own frame C lies on +x and N in the xy-plane with y > 0. The ideal residue
(ReQFlow / FrameFlow) puts N at (-0.525, 1.363, 0), CA at the origin and C at (1.526, 0, 0);
the carbonyl O is placed from the next residue's N (1.23 A from C, on the bisector of the
exterior of the CA-C-N angle). Quaternions are (w, x, y, z), unit, sign fixed to w >= 0,
as in ``flowcore.flow.so3`` (whose ``to_matrix`` turns them back into rotations).

This module is geometry only: how a frame moves along a flow is the core's path (flowcore.flow).
"""

from __future__ import annotations

import math

import torch

from flowcore.flow import so3

#: ideal N, CA, C in the residue frame (Angstrom)
IDEAL_N = (-0.525, 1.363, 0.0)
IDEAL_CA = (0.0, 0.0, 0.0)
IDEAL_C = (1.526, 0.0, 0.0)
#: C=O bond length (Angstrom)
C_O_BOND = 1.23
#: peptide C-N bond length and the angles around it (Engh & Huber), used to place a
#: virtual next N for the last residue's O and by the NeRF builder
C_N_BOND = 1.329
CA_C_N_ANGLE = 116.2
C_N_CA_ANGLE = 121.7
#: N-CA bond length and N-CA-C angle implied by the ideal frame (1.4606 A, 111.07 degrees)
N_CA_BOND = math.hypot(IDEAL_N[0], IDEAL_N[1])
CA_C_BOND = IDEAL_C[0]
N_CA_C_ANGLE = math.degrees(math.atan2(IDEAL_N[1], IDEAL_N[0]))
#: consecutive CA-CA distance of a trans peptide (Angstrom)
CA_CA = 3.80
#: psi of the virtual residue after the last one (extended), only used to place the last O
TERMINAL_PSI = 180.0


def _normalize(v: torch.Tensor, eps: float = 1e-8) -> torch.Tensor:
    return v / v.norm(dim=-1, keepdim=True).clamp_min(eps)


def nonlocal_pairs(ca: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """CA-CA distances [B, L, L] of ca [B, L, 3] and the pairs a clash counts on [B, L, L]: both
    residues real (mask [B, L]) and |i - j| > 2.

    Pairwise differences, not cdist: cdist's gradient is NaN where two points coincide (padding).
    """
    dist = ((ca[:, :, None] - ca[:, None, :]).pow(2).sum(-1) + 1e-12).sqrt()
    index = torch.arange(ca.shape[1], device=ca.device)
    real = mask.to(ca.dtype)
    pairs = ((index[:, None] - index[None, :]).abs() > 2) * real[:, :, None] * real[:, None, :]
    return dist, pairs


def frames_from_atoms(n: torch.Tensor, ca: torch.Tensor, c: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """N, CA, C [..., 3] -> rotation R [..., 3, 3] (Gram-Schmidt), translation = CA [..., 3]."""
    e1 = _normalize(c - ca)
    v2 = n - ca
    e2 = _normalize(v2 - (e1 * v2).sum(-1, keepdim=True) * e1)
    e3 = torch.linalg.cross(e1, e2, dim=-1)
    return torch.stack([e1, e2, e3], dim=-1), ca


def quaternion_from_matrix(r: torch.Tensor) -> torch.Tensor:
    """Rotation matrices [..., 3, 3] -> unit quaternions (w, x, y, z) [..., 4], w >= 0.

    Each of the four algebraically equal forms is computed and the one with the largest
    denominator is kept, which is well conditioned for every rotation (Shepperd's method).
    """
    m = r.unbind(-1)
    m00, m10, m20 = m[0].unbind(-1)
    m01, m11, m21 = m[1].unbind(-1)
    m02, m12, m22 = m[2].unbind(-1)
    cands = torch.stack([
        torch.stack([1 + m00 + m11 + m22, m21 - m12, m02 - m20, m10 - m01], -1),
        torch.stack([m21 - m12, 1 + m00 - m11 - m22, m01 + m10, m02 + m20], -1),
        torch.stack([m02 - m20, m01 + m10, 1 - m00 + m11 - m22, m12 + m21], -1),
        torch.stack([m10 - m01, m02 + m20, m12 + m21, 1 - m00 - m11 + m22], -1),
    ], -2)  # [..., 4 candidates, 4]; candidate k has 4 q_k^2 in component k
    diag = torch.diagonal(cands, dim1=-2, dim2=-1)
    best = diag.argmax(-1, keepdim=True)
    q = torch.gather(cands, -2, best.unsqueeze(-1).expand(*best.shape, 4)).squeeze(-2)
    return so3.canonical(q)


def place_atom(a: torch.Tensor, b: torch.Tensor, c: torch.Tensor, bond: float, angle: float,
               torsion: torch.Tensor | float) -> torch.Tensor:
    """NeRF: the atom d with |cd| = bond, angle b-c-d = angle and dihedral a-b-c-d = torsion.

    a, b, c [..., 3]; angles in degrees; torsion a float or [...]. (Parsons et al. 2005.)
    """
    torsion = torch.as_tensor(torsion, dtype=c.dtype, device=c.device)
    bc = _normalize(c - b)
    nrm = _normalize(torch.linalg.cross(b - a, bc, dim=-1))
    m = torch.stack([bc, torch.linalg.cross(nrm, bc, dim=-1), nrm], -1)
    theta = math.radians(angle)
    phi = torch.deg2rad(torsion)
    d2 = torch.stack([
        -bond * math.cos(theta) * torch.ones_like(phi),
        bond * math.sin(theta) * torch.cos(phi),
        bond * math.sin(theta) * torch.sin(phi),
    ], -1)
    return c + (m @ d2.unsqueeze(-1)).squeeze(-1)


def place_oxygens(n: torch.Tensor, ca: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
    """Carbonyl O [..., L, 3] of chains given N, CA, C [..., L, 3].

    O_i sits 1.23 A from C_i on the bisector of the exterior angle at C_i between CA_i and
    N_{i+1}; the last residue uses a virtual N_{i+1} placed at psi = TERMINAL_PSI.
    """
    last_n = place_atom(n[..., -1, :], ca[..., -1, :], c[..., -1, :], C_N_BOND, CA_C_N_ANGLE, TERMINAL_PSI)
    next_n = torch.cat([n[..., 1:, :], last_n.unsqueeze(-2)], -2)
    out = _normalize(c - ca) + _normalize(c - next_n)
    return c + C_O_BOND * _normalize(out)


def atoms_from_frames(rotation: torch.Tensor, translation: torch.Tensor) -> torch.Tensor:
    """Chains' frames (R [..., L, 3, 3], CA [..., L, 3]) -> ideal backbone atoms [..., L, 4, 3] (N, CA, C, O)."""
    local = torch.tensor([IDEAL_N, IDEAL_C], dtype=translation.dtype, device=translation.device)
    n, c = (rotation.unsqueeze(-3) @ local.unsqueeze(-1)).squeeze(-1).unbind(-2)
    n, c = n + translation, c + translation
    o = place_oxygens(n, translation, c)
    return torch.stack([n, translation, c, o], -2)


def build_backbone(phi: torch.Tensor, psi: torch.Tensor, omega: torch.Tensor | None = None) -> torch.Tensor:
    """Ideal backbone atoms [..., L, 4, 3] (float64) from torsions phi, psi, omega [..., L] (degrees), by NeRF.

    Bond lengths and the N-CA-C angle are those of the ideal frame, so every residue's N, CA
    and C are exactly the ideal residue moved by its frame, and O is placed as the decoder
    places it. phi[0] and psi[L-1] are unused (the chain ends have no neighbour to turn
    against); omega[i] is the C_i-N_{i+1} peptide torsion (180 = trans). Leading dims batch
    chains: the loop runs over residues only.
    """
    dtype = torch.float64
    phi, psi = phi.to(dtype), psi.to(dtype)
    omega = torch.full_like(phi, 180.0) if omega is None else omega.to(dtype)
    batch = phi.shape[:-1]
    n = [torch.tensor(IDEAL_N, dtype=dtype).expand(*batch, 3)]
    ca = [torch.tensor(IDEAL_CA, dtype=dtype).expand(*batch, 3)]
    c = [torch.tensor(IDEAL_C, dtype=dtype).expand(*batch, 3)]
    for i in range(1, phi.shape[-1]):
        n.append(place_atom(n[-1], ca[-1], c[-1], C_N_BOND, CA_C_N_ANGLE, psi[..., i - 1]))
        ca.append(place_atom(ca[-1], c[-1], n[-1], N_CA_BOND, C_N_CA_ANGLE, omega[..., i - 1]))
        c.append(place_atom(c[-1], n[-1], ca[-1], CA_C_BOND, N_CA_C_ANGLE, phi[..., i]))
    n_t, ca_t, c_t = torch.stack(n, -2), torch.stack(ca, -2), torch.stack(c, -2)
    return torch.stack([n_t, ca_t, c_t, place_oxygens(n_t, ca_t, c_t)], -2)


def dihedral(a: torch.Tensor, b: torch.Tensor, c: torch.Tensor, d: torch.Tensor) -> torch.Tensor:
    """Dihedral angle a-b-c-d in degrees, [...]."""
    b0, b1, b2 = a - b, c - b, d - c
    b1n = _normalize(b1)
    v = b0 - (b0 * b1n).sum(-1, keepdim=True) * b1n
    w = b2 - (b2 * b1n).sum(-1, keepdim=True) * b1n
    x = (v * w).sum(-1)
    y = (torch.linalg.cross(b1n, v, dim=-1) * w).sum(-1)
    return torch.rad2deg(torch.atan2(y, x))


def bond_angle(a: torch.Tensor, b: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
    """Angle a-b-c in degrees, [...]."""
    u, v = _normalize(a - b), _normalize(c - b)
    return torch.rad2deg(torch.acos((u * v).sum(-1).clamp(-1.0, 1.0)))


def frames_from_backbone(atoms: torch.Tensor) -> torch.Tensor:
    """One chain's atoms [L, 4, 3] (N, CA, C, O; Angstrom) -> frames [L, 7] = (quaternion, CA - mean CA).

    This is a protein sample in flowcore: the centred rigid frames; O is not kept because
    the decoder places it from the next residue.
    """
    atoms = torch.as_tensor(atoms, dtype=torch.float64)
    rotation, ca = frames_from_atoms(atoms[:, 0], atoms[:, 1], atoms[:, 2])
    return torch.cat([quaternion_from_matrix(rotation), ca - ca.mean(0)], -1).float()


def backbone_from_frames(frames: torch.Tensor) -> torch.Tensor:
    """Frames [L, 7] -> ideal backbone atoms [L, 4, 3] (N, CA, C, O; Angstrom), float32."""
    frames = torch.as_tensor(frames, dtype=torch.float64)
    return atoms_from_frames(so3.to_matrix(frames[:, :4]), frames[:, 4:]).float()
