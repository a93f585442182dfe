"""MeanFlow: the JVP target against finite differences, and a one-step map learned on a Gaussian
whose average velocity is known in closed form."""

import math

import pytest
import torch
from torch import nn
from torch.nn.attention import SDPBackend, sdpa_kernel

from flowcore.errors import ConfigError
from flowcore.flow.meanflow import meanflow_loss, meanflow_target, sample_interval
from flowcore.flow.solvers import make_solver, time_grid
from flowcore.flow.timesteps import make_timestep_sampler

pytestmark = pytest.mark.usefixtures("one_thread")


class PointU(nn.Module):
    """u(x [B, 1, D], t [B], r [B]) from an MLP on [x, t, t - r]."""

    def __init__(self, dim: int = 2, hidden: int = 128):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(dim + 2, hidden), nn.SiLU(), nn.Linear(hidden, hidden), nn.SiLU(),
                                 nn.Linear(hidden, hidden), nn.SiLU(), nn.Linear(hidden, dim))

    def forward(self, x, t, r):
        h = torch.cat([x["a"][:, 0], t[:, None], (t - r)[:, None]], -1)
        return {"a": self.net(h)[:, None]}


def test_jvp_target_equals_a_central_difference_along_the_flow():
    torch.manual_seed(0)
    u = PointU(dim=3, hidden=32).double()
    b = 6
    z = {"a": torch.randn(b, 1, 3, dtype=torch.float64)}
    v = {"a": torch.randn(b, 1, 3, dtype=torch.float64)}
    t = torch.rand(b, dtype=torch.float64) * 0.8 + 0.2
    r = t * torch.rand(b, dtype=torch.float64)
    target = meanflow_target(u, z, v, t, r)["a"]
    d = 1e-5
    with torch.no_grad():
        ahead = u({"a": z["a"] + d * v["a"]}, t + d, r)["a"]
        behind = u({"a": z["a"] - d * v["a"]}, t - d, r)["a"]
    dudt = (ahead - behind) / (2 * d)
    expected = v["a"] - (t - r)[:, None, None] * dudt
    assert torch.allclose(target, expected, atol=1e-7), (target - expected).abs().max()
    # r = t: the target is v itself, plain flow matching
    assert torch.equal(meanflow_target(u, z, v, t, t)["a"], v["a"])
    # another tangent (improved MeanFlow's: the network's own velocity): v stays, du/dt follows w
    w = {"a": torch.randn(b, 1, 3, dtype=torch.float64)}
    with torch.no_grad():
        along = (u({"a": z["a"] + d * w["a"]}, t + d, r)["a"] - u({"a": z["a"] - d * w["a"]}, t - d, r)["a"]) / (2 * d)
    got = meanflow_target(u, z, v, t, r, tangent=w)["a"]
    assert torch.allclose(got, v["a"] - (t - r)[:, None, None] * along, atol=1e-7)
    assert not torch.allclose(got, target, atol=1e-3)


def test_difference_target_matches_the_jvp_target_in_fp32_and_under_bf16_autocast():
    torch.manual_seed(0)
    u = PointU(dim=3, hidden=32)
    b = 64
    z = {"a": torch.randn(b, 1, 3)}
    v = {"a": torch.randn(b, 1, 3)}
    t = torch.rand(b) * 0.8 + 0.2
    r = t * torch.rand(b)
    exact = meanflow_target(u, z, v, t, r)["a"]
    scale = (exact - v["a"]).norm()  # the (t - r) du/dt term the difference approximates
    got = meanflow_target(u, z, v, t, r, step=1e-3)["a"]
    assert (got - exact).norm() / scale < 1e-3
    with torch.autocast("cpu", dtype=torch.bfloat16):  # the two passes leave autocast: bf16 could not resolve them
        under_autocast = meanflow_target(u, z, v, t, r, step=1e-3)["a"]
    assert torch.equal(under_autocast, got)
    assert torch.equal(meanflow_target(u, z, v, t, t, step=1e-3)["a"], v["a"])


def test_interval_draw_keeps_r_below_t_and_the_equal_fraction():
    g = torch.Generator().manual_seed(0)
    t, r = sample_interval(make_timestep_sampler("logit_normal", m=-0.4, s=1.0), 20000, 0.75, generator=g)
    assert bool((r <= t).all()) and bool(((t > 0) & (t < 1)).all())
    assert abs(float((r == t).double().mean()) - 0.75) < 0.015


def test_gap_draw_spreads_interval_lengths_uniformly_and_keeps_the_samplers_t_at_r_equal_t():
    from scipy import stats

    sampler = make_timestep_sampler("logit_normal", m=-0.4, s=1.0)
    t, r = sample_interval(sampler, 40000, 0.5, generator=torch.Generator().manual_seed(0), draw="gap")
    assert bool((r <= t).all()) and bool((r >= 0).all()) and bool((t <= 1).all())
    interval = r < t
    assert abs(float(interval.double().mean()) - 0.5) < 0.01
    # h = t - r ~ U(0, 1) and, given h, t ~ U(h, 1): (t - h) / (1 - h) is uniform and independent of h
    h = (t - r)[interval].double().numpy()
    assert stats.kstest(h, "uniform").pvalue > 1e-3
    assert stats.kstest(r[interval].double().numpy() / (1 - h), "uniform").pvalue > 1e-3
    # the r = t samples are plain flow matching at the sampler's t (one draw, not the max of two)
    reference = sampler(40000, generator=torch.Generator().manual_seed(1))
    assert stats.ks_2samp(t[~interval].numpy(), reference.numpy()).pvalue > 1e-3
    # the sorted draw puts almost no interval above 0.9 in length; the gap draw one in ten
    ts, rs = sample_interval(sampler, 40000, 0.0, generator=torch.Generator().manual_seed(2))
    assert float(((ts - rs) > 0.9).double().mean()) < 0.001
    assert abs(float((h > 0.9).mean()) - 0.1) < 0.01
    with pytest.raises(ValueError, match="interval draw 'wide'"):
        sample_interval(sampler, 4, 0.5, draw="wide")


def test_split_draw_sorts_two_logit_normals_of_their_own_means():
    from scipy import stats

    sampler = make_timestep_sampler("logit_normal", m=-0.4, s=1.0)
    t, r = sample_interval(sampler, 40000, 0.5, generator=torch.Generator().manual_seed(0), draw="split",
                           split_means=(0.4, -1.2))
    interval = r < t
    assert abs(float(interval.double().mean()) - 0.5) < 0.01
    # with A = logit-normal(0.4, 1) and B = logit-normal(-1.2, 1) independent, t = max(A, B) and
    # r = min(A, B): P(t <= x) = F_A(x) F_B(x) and P(r > x) = (1 - F_A(x)) (1 - F_B(x))
    def cdf(x, m):
        return stats.norm.cdf(stats.logistic.ppf(x) - m)

    assert stats.kstest(t[interval].double().numpy(), lambda x: cdf(x, 0.4) * cdf(x, -1.2)).pvalue > 1e-3
    assert stats.kstest(r[interval].double().numpy(),
                        lambda x: 1 - (1 - cdf(x, 0.4)) * (1 - cdf(x, -1.2))).pvalue > 1e-3
    reference = sampler(40000, generator=torch.Generator().manual_seed(1))
    assert stats.ks_2samp(t[~interval].numpy(), reference.numpy()).pvalue > 1e-3


MU = torch.tensor([1.0, -2.0])
SIGMA = torch.tensor([0.5, 2.0])


def exact_map(z: torch.Tensor, t: float, r: float) -> torch.Tensor:
    """The flow map z_t -> z_r of x0 ~ N(MU, diag SIGMA^2), eps ~ N(0, I), z_t = (1 - t) x0 + t eps.

    Per coordinate z_t ~ N(a(t), b(t)^2) with a = (1 - t) mu, b^2 = (1 - t)^2 sigma^2 + t^2; the
    ODE of a 1-D Gaussian flow is the monotone map between its marginals, z_r = a(r) + b(r) (z_t - a(t)) / b(t).
    """
    def a(s):
        return (1 - s) * MU

    def b(s):
        return torch.sqrt((1 - s) ** 2 * SIGMA ** 2 + s ** 2)

    return a(r) + b(r) * (z - a(t)) / b(t)


def test_one_step_map_on_a_gaussian_is_close_to_the_exact_transport():
    torch.manual_seed(0)
    u = PointU(hidden=64)
    steps = 1000
    opt = torch.optim.Adam(u.parameters(), lr=1e-2)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(opt, steps)
    sampler = make_timestep_sampler("uniform")
    for _ in range(steps):
        x0 = {"a": (MU + SIGMA * torch.randn(256, 2))[:, None]}
        eps = {"a": torch.randn(256, 1, 2)}
        t, r = sample_interval(sampler, 256, 0.25)
        loss = meanflow_loss(u, x0, eps, t, r, p=0.5, c=1e-3)
        opt.zero_grad()
        loss.backward()
        opt.step()
        schedule.step()
    z1 = torch.randn(4000, 1, 2, generator=torch.Generator().manual_seed(1))
    solver = make_solver("meanflow")
    with torch.no_grad():
        one = solver.solve(u, {"a": z1}, time_grid(1)).x["a"][:, 0]
        two = solver.solve(u, {"a": z1}, time_grid(2)).x["a"][:, 0]
        half = u({"a": z1}, torch.ones(4000), torch.full((4000,), 0.5))["a"][:, 0]
    exact = exact_map(z1[:, 0], 1.0, 0.0)  # = MU + SIGMA z1
    assert torch.allclose(exact, MU + SIGMA * z1[:, 0], atol=1e-6)
    err = float((one - exact).pow(2).sum(-1).mean().sqrt())
    # one Euler step of the exact velocity lands every sample on MU (v(z, 1) = z - MU): error |SIGMA z1|
    euler = float((SIGMA * z1[:, 0]).pow(2).sum(-1).mean().sqrt())
    assert err < 0.1 * euler, (err, euler)  # ~0.09 against ~2.09 measured
    assert float((two - exact).pow(2).sum(-1).mean().sqrt()) < 0.1 * euler
    # the average velocity over [0.5, 1] too: (z_1 - z_0.5) / 0.5
    avg = (z1[:, 0] - exact_map(z1[:, 0], 1.0, 0.5)) / 0.5
    assert float((half - avg).pow(2).sum(-1).mean().sqrt()) < 0.15 * math.sqrt(float(avg.pow(2).sum(-1).mean()))
    # the moments of the one-step samples are the data's
    assert torch.allclose(one.mean(0), MU, atol=0.1) and torch.allclose(one.std(0), SIGMA, atol=0.1)


def _gauss_ab(s: torch.Tensor):
    s = s[:, None, None]
    return (1 - s) * MU, torch.sqrt((1 - s) ** 2 * SIGMA ** 2 + s ** 2)


def exact_u(x, t, r):
    """The exact average velocity of the Gaussian flow, (z_t - z_r) / (t - r) (v itself at r = t)."""
    (at, bt), (ar, br) = _gauss_ab(t), _gauss_ab(r)
    z = x["a"]
    h = (t - r)[:, None, None]
    # z_t - z_r = (at - ar) + (bt - br) (z - at) / bt; divided by h, with the r -> t limit where h = 0
    safe = torch.where(h > 0, h, torch.ones_like(h))
    return {"a": torch.where(h > 0, ((at - ar) + (bt - br) * (z - at) / bt) / safe, exact_v(x, t)["a"])}


def exact_v(x, t):
    s = t[:, None, None]
    a, b = _gauss_ab(t)
    da, db = -MU, ((s - 1) * SIGMA ** 2 + s) / b  # d/ds of a and b
    return {"a": da + db * (x["a"] - a) / b}


def test_both_identities_hold_at_the_exact_average_velocity_and_not_away_from_it():
    from flowcore.flow.meanflow import lagrangian_target

    g = torch.Generator().manual_seed(0)
    t = 0.1 + 0.9 * torch.rand(64, generator=g, dtype=torch.float64)
    r = t * torch.rand(64, generator=g, dtype=torch.float64)
    z = {"a": torch.randn(64, 1, 2, generator=g, dtype=torch.float64)}
    want = exact_u(z, t, r)["a"]
    lagrangian = lagrangian_target(exact_u, z, t, r, exact_v)["a"]
    eulerian = meanflow_target(exact_u, z, exact_v(z, t), t, r)["a"]
    assert torch.allclose(lagrangian, want, atol=1e-9) and torch.allclose(eulerian, want, atol=1e-9)

    def off(x, tt, rr):  # an error that grows with the interval: not a fixed point of either
        return {"a": exact_u(x, tt, rr)["a"] + 0.3 * (tt - rr)[:, None, None] * x["a"]}

    assert (lagrangian_target(off, z, t, r, exact_v)["a"] - off(z, t, r)["a"]).abs().max() > 0.05
    assert (meanflow_target(off, z, exact_v(z, t), t, r)["a"] - off(z, t, r)["a"]).abs().max() > 0.05


def test_lagrangian_training_with_the_exact_velocity_learns_the_one_step_transport():
    from flowcore.flow.meanflow import lagrangian_target

    torch.manual_seed(0)
    u = PointU(hidden=64)
    steps = 1000
    opt = torch.optim.Adam(u.parameters(), lr=1e-2)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(opt, steps)
    for _ in range(steps):
        x0, eps = MU + SIGMA * torch.randn(256, 2), torch.randn(256, 2)
        t, r = sample_interval(make_timestep_sampler("uniform"), 256, 0.25)
        z = {"a": ((1 - t[:, None]) * x0 + t[:, None] * eps)[:, None]}
        target = lagrangian_target(u, z, t, r, exact_v)
        loss = (u(z, t, r)["a"] - target["a"]).pow(2).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        schedule.step()
    z1 = torch.randn(4000, 1, 2, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        one = make_solver("meanflow").solve(u, {"a": z1}, time_grid(1)).x["a"][:, 0]
    exact = exact_map(z1[:, 0], 1.0, 0.0)
    err = float((one - exact).pow(2).sum(-1).mean().sqrt())
    euler = float((SIGMA * z1[:, 0]).pow(2).sum(-1).mean().sqrt())  # one Euler step's error
    assert err < 0.1 * euler, (err, euler)  # ~0.06 against ~2.09 measured


def test_meanflow_solver_needs_an_average_velocity_network(registry):
    from flowcore.train.config import from_dict
    from flowcore.train.networks import build_network

    raw = {"modalities": {"toy2d": {}}, "data": {"dataset": "moons"}, "model": {"hidden": 16, "depth": 1}}
    config = from_dict(raw, registry=registry)
    from flowcore.train.bundle import build_bundles

    bundles = build_bundles(config, registry)
    plain = build_network(config, {n: b.modality for n, b in bundles.items()})
    assert not any("interval" in k for k in plain.state_dict())  # runs saved before load unchanged
    x = {"toy2d": torch.randn(4, 1, 2)}
    from flowcore.train.sampling import make_velocity

    layouts = {"toy2d": bundles["toy2d"].layout(4, "cpu")}
    velocity = make_velocity(plain, bundles, layouts, {}, torch.Generator())
    with pytest.raises(ConfigError, match="flow.objective: meanflow"):
        make_solver("meanflow").solve(velocity, x, time_grid(1))
    mean = build_network(from_dict({**raw, "flow": {"objective": "meanflow"}}, registry=registry),
                         {n: b.modality for n, b in bundles.items()})
    assert set(plain.state_dict()) < set(mean.state_dict())
    mean.load_state_dict(plain.state_dict(), strict=False)
    # without r (h = 0) the average-velocity network is an ordinary velocity field
    out = make_solver("euler").solve(make_velocity(mean, bundles, layouts, {}, torch.Generator()), x, time_grid(2))
    assert out.nfe == 2


@pytest.mark.parametrize("model", [{"network": "mlp", "hidden": 32, "depth": 1},
                                   {"network": "transformer", "transformer": {
                                       "hidden_size": 32, "num_heads": 2, "depth_double": 1, "depth_single": 1}}])
@pytest.mark.parametrize("tangent", ["sample", "model"])
def test_the_training_objective_reaches_the_interval_embedding(registry, model, tangent):
    """flow.objective meanflow with guidance in the target, through FlowObjective (JVP through attention too)."""
    from flowcore.train.bundle import build_bundles
    from flowcore.train.config import from_dict
    from flowcore.train.networks import build_network
    from flowcore.train.objective import FlowObjective
    from flowcore.train.sampling import tokens_of

    config = from_dict({"modalities": {"toy2d": {}, "label": {"role": "condition", "num_classes": 2, "dropout": 0.2}},
                        "data": {"dataset": "eight_gaussians_labeled", "options": {"classes": 2}}, "model": model,
                        "flow": {"objective": "meanflow", "meanflow": {"cfg": 2.0, "cfg_kappa": 0.5, "p_equal": 0.25,
                                                                       "tangent": tangent}}},
                       registry=registry)
    bundles = build_bundles(config, registry)
    net = build_network(config, {n: b.modality for n, b in bundles.items()})
    ds = registry.dataset("eight_gaussians_labeled").build("train", classes=2)
    items = [ds[i] for i in range(16)]
    x0 = {n: tokens_of(b, [it[n] for it in items], "cpu") for n, b in bundles.items()}
    torch.manual_seed(0)
    before = {k: p.detach().clone() for k, p in net.named_parameters() if "interval" in k}
    opt = torch.optim.Adam(net.parameters(), lr=1e-2)
    objective = FlowObjective(config, bundles)
    for _ in range(3):  # the zero-initialised output head passes no gradient inward at the first step
        out = objective(net, x0)
        assert torch.isfinite(out.loss) and float(out.per_modality["toy2d"].detach()) > 0
        opt.zero_grad()
        out.loss.backward()
        opt.step()
    moved = [k for k, p in net.named_parameters() if k in before and not torch.equal(p, before[k])]
    assert before and moved
    with pytest.raises(ConfigError, match="dropout > 0"):
        from_dict({"modalities": {"toy2d": {}, "label": {"role": "condition", "num_classes": 2}},
                   "data": {"dataset": "eight_gaussians_labeled", "options": {"classes": 2}},
                   "flow": {"objective": "meanflow", "meanflow": {"cfg": 2.0}}}, registry=registry)
    with pytest.raises(ConfigError, match="flow.distance"):
        from_dict({"modalities": {"toy2d": {}}, "data": {"dataset": "eight_gaussians"},
                   "flow": {"objective": "meanflow", "distance": "pseudo_huber"}}, registry=registry)


@pytest.mark.parametrize("model", [{"network": "mlp", "hidden": 32, "depth": 1},
                                   {"network": "transformer", "transformer": {
                                       "hidden_size": 32, "num_heads": 2, "depth_double": 1, "depth_single": 1}}])
def test_the_difference_derivative_gives_the_jvp_loss(registry, model):
    """flow.meanflow.derivative: difference draws nothing at random, so one seed gives the same batch
    and a loss within the difference's error of the JVP's; it refuses the lagrangian identity."""
    from flowcore.train.bundle import build_bundles
    from flowcore.train.config import from_dict
    from flowcore.train.networks import build_network
    from flowcore.train.objective import FlowObjective
    from flowcore.train.sampling import tokens_of

    def config(derivative):
        return from_dict({"modalities": {"toy2d": {}, "label": {"role": "condition", "num_classes": 2,
                                                                "dropout": 0.2}},
                          "data": {"dataset": "eight_gaussians_labeled", "options": {"classes": 2}}, "model": model,
                          "flow": {"objective": "meanflow", "meanflow": {"cfg": 1.0, "cfg_kappa": 0.5, "p_equal": 0.0,
                                                                         "norm_p": 0.0, "derivative": derivative}}},
                         registry=registry)

    jvp, difference = config("jvp"), config("difference")
    bundles = build_bundles(jvp, registry)
    torch.manual_seed(1)
    net = build_network(jvp, {n: b.modality for n, b in bundles.items()})
    for p in net.parameters():  # away from the zero-initialised head, so du/dt is not zero
        p.data.add_(0.1 * torch.randn_like(p))
    ds = registry.dataset("eight_gaussians_labeled").build("train", classes=2)
    items = [ds[i] for i in range(32)]
    x0 = {n: tokens_of(b, [it[n] for it in items], "cpu") for n, b in bundles.items()}
    losses = []
    for cfg in (jvp, difference):
        torch.manual_seed(0)
        losses.append(float(FlowObjective(cfg, bundles)(net, x0).loss.detach()))
    # every sample is an interval whose target is mostly (t - r) du/dt; the step's O(step^2) error
    # against the time embedding's fastest periods leaves under 0.5%
    assert losses[0] > 0 and losses[1] == pytest.approx(losses[0], rel=1e-2)
    with pytest.raises(ConfigError, match="derivative: difference"):
        from_dict({"modalities": {"toy2d": {}}, "data": {"dataset": "eight_gaussians"},
                   "flow": {"objective": "meanflow", "meanflow": {"derivative": "difference", "identity": "lagrangian",
                                                                  "teacher": "runs/x"}}}, registry=registry)


@pytest.mark.parametrize("network", ["mlp", "transformer"])
def test_time_scale_one_keeps_the_network_smooth_in_t(registry, network):
    """At time_scale 1000 the exact du/dt is mostly turns faster than 0.02 in t, which the target
    multiplies by t - r; at time_scale 1 it is what a difference over 0.04 in t sees."""
    from flowcore.modality import Tokens
    from flowcore.train.bundle import build_bundles
    from flowcore.train.config import from_dict
    from flowcore.train.networks import build_network

    def mismatch(scale):
        model = ({"network": "mlp", "hidden": 64, "time_scale": scale} if network == "mlp" else
                 {"network": "transformer", "transformer": {"hidden_size": 32, "num_heads": 2, "depth_double": 1,
                                                            "depth_single": 1, "time_scale": scale}})
        config = from_dict({"modalities": {"toy2d": {}}, "data": {"dataset": "eight_gaussians"}, "model": model,
                            "flow": {"objective": "meanflow"}}, registry=registry)
        bundles = build_bundles(config, registry)
        torch.manual_seed(0)
        net = build_network(config, {n: b.modality for n, b in bundles.items()})
        for p in net.parameters():  # a trained-looking network: the zero head would hide every turn
            p.data.add_(0.2 * torch.randn_like(p))
        x = torch.randn(64, 1, 2)
        tokens = Tokens(x, torch.zeros(64, 1, 1), torch.ones(64, 1, dtype=torch.bool))
        t, r = torch.rand(64) * 0.8 + 0.1, torch.zeros(64)

        def u(tt):
            return net({"toy2d": tokens}, {"toy2d": tt}, {"toy2d": r})["toy2d"]

        with torch.no_grad(), sdpa_kernel(SDPBackend.MATH):  # flash attention has no forward-mode rule
            _, exact = torch.func.jvp(u, (t,), (torch.ones_like(t),))
            wide = (u(t + 0.02) - u(t - 0.02)) / 0.04
        return float((exact - wide).norm() / exact.norm())

    assert mismatch(1.0) < 0.05
    assert mismatch(1000.0) > 0.5


def test_kappa_reads_the_conditional_velocity_of_r_equal_t_samples_from_the_prediction(registry):
    """Guidance in the target takes u(z, t, t | c) from the loss's own pass where r = t; the result equals
    a separate conditional pass over the whole batch (the straightforward form)."""
    from flowcore.flow.meanflow import guided_target_velocity
    from flowcore.train.bundle import build_bundles
    from flowcore.train.config import from_dict
    from flowcore.train.objective import ABSENT, CLEAN, NOISED, FlowObjective

    config = from_dict({"modalities": {"toy2d": {}, "label": {"role": "condition", "num_classes": 2, "dropout": 0.2}},
                        "data": {"dataset": "eight_gaussians_labeled", "options": {"classes": 2}},
                        "flow": {"objective": "meanflow", "meanflow": {"cfg": 1.0, "cfg_kappa": 0.5}}},
                       registry=registry)
    objective = FlowObjective(config, build_bundles(config, registry))
    g = torch.Generator().manual_seed(0)
    b = 12
    z = {"toy2d": torch.randn(b, 1, 2, generator=g), "label": torch.randn(b, 1, 2, generator=g)}
    v = {"toy2d": torch.randn(b, 1, 2, generator=g)}
    t, r = sample_interval(make_timestep_sampler("uniform"), b, 0.5, generator=g)
    states = {"toy2d": torch.full((b,), NOISED), "label": torch.where(torch.rand(b, generator=g) < 0.7, CLEAN, ABSENT)}

    def u_on(idx, drop=frozenset()):  # a smooth stand-in field that sees z, t, r and whether the label is there
        def u(zz, tb, rb):
            lab = 0.0 if drop else 1.0
            return {"toy2d": torch.sin(zz["toy2d"] * (1 + tb[:, None, None])) + rb[:, None, None] * lab}
        return u

    everyone = torch.arange(b)
    pred = u_on(everyone)(z, t, r)
    interval = (t > r).nonzero().squeeze(1)
    assert 0 < len(interval) < b
    own = objective.own_velocity(u_on, z, t, pred, interval)
    assert torch.allclose(own["toy2d"], u_on(everyone)(z, t, t)["toy2d"])
    got = objective.guided_target(u_on, z, v, t, states, own)
    keep = states["label"] == CLEAN
    want = guided_target_velocity(v, u_on(everyone)(z, t, t), u_on(everyone, drop={"label"})(z, t, t), keep, 1.0, 0.5)
    assert torch.allclose(got["toy2d"], want["toy2d"])


def test_x_prediction_hands_on_the_velocity_its_clean_estimate_implies(registry):
    """model.prediction x: the same weights read as a clean estimate x give u = (z - x) / max(t, 0.05), so
    one pass from t = 1 returns x itself; the weights keep their names (a velocity run's state loads)."""
    from flowcore.modality import Tokens
    from flowcore.train.bundle import build_bundles
    from flowcore.train.config import from_dict
    from flowcore.train.networks import build_network

    raw = {"modalities": {"toy2d": {}}, "data": {"dataset": "moons"}, "model": {"hidden": 16, "depth": 1},
           "flow": {"objective": "meanflow"}}
    config = from_dict(raw, registry=registry)
    bundles = build_bundles(config, registry)
    modalities = {n: b.modality for n, b in bundles.items()}
    velocity = build_network(config, modalities)
    x_config = from_dict({**raw, "model": {**raw["model"], "prediction": "x"}}, registry=registry)
    clean = build_network(x_config, modalities)
    clean.load_state_dict(velocity.state_dict())

    layout = bundles["toy2d"].layout(5, "cpu")
    z = torch.randn(layout.values.shape)
    tokens = {"toy2d": Tokens(z, layout.positions, layout.mask)}
    t = torch.tensor([1.0, 0.7, 0.3, 0.05, 0.01])
    r = torch.tensor([0.0, 0.2, 0.3, 0.0, 0.0])
    x = velocity(tokens, {"toy2d": t}, {"toy2d": r})["toy2d"]
    u = clean(tokens, {"toy2d": t}, {"toy2d": r})["toy2d"]
    floor = t.clamp_min(0.05)[:, None, None]
    assert torch.allclose(u, (z - x) / floor, atol=1e-6)
    assert torch.allclose(z[0] - u[0], x[0], atol=1e-6)  # one pass from noise: the clean estimate
