"""Backbone metrics against hand-built structures with known answers."""

import numpy as np
import pytest
import torch

from flowcore.errors import ConfigError
from flowcore.registry import get_registry
from flowcore_protein import geometry
from flowcore_protein import metrics as M
from flowcore_protein.modality import Protein


def _frames(phi, psi, length):
    return geometry.frames_from_backbone(geometry.build_backbone(torch.full((length,), phi),
                                                                 torch.full((length,), psi)))


def _ca_only(ca):
    """Frames with identity rotations at the given CA positions [L, 3]."""
    ca = torch.as_tensor(ca, dtype=torch.float32)
    return torch.cat([torch.tensor([1.0, 0, 0, 0]).expand(len(ca), 4), ca], -1)


def test_ca_ca_valid_counts_bonds_within_tolerance():
    ca = np.zeros((6, 3))
    ca[:, 0] = np.cumsum([0, 3.8, 3.7, 4.1, 3.2, 3.8])  # bonds 3.8 3.7 4.1 3.2 3.8 -> 3 of 5 valid
    assert M.ca_ca_valid([_ca_only(ca)]) == pytest.approx(3 / 5)
    assert M.ca_ca_valid([_frames(-63, -43, 30)]) == 1.0


def test_clash_rate_counts_residues_in_nonlocal_close_contacts():
    ca = np.zeros((10, 3))
    ca[:, 0] = np.arange(10) * 3.8
    assert M.clash_rate([_ca_only(ca)]) == 0.0
    ca[9] = ca[2] + [0.0, 2.5, 0.0]  # residue 9 lands 2.5 A from residue 2 (|i - j| = 7)
    assert M.clash_rate([_ca_only(ca)]) == pytest.approx(2 / 10)
    ca2 = np.zeros((4, 3))
    ca2[:, 0] = [0, 2.9, 5.8, 8.7]  # only |i - j| <= 2 neighbours are close: not clashes
    assert M.clash_rate([_ca_only(ca2)]) == 0.0


def test_radius_of_gyration_and_power_law_fit():
    cube = np.array([[x, y, z] for x in (-1, 1) for y in (-1, 1) for z in (-1, 1)], dtype=float) * 2
    assert M.radius_of_gyration(cube) == pytest.approx(np.sqrt(12))
    rng = np.random.default_rng(0)
    samples = []
    for n in (50, 100, 200, 400):  # uniform balls scaled so Rg = 2.2 n^0.38
        pts = rng.normal(size=(n, 3))
        pts *= 2.2 * n ** 0.38 / M.radius_of_gyration(pts)
        samples.append(_ca_only(pts - pts.mean(0)))
    a, b = M.fit_rg(samples)
    assert a == pytest.approx(2.2, rel=1e-3) and b == pytest.approx(0.38, abs=1e-3)
    assert M.rg_error(samples, samples) == pytest.approx(0.0, abs=1e-3)
    doubled = [torch.cat([s[:, :4], 2 * s[:, 4:]], -1) for s in samples]
    assert M.rg_error(samples, doubled) == pytest.approx(np.log(2), abs=1e-3)


def test_pseq_sees_helices_and_strands_where_they_were_built():
    helix = M.ss_fractions([_frames(-63, -43, 40)])
    strand = M.ss_fractions([_frames(-120, 130, 40)])
    assert helix["helix"] > 0.85 and helix["strand"] == 0
    assert strand["strand"] > 0.85 and strand["helix"] == 0


def test_generated_set_secondary_structure_matches_its_recipe(ideal_samples):
    from flowcore_protein.data import ideal

    ds = ideal("train", size=8, min_length=40, max_length=90)
    assigned = np.concatenate(M.secondary_structure([ds[i]["protein"] for i in range(len(ds))]))
    intended = np.array(list("".join(c.sequence for c in ds.chains)))
    for code in "ab":
        assert np.mean(assigned[intended == code] == code) > 0.8, code


def test_tm_score_is_one_for_a_rigidly_moved_copy_and_lower_for_another_fold():
    from scipy.spatial.transform import Rotation

    helix = M.ca_coords([_frames(-63, -43, 50)])[0]
    moved = helix @ Rotation.random(random_state=3).as_matrix().T + 7.0
    strand = M.ca_coords([_frames(-120, 130, 50)])[0]
    assert M.tm_score(helix, np.ascontiguousarray(moved)) == pytest.approx(1.0, abs=1e-3)
    assert M.tm_score(helix, strand) < 0.4


def test_metrics_listed_by_the_modality_rank_a_set_against_itself_first(ideal_samples):
    metrics = Protein(tm_samples=4).metrics()
    assert set(metrics) == set(M.METRICS)
    # random torsions (no helix or strand recipe), squashed 5x (bonds 0.76 A, clashes, small Rg)
    g = torch.Generator().manual_seed(0)
    coils = [geometry.frames_from_backbone(geometry.build_backbone(*(torch.rand(2, len(s), generator=g) * 360 - 180)))
             for s in ideal_samples]
    collapsed = [torch.cat([s[:, :4], 0.2 * s[:, 4:]], -1) for s in coils]
    for name, m in metrics.items():
        same, other = m(ideal_samples, ideal_samples), m(ideal_samples, collapsed)
        assert (same < other) if m.lower_is_better else (same > other), name
    with pytest.raises(ConfigError, match=r"metrics\[0\]: expected one of 'ca_ca_valid', .*, got 'fid'"):
        get_registry().modality("protein", metrics=["fid"])
