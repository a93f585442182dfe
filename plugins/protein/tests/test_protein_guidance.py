"""Sampling aids against what they promise: self-conditioning, the clash loss and steric/bond guidance."""

import pytest
import torch

from flowcore.errors import ConfigError
from flowcore.flow import so3
from flowcore.modality import Tokens
from flowcore.registry import get_registry
from flowcore_protein.guidance import BackboneGuidance
from flowcore_protein.modality import Protein
from flowcore_protein.network import FrameNet


def _tokens(samples, modality=None):
    modality = modality or Protein()
    return modality.tokenizer.encode(modality.collate(samples))


def _busy_net(seed=0, **options):
    """A small FrameNet with random gates and head (so it computes something), in eval mode."""
    torch.manual_seed(seed)
    net = FrameNet({"protein": (50, 7)}, hidden=32, depth=2, heads=2, **options)
    for name, p in net.named_parameters():
        if "modulation" in name or name.startswith("head") or "estimate_weight" in name:
            torch.nn.init.normal_(p, std=0.1)
    return net.eval()


def _noisy(tokens, seed=0, t=None):
    path = Protein().path
    g = torch.Generator().manual_seed(seed)
    eps = path.masked_prior(tokens.values.shape, tokens.mask, generator=g)
    t = torch.rand(tokens.batch_size, generator=g) if t is None else t
    sample = path.interpolate(tokens.values, eps, t)
    return tokens.with_values(sample.x_t), t, sample.v


def _line(length, spacing=3.8):
    """frames [L, 7] of a straight chain along x, identity rotations."""
    frames = torch.zeros(length, 7)
    frames[:, 0] = 1.0
    frames[:, 4] = torch.arange(length) * spacing
    return frames


# -- self-conditioning -----------------------------------------------------------------------


def test_estimate_of_the_true_velocity_is_the_data(ideal_samples):
    """x_t - t v with the path's own v gives back the clean CA (in A / 3.8), whatever t."""
    net = _busy_net(self_condition=True)
    clean = _tokens(ideal_samples[:3])
    x_t, t, v = _noisy(clean)
    estimate = net.estimate(x_t, t, v)
    assert torch.allclose(estimate[clean.mask], (clean.values[..., 4:] * 10 / 3.8)[clean.mask], atol=1e-4)


@torch.no_grad()
def test_sampling_feeds_the_previous_estimate_of_the_same_generation(ideal_samples):
    net = _busy_net(self_condition=True)
    x_t, _, _ = _noisy(_tokens(ideal_samples[:2]))
    t1, t2 = torch.full((2,), 0.6), torch.full((2,), 0.5)
    first = net({"protein": x_t}, {"protein": t1})["protein"]
    assert torch.equal(first, net.velocity(x_t, t1, None))  # a first call has no estimate
    second = net({"protein": x_t}, {"protein": t2})["protein"]
    expected = net.velocity(x_t, t2, net.estimate(x_t, t1, first))
    assert torch.allclose(second, expected, atol=1e-6)
    assert not torch.allclose(second, net.velocity(x_t, t2, None), atol=1e-4)  # the estimate matters
    # a new generation (another layout's mask) or a later t starts afresh
    other = Tokens(x_t.values, x_t.positions, x_t.mask.clone())
    assert torch.equal(net({"protein": other}, {"protein": t2})["protein"], net.velocity(other, t2, None))
    later = torch.full((2,), 0.9)
    assert torch.equal(net({"protein": other}, {"protein": later})["protein"], net.velocity(other, later, None))


@torch.no_grad()
def test_self_conditioned_velocity_turns_with_the_input_and_estimate(ideal_samples):
    """Rotating frames, CA and the estimate by g turns the CA velocity by g (invariant features)."""
    net = _busy_net(self_condition=True)
    x_t, t, v = _noisy(_tokens(ideal_samples[:2]))
    estimate = net.estimate(x_t, t, v) + 0.3 * torch.randn(x_t.values.shape[:2] + (3,))
    out = net.velocity(x_t, t, estimate)
    g = so3.uniform((1,), generator=torch.Generator().manual_seed(5)).expand(*x_t.values.shape[:2], 4)
    turned_q = so3.multiply(g, x_t.values[..., :4])
    sign = torch.where(turned_q[..., :1] < 0, -1.0, 1.0)
    r = so3.to_matrix(g[0, 0])
    turned = x_t.with_values(torch.cat([sign * turned_q, x_t.values[..., 4:] @ r.T], -1))
    out2 = net.velocity(turned, t, estimate @ r.T)
    assert torch.allclose(out2[..., 4:], out[..., 4:] @ r.T, atol=1e-4)


def test_missing_estimate_gives_zero_features_and_training_shapes(ideal_samples):
    net = _busy_net(self_condition=True)
    x_t, t, _ = _noisy(_tokens(ideal_samples[:2]))
    q = so3.canonical(x_t.values[..., :4])
    x = x_t.values[..., 4:] * net.scale
    features = net.estimate_features(torch.randn_like(x), x, so3.to_matrix(q), x_t.mask, torch.tensor([False, True]))
    assert float(features[0].abs().max()) == 0.0 and float(features[1].abs().max()) > 0
    net.train()
    torch.manual_seed(1)
    out = [net({"protein": x_t}, {"protein": t})["protein"] for _ in range(4)]  # both branches, by chance
    assert all(o.shape == x_t.values.shape and o.requires_grad for o in out)
    assert float(out[0].detach()[~x_t.mask].abs().max()) == 0.0


# -- the clash loss --------------------------------------------------------------------------


def test_clash_loss_of_two_residues_pushed_together():
    """A straight chain (no pair |i - j| > 2 under 3.8 A) with its last CA moved 2 A from the first:
    the hinge is 2 (3.8 - 2)^2 / L (the pair from both ends); the data itself costs nothing."""
    modality = Protein(clash_weight=1.5)
    true = _line(10)
    moved = true.clone()
    moved[9, 4:] = torch.tensor([0.0, 2.0, 0.0])
    target, predicted = _tokens([true], modality), _tokens([moved], modality)
    t = torch.zeros(1)
    loss = modality.auxiliary_loss(predicted, target, t)
    assert torch.allclose(loss, torch.tensor([1.5 * 2 * 1.8 ** 2 / 10]), atol=1e-4)
    assert float(modality.auxiliary_loss(target, target, t).abs().max()) < 1e-6
    assert float(modality.auxiliary_loss(predicted, target, torch.ones(1))[0]) == 0.0  # t >= aux_t_max
    # a pair the data has at 3.0 A pays only below 3.0 A
    close = _line(10)
    close[9, 4:] = torch.tensor([0.0, 3.0, 0.0])
    nearer = close.clone()
    nearer[9, 4:] = torch.tensor([0.0, 2.5, 0.0])
    assert float(modality.auxiliary_loss(_tokens([close], modality), _tokens([close], modality), t)[0]) < 1e-6
    loss = modality.auxiliary_loss(_tokens([nearer], modality), _tokens([close], modality), t)
    assert torch.allclose(loss, torch.tensor([1.5 * 2 * 0.5 ** 2 / 10]), atol=1e-4)


def test_clash_window_reaches_past_the_backbone_losses_and_tapers():
    """The same built clash (last CA 2 A from the first, hinge 2 (3.8 - 2)^2 / L at full weight) at
    t = 0.5: nothing with the default window (t < aux_t_max = 0.25); with clash_t_max 0.7 the taper
    from 0.25 to 0.7 gives it weight (0.7 - 0.5) / (0.7 - 0.25); a chain without clashes pays nothing."""
    true = _line(10)
    moved = true.clone()
    moved[9, 4:] = torch.tensor([0.0, 2.0, 0.0])
    full = 2 * 1.8 ** 2 / 10
    t = torch.tensor([0.5, 0.1, 0.5, 0.8])
    default = Protein(clash_weight=1.0)
    target, predicted = _tokens([true] * 4, default), _tokens([moved, moved, true, moved], default)
    assert torch.allclose(default.auxiliary_loss(predicted, target, t), torch.tensor([0.0, full, 0.0, 0.0]), atol=1e-5)
    wide = Protein(clash_weight=1.0, clash_t_max=0.7)
    expected = torch.tensor([full * 0.2 / 0.45, full, 0.0, 0.0])
    assert torch.allclose(wide.auxiliary_loss(predicted, target, t), expected, atol=1e-5)
    # the backbone losses keep their own window: a shifted chain at t = 0.5 costs them nothing
    shifted = true.clone()
    shifted[:, 4] += 1.0
    both = Protein(aux_weight=1.0, clash_weight=1.0, clash_t_max=0.7)
    loss = both.auxiliary_loss(_tokens([shifted, shifted], both), _tokens([true, true], both), torch.tensor([0.5, 0.1]))
    assert float(loss[0]) == 0.0 and float(loss[1]) == pytest.approx((1.0 / 10) ** 2, rel=1e-4)
    with pytest.raises(ConfigError, match="clash_t_max: must be <= 1"):
        get_registry().modality("protein", clash_t_max=1.5)


# -- steric / bond guidance ------------------------------------------------------------------


def test_guidance_gradient_two_atoms_and_finite_differences():
    """Two CA 2 A apart (|i - j| = 3 through two far-away residues): dE/dx = -clash (3.8 - 2) u;
    bonds at 4.3 A: bond (4.3 - 3.8) along the bond; every gradient matches finite differences."""
    guidance = BackboneGuidance(clash=2.0, bond=0.0)
    ca = torch.tensor([[[0.0, 0, 0], [10.0, 0, 0], [20.0, 0, 0], [2.0, 0, 0]]], dtype=torch.float64)
    mask = torch.ones(1, 4, dtype=torch.bool)
    grad = guidance.gradient(ca, mask)
    assert torch.allclose(grad[0, 0], torch.tensor([2.0 * 1.8, 0, 0], dtype=torch.float64))
    assert torch.allclose(grad[0, 3], torch.tensor([-2.0 * 1.8, 0, 0], dtype=torch.float64))
    bonds = BackboneGuidance(bond=3.0).gradient(torch.tensor([[[0.0, 0, 0], [4.3, 0, 0]]], dtype=torch.float64),
                                                torch.ones(1, 2, dtype=torch.bool))
    assert torch.allclose(bonds[0, 1], torch.tensor([3.0 * 0.5, 0, 0], dtype=torch.float64))
    both = BackboneGuidance(clash=1.0, bond=0.5)
    g = torch.Generator().manual_seed(0)
    ca = torch.randn(2, 9, 3, generator=g, dtype=torch.float64) * 3
    mask = torch.ones(2, 9, dtype=torch.bool)
    mask[1, 7:] = False
    grad = both.gradient(ca, mask)
    h = 1e-6
    for b, i, k in [(0, 0, 0), (0, 4, 2), (1, 3, 1), (1, 6, 0), (1, 8, 1)]:
        step = torch.zeros_like(ca)
        step[b, i, k] = h
        fd = (both.energy(ca + step, mask)[b] - both.energy(ca - step, mask)[b]) / (2 * h)
        assert abs(float(fd) - float(grad[b, i, k])) < 1e-5
    assert float(grad[1, 7:].abs().max()) == 0.0  # padding neither moves nor pushes


@torch.no_grad()
def test_guidance_off_is_the_plain_sampler_and_on_moves_only_ca_near_the_data(ideal_samples):
    plain = _busy_net()
    guided = _busy_net(guidance={"clash": 5.0, "bond": 5.0, "t_max": 0.3})
    assert _busy_net(guidance={"clash": 0, "bond": 0}).guidance is None
    x_t, _, _ = _noisy(_tokens(ideal_samples[:2]))
    early, late = torch.tensor([0.5, 0.5]), torch.tensor([0.1, 0.1])
    assert torch.equal(plain({"protein": x_t}, {"protein": early})["protein"],
                       guided({"protein": x_t}, {"protein": early})["protein"])
    v, vg = (plain({"protein": x_t}, {"protein": late})["protein"],
             guided({"protein": x_t}, {"protein": late})["protein"])
    assert torch.equal(v[..., :4], vg[..., :4]) and not torch.allclose(v[..., 4:], vg[..., 4:])
    estimate = (x_t.values[..., 4:] - 0.1 * v[..., 4:]) * 10
    expected = v[..., 4:] + guided.guidance.gradient(estimate, x_t.mask) / 10
    assert torch.allclose(vg[..., 4:], expected, atol=1e-5)
    with guided.unaided():  # the core's on-policy distillation rolls the network out without it
        assert torch.equal(guided({"protein": x_t}, {"protein": late})["protein"], v)
    assert torch.equal(guided({"protein": x_t}, {"protein": late})["protein"], vg)  # and back on after
    guided.train()  # training never sees guidance
    assert torch.equal(plain.train()({"protein": x_t}, {"protein": late})["protein"],
                       guided({"protein": x_t}, {"protein": late})["protein"])
    with pytest.raises(ConfigError, match="guidance"):
        FrameNet({"protein": (50, 7)}, guidance={"clsh": 1.0})
