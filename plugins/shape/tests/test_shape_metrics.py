"""Chamfer, F-score, IoU and the PointFlow set metrics against hand-computed answers."""

import torch

from flowcore_shape.metrics import chamfer, fscore, generation_scores, one_nna, pairwise_chamfer, volume_iou


def grid(n: int = 5) -> torch.Tensor:
    a = torch.arange(n, dtype=torch.float64) * 0.1
    return torch.stack(torch.meshgrid(a, a, a, indexing="ij"), -1).reshape(-1, 3)


def test_chamfer_of_a_small_shift_is_the_shift_and_zero_for_the_same_cloud():
    x = grid()
    assert (chamfer(x, x)) == 0
    assert abs((chamfer(x, x + torch.tensor([0.01, 0, 0], dtype=torch.float64))) - 0.01) < 1e-12


def test_fscore_is_one_within_tau_and_zero_beyond():
    x = grid()
    assert (fscore(x, x + torch.tensor([0.015, 0, 0]))) == 1
    assert (fscore(x, x + torch.tensor([0.03, 0, 0]))) == 0
    # half the reference found: recall 1/2, precision 1 -> F = 2/3
    assert abs((fscore(x, x[: len(x) // 2 + 1])) - 2 * (63 / 125) / (1 + 63 / 125)) < 1e-9


def test_volume_iou_counts_points():
    a = torch.tensor([True, True, False, False])
    b = torch.tensor([True, False, True, False])
    assert volume_iou(a, b) == 1 / 3 and volume_iou(a, a) == 1


def test_set_metrics_of_a_set_against_itself_and_against_a_far_set():
    real = torch.stack([grid() * s for s in (1.0, 1.5, 2.0, 2.5)])
    same = generation_scores(real, real.clone())
    assert same["mmd"] == 0 and same["cov"] == 1 and same["nna"] == 0
    far = generation_scores(real, real + 5)
    assert far["nna"] == 1 and far["cov"] == 0.25


def test_one_nna_is_one_half_for_interleaved_sets():
    # points on a line: real at 0, 2, 4, ...; generated at 1, 3, 5, ...: each one's nearest is of the other set
    xs = torch.arange(8, dtype=torch.float64)
    d = (xs[:, None] - xs[None]).abs()
    r, g = xs[::2].long(), xs[1::2].long()
    assert one_nna(d[r][:, r], d[r][:, g], d[g][:, g]) == 0
    # pairs: real 0, 10, 20; generated 0.5, 10.5, 20.5 -> nearest is the other set -> accuracy 0;
    # clusters apart: real 0, 0.1, 0.2; generated 10, 10.1 -> accuracy 1
    a = torch.tensor([0.0, 0.1, 0.2], dtype=torch.float64)[:, None]
    b = torch.tensor([10.0, 10.1], dtype=torch.float64)[:, None]
    assert one_nna(torch.cdist(a, a), torch.cdist(a, b), torch.cdist(b, b)) == 1


def test_pairwise_chamfer_matches_pairs():
    x = torch.stack([grid(), grid() + 0.01])
    y = torch.stack([grid() + 0.01, grid() + 0.5, grid()])
    d = pairwise_chamfer(x, y)
    for i in range(2):
        for j in range(3):
            assert abs(d[i, j] - chamfer(x[i], y[j])) < 1e-12


def box(extent: float) -> dict:
    import trimesh

    mesh = trimesh.creation.box(extents=[extent] * 3)
    return {"vertices": mesh.vertices.astype("float32"), "faces": mesh.faces.astype("int64")}


def test_paired_metrics_compare_each_sample_with_its_own_item():
    from flowcore_shape.metrics import paired_chamfer, paired_iou

    real = [box(0.4), box(0.8)]
    assert paired_chamfer(real, real) < 0.02  # two samplings of the same surface
    # IoU of nested cubes is their volume ratio: (0.4 / 0.8)^3 = 1/8 (4,096 uniform points)
    assert abs(paired_iou(real, real[::-1]) - 0.125) < 0.03
    assert paired_iou(real, real) == 1.0
    empty = {"vertices": real[0]["vertices"][:0], "faces": real[0]["faces"][:0]}
    assert paired_iou([real[0]], [empty]) == 0.0
