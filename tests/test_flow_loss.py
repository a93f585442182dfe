"""The training loss against its definition and the fact that the marginal field minimises it."""

import math

import torch

from flowcore.flow.loss import flow_matching_loss
from flowcore.flow.timesteps import make_loss_weight


def _batch(seed=0, b=64, l=5, c=3):
    g = torch.Generator().manual_seed(seed)
    return ({"a": torch.randn(b, l, c, generator=g) + 2}, {"a": torch.randn(b, l, c, generator=g)},
            torch.rand(b, generator=g))


def _zero(x, t):
    return {k: torch.zeros_like(v) for k, v in x.items()}


def test_zero_field_loss_is_mean_squared_target():
    x0, eps, t = _batch()
    expected = float(((eps["a"] - x0["a"]) ** 2).mean())
    assert math.isclose(float(flow_matching_loss(_zero, x0, eps, t)), expected, rel_tol=1e-6)
    w = make_loss_weight("cosmap")
    weighted = float((((eps["a"] - x0["a"]) ** 2).mean((1, 2)) * w(t)).mean())
    assert math.isclose(float(flow_matching_loss(_zero, x0, eps, t, weight=w)), weighted, rel_tol=1e-6)


def test_padded_tokens_do_not_count():
    x0, eps, t = _batch()
    mask = torch.ones(64, 5, dtype=torch.bool)
    mask[:, 3:] = False
    base = float(flow_matching_loss(_zero, x0, eps, t, mask={"a": mask}))
    x0["a"][:, 3:] = 100.0
    assert math.isclose(float(flow_matching_loss(_zero, x0, eps, t, mask={"a": mask})), base, rel_tol=1e-6)
    real = float(((eps["a"][:, :3] - x0["a"][:, :3]) ** 2).mean())
    assert math.isclose(base, real, rel_tol=1e-6)


def test_marginal_field_minimises_the_loss():
    """For x0 ~ N(2, 0.5^2) the marginal velocity E[eps - x0 | x_t] beats any perturbation of it."""
    g = torch.Generator().manual_seed(1)
    n = 20_000
    x0 = {"a": 2 + 0.5 * torch.randn(n, 1, 1, generator=g, dtype=torch.float64)}
    eps = {"a": torch.randn(n, 1, 1, generator=g, dtype=torch.float64)}
    t = torch.rand(n, generator=g, dtype=torch.float64)

    def field(shift, scale):
        def velocity(x, tt):
            tt = tt.reshape(-1, 1, 1)
            var = (1 - tt) ** 2 * 0.25 + tt ** 2
            return {"a": scale * (-2 + (tt - (1 - tt) * 0.25) / var * (x["a"] - (1 - tt) * 2)) + shift}
        return velocity

    best = float(flow_matching_loss(field(0.0, 1.0), x0, eps, t))
    for shift, scale in ((0.1, 1.0), (-0.1, 1.0), (0.0, 1.1), (0.0, 0.9)):
        assert float(flow_matching_loss(field(shift, scale), x0, eps, t)) > best


def test_per_modality_times_reach_the_model():
    x0, eps, t = _batch()
    x0["b"], eps["b"] = x0["a"].clone(), eps["a"].clone()
    seen = {}

    def velocity(x, times):
        seen.update(times)
        return _zero(x, None)

    times = {"a": torch.zeros(64), "b": torch.ones(64)}
    loss = float(flow_matching_loss(velocity, x0, eps, times))
    assert seen["b"] is times["b"]
    # each noised (sample, modality) pair weighs the same: the mean of the two modalities' losses
    assert math.isclose(loss, float(((eps["a"] - x0["a"]) ** 2).mean()), rel_tol=1e-6)


def test_pseudo_huber_is_lee_et_al_distance_per_value():
    """sqrt(|v_hat - v|^2 + (c sqrt(d))^2) - c sqrt(d) over each sample's d values, divided by sqrt(d)."""
    x0, eps, t = _batch()
    c, d = 0.00054, 5 * 3
    norm = (eps["a"] - x0["a"]).flatten(1).norm(dim=1)
    expected = float((((norm ** 2 + c ** 2 * d).sqrt() - c * math.sqrt(d)) / math.sqrt(d)).mean())
    assert math.isclose(float(flow_matching_loss(_zero, x0, eps, t, huber_c=c)), expected, rel_tol=1e-5)


def test_pseudo_huber_bounds_an_outlier_pull():
    """A sample 100x off pulls the squared loss' gradient 100x harder than a fitted one; pseudo-Huber ~1x."""
    x0, eps, t = _batch(b=2)
    eps["a"][1] = x0["a"][1] + 100 * (eps["a"][0] - x0["a"][0])  # the second target is 100x the first

    def grads(**kw):
        pred = {"a": torch.zeros_like(x0["a"], requires_grad=True)}
        flow_matching_loss(lambda x, tt: pred, x0, eps, t, **kw).backward()
        return pred["a"].grad.flatten(1).norm(dim=1)

    squared, huber = grads(), grads(huber_c=0.00054)
    assert math.isclose(float(squared[1] / squared[0]), 100.0, rel_tol=1e-4)
    assert math.isclose(float(huber[1] / huber[0]), 1.0, rel_tol=1e-3)
