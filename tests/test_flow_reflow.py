"""Minibatch OT against brute force, pair shards round-tripping, and reflow on toy2d.

Measured on the 2-core dev machine (moons, test split, 2000 samples; seeds fixed):
first flow, 400 Adam steps: sliced W2 at 32 Euler steps 0.164 (MMD 0.054); 1 step 0.904 (MMD 1.80).
After one reflow round (2000 pairs, 300 steps) 1 step scores 0.161 (MMD 0.051); after 150 more
steps of 1-step distillation, 0.157.
For scale: an independent copy of moons scores 0.07, N(0, I) scores 0.35.
"""

import itertools
import json

import pytest
import torch

from flowcore.builtins.toy2d import PointMLP, mmd, point_field, sliced_wasserstein
from flowcore.errors import DataError
from flowcore.flow.inversion import generate
from flowcore.flow.ot import ot_coupling
from flowcore.flow.reflow import PairDataset, data_draw, fit, generate_pairs, prior_noise
from flowcore.flow.solvers import make_solver, time_grid
from flowcore.flow.timesteps import make_timestep_sampler
from flowcore.registry import get_registry

pytestmark = pytest.mark.usefixtures("one_thread")


def _cost(x0, eps):
    return float(((x0 - eps) ** 2).sum())


# ----------------------------------------------------------------------------- OT


def test_exact_ot_is_the_best_permutation():
    g = torch.Generator().manual_seed(0)
    x0, eps = torch.randn(7, 1, 2, generator=g), torch.randn(7, 1, 2, generator=g)
    best = min(_cost(x0, eps[list(p)]) for p in itertools.permutations(range(7)))
    paired = ot_coupling(x0, eps, "exact")
    assert _cost(x0, paired) == pytest.approx(best, rel=1e-6)
    assert sorted(paired.flatten().tolist()) == sorted(eps.flatten().tolist())  # a permutation


def test_exact_ot_on_a_dict_uses_the_joint_cost():
    g = torch.Generator().manual_seed(1)
    x0 = {"a": torch.randn(6, 2, 3, generator=g), "b": torch.randn(6, 1, 2, generator=g)}
    eps = {"a": torch.randn(6, 2, 3, generator=g), "b": torch.randn(6, 1, 2, generator=g)}

    def joint(p):
        return sum(_cost(x0[k], eps[k][list(p)]) for k in x0)

    best = min(joint(p) for p in itertools.permutations(range(6)))
    paired = ot_coupling(x0, eps, "exact")
    assert sum(_cost(x0[k], paired[k]) for k in x0) == pytest.approx(best, rel=1e-6)


def test_sinkhorn_approaches_exact_as_regularisation_shrinks():
    g = torch.Generator().manual_seed(2)
    x0, eps = torch.randn(64, 1, 2, generator=g) + 3, torch.randn(64, 1, 2, generator=g)
    exact = _cost(x0, ot_coupling(x0, eps, "exact"))
    independent = _cost(x0, eps)
    sharp = _cost(x0, ot_coupling(x0, eps, "sinkhorn", reg=0.005, iters=500, generator=g))
    blurry = _cost(x0, ot_coupling(x0, eps, "sinkhorn", reg=5.0, generator=g))
    assert exact <= sharp < exact * 1.05
    assert blurry > sharp and exact < independent


def test_ot_coupling_rejects_unequal_batches():
    with pytest.raises(DataError, match="equal"):
        ot_coupling(torch.zeros(3, 2), torch.zeros(4, 2))


# ----------------------------------------------------------------------------- pairs on disk


def _linear_field(x, t):
    return {"a": 0.5 * x["a"] + 1.0}


def test_pairs_round_trip_through_shards(tmp_path):
    noise = prior_noise({"a": (2, 3)})
    files = generate_pairs(_linear_field, noise, 10, tmp_path, steps=4, solver="rk4", batch_size=3, shard_size=4,
                           seed=5)
    assert [f.name for f in files] == ["pairs-00000.safetensors", "pairs-00001.safetensors", "pairs-00002.safetensors"]
    manifest = json.loads((tmp_path / "pairs.json").read_text())
    assert manifest["count"] == 10 and [s["count"] for s in manifest["shards"]] == [4, 4, 2]
    ds = PairDataset(tmp_path)
    assert len(ds) == 10 and ds[3]["eps"]["a"].shape == (2, 3)
    # the pairs are what the solver makes from that noise
    x0 = make_solver("rk4").solve(_linear_field, {"a": ds.eps["a"]}, time_grid(4)).x["a"]
    assert torch.allclose(ds.x0["a"], x0, atol=1e-6)
    # the same seed gives the same pairs, another seed others
    generate_pairs(_linear_field, noise, 10, tmp_path / "again", steps=4, solver="rk4", batch_size=3, shard_size=4,
                   seed=5)
    assert torch.equal(PairDataset(tmp_path / "again").eps["a"], ds.eps["a"])
    generate_pairs(_linear_field, noise, 10, tmp_path / "other", steps=4, solver="rk4", batch_size=3, shard_size=4,
                   seed=6)
    assert not torch.allclose(PairDataset(tmp_path / "other").eps["a"], ds.eps["a"])


def test_prior_noise_is_centred_over_the_real_tokens_only():
    # A centred prior (protein CA translations) must be centred where sampling centres it:
    # over the real tokens, whatever the padding holds.
    from flowcore.flow.path import LinearPath
    mask = torch.tensor([True] * 5 + [False] * 3)
    noise = prior_noise({"a": (8, 3)}, {"a": LinearPath(prior_scale=10.0, centre=True)}, {"a": mask})
    eps = noise(4, torch.Generator().manual_seed(0))["a"]
    assert eps.shape == (4, 8, 3)
    assert torch.allclose(eps[:, :5].mean(1), torch.zeros(4, 3), atol=1e-5)
    assert eps[:, :5].std() > 5.0  # the prior's scale, not collapsed by the centring
    # and an uncentred path's noise is exactly its prior draw
    plain = prior_noise({"a": (8, 3)}, {"a": LinearPath()}, {"a": mask})(4, torch.Generator().manual_seed(0))["a"]
    assert torch.equal(plain, torch.randn((4, 8, 3), generator=torch.Generator().manual_seed(0)))


def test_pair_dataset_errors_name_the_file(tmp_path):
    with pytest.raises(DataError, match="pairs.json"):
        PairDataset(tmp_path)
    generate_pairs(_linear_field, prior_noise({"a": (1, 2)}), 4, tmp_path, steps=2)
    shard = tmp_path / "pairs-00000.safetensors"
    shard.write_bytes(shard.read_bytes()[:40])
    with pytest.raises(DataError, match="pairs-00000"):
        PairDataset(tmp_path)


# ----------------------------------------------------------------------------- toy2d


def _score(model, test, steps):
    eps = {"toy2d": torch.randn(2000, 1, 2, generator=torch.Generator().manual_seed(123))}
    with torch.no_grad():
        x = generate(model, eps, steps, "euler")["toy2d"][:, 0]
    return sliced_wasserstein(test, x), mmd(test, x)


@pytest.mark.slow
def test_toy2d_flow_learns_moons_and_reflow_straightens_it(tmp_path):
    registry = get_registry()
    train = registry.dataset("moons").build("train").points[:, None, :]
    test = registry.dataset("moons").build("test").points
    torch.manual_seed(0)
    mlp = PointMLP()
    model = point_field(mlp)
    fit(model, mlp.parameters(), data_draw({"toy2d": train}, 256), 400, lr=2e-3, seed=0)
    sw32, mmd32 = _score(model, test, 32)
    sw1_before, _ = _score(model, test, 1)
    assert sw32 < 0.22 and mmd32 < 0.09, (sw32, mmd32)  # N(0, I) scores 0.35 / 0.16
    assert sw1_before > 0.6  # one step of a curved flow lands near the mean: the problem reflow fixes

    generate_pairs(model, prior_noise({"toy2d": (1, 2)}), 2000, tmp_path, steps=16, solver="rk4", seed=1)
    pairs = PairDataset(tmp_path)
    fit(model, mlp.parameters(), pairs.draw(256), 300, lr=1e-3, seed=1)
    sw1_after, mmd1_after = _score(model, test, 1)
    assert sw1_after < 0.4 * sw1_before and sw1_after < 0.25, (sw1_before, sw1_after)
    assert mmd1_after < 0.1

    # distillation to 1 step trains only at t = 1 on the same pairs and keeps the 1-step quality
    fit(model, mlp.parameters(), pairs.draw(256), 150, lr=5e-4, seed=2,
        timesteps=make_timestep_sampler("grid", k=1))
    sw1_distilled, _ = _score(model, test, 1)
    assert sw1_distilled < 0.25, sw1_distilled
