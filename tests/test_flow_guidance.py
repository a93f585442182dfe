"""Guidance on closed-form fields, and the condition-dropout helper's statistics.

Toy any-to-any world: a 2-D target whose coordinate 0 depends only on condition "a" and
coordinate 1 only on condition "b" (each a class with mean +-2, std 0.3). Conditioned on a
class, a coordinate is Gaussian (closed-form rectified-flow field); with the condition dropped
it is the two-class mixture, whose field is the posterior-weighted mix of the class fields.
"""

import math

import pytest
import torch
from scipy import stats

from flowcore.errors import ConfigError
from flowcore.flow.guidance import condition_dropout, guided_velocity
from flowcore.flow.inversion import generate

S = 0.3
MEANS = torch.tensor([-2.0, 2.0], dtype=torch.float64)


pytestmark = pytest.mark.usefixtures("one_thread")


def gaussian_field(x, t, m):
    """Velocity of N(m, S^2) data under x_t = (1 - t) x0 + t eps (elementwise)."""
    var = (1 - t) ** 2 * S ** 2 + t ** 2
    return -m + (t - (1 - t) * S ** 2) / var * (x - (1 - t) * m)


def mixture_field(x, t):
    """Velocity of the equal mixture of N(+-2, S^2): posterior-weighted class fields."""
    var = (1 - t) ** 2 * S ** 2 + t ** 2
    logp = torch.stack([-(x - (1 - t) * m) ** 2 / (2 * var) for m in MEANS])
    w = torch.softmax(logp, 0)
    return sum(w[i] * gaussian_field(x, t, m) for i, m in enumerate(MEANS))


def make_model(labels, calls):
    """velocity_fn(x, t, dropped) for the toy world; labels {"a": [B], "b": [B]} in {0, 1}."""

    def velocity_fn(x, t, dropped):
        calls.append(dropped)
        v, tt = x["xy"], t.reshape(-1, 1)
        out = torch.empty_like(v)
        for dim, name in enumerate(("a", "b")):
            xd = v[:, 0, dim:dim + 1]
            field = mixture_field(xd, tt) if name in dropped else gaussian_field(xd, tt, MEANS[labels[name]][:, None])
            out[:, 0, dim:dim + 1] = field
        return {"xy": out}

    return velocity_fn


def _setup(n=4000):
    g = torch.Generator().manual_seed(0)
    labels = {"a": torch.randint(0, 2, (n,), generator=g), "b": torch.randint(0, 2, (n,), generator=g)}
    eps = {"xy": torch.randn(n, 1, 2, generator=g, dtype=torch.float64)}
    return labels, eps


def test_unit_weights_recover_the_joint_conditional():
    """With conditions acting on separate coordinates, v_u + sum_m (v_m - v_u) is exactly v_ab."""
    labels, eps = _setup()
    calls = []
    model = make_model(labels, calls)
    x = generate(guided_velocity(model, {"a": 1.0, "b": 1.0}), eps, 16, "rk4")["xy"][:, 0]
    target = torch.stack([MEANS[labels["a"]], MEANS[labels["b"]]], 1)
    assert float((x - target).abs().mean()) < 0.3  # per-sample: every point in its class's blob
    resid = (x - target).numpy()
    assert abs(resid.std() - S) < 0.02 and abs(resid.mean()) < 0.02
    # one unconditional call plus one per condition, per velocity evaluation (16 steps x 4 stages)
    assert len(calls) == 3 * 64
    assert set(calls) == {frozenset({"a", "b"}), frozenset({"b"}), frozenset({"a"})}


def test_zero_weight_is_unconditional_and_skips_its_call():
    labels, eps = _setup()
    calls = []
    x = generate(guided_velocity(make_model(labels, calls), {"a": 0.0, "b": 0.0}), eps, 16, "rk4")["xy"][:, 0]
    assert len(calls) == 64
    # unconditional: each coordinate is the +-2 mixture, half the points on each side
    assert abs(float((x[:, 0] > 0).double().mean()) - 0.5) < 0.03
    assert abs(float(x[:, 0].abs().mean()) - 2.0) < 0.05


def test_weight_above_one_pushes_past_the_conditional():
    """CFG with w > 1 extrapolates away from v_u: samples move further from the other class."""
    labels, eps = _setup()
    x1 = generate(guided_velocity(make_model(labels, []), {"a": 1.0}), eps, 16, "rk4")["xy"][:, 0, 0]
    x3 = generate(guided_velocity(make_model(labels, []), {"a": 3.0}), eps, 16, "rk4")["xy"][:, 0, 0]
    sign = MEANS[labels["a"]].sign()
    assert float((sign * x3).mean()) > float((sign * x1).mean()) + 0.05


def test_condition_dropout_rates_and_independence():
    g = torch.Generator().manual_seed(3)
    n = 20_000
    drop = condition_dropout(n, ["text", "audio"], {"text": 0.1, "audio": 0.3}, generator=g)
    assert set(drop) == {"text", "audio"} and drop["text"].dtype == torch.bool and drop["text"].shape == (n,)
    for name, p in (("text", 0.1), ("audio", 0.3)):
        k = int(drop[name].sum())
        assert stats.binomtest(k, n, p).pvalue > 0.001
    both = int((drop["text"] & drop["audio"]).sum())
    assert stats.binomtest(both, n, 0.03).pvalue > 0.001  # independent: p_text * p_audio
    again = condition_dropout(n, ["text", "audio"], {"text": 0.1, "audio": 0.3},
                              generator=torch.Generator().manual_seed(3))
    assert all(torch.equal(drop[k], again[k]) for k in drop)


def test_condition_dropout_rejects_bad_probability():
    with pytest.raises(ConfigError, match="text"):
        condition_dropout(4, ["text"], 1.5)


def test_mixture_field_is_the_mixture_flow():
    """Sanity of the toy world itself: the mixture field carries noise to the +-2 mixture."""
    g = torch.Generator().manual_seed(5)
    eps = torch.randn(4000, 1, 1, generator=g, dtype=torch.float64)
    x = generate(lambda s, t: {"x": mixture_field(s["x"], t.reshape(-1, 1, 1))}, {"x": eps}, 32, "rk4")["x"].flatten()
    # the flow is monotone in 1-D, so it is the quantile map: sign(x) = sign(eps)
    assert bool(((x > 0) == (eps.flatten() > 0)).all())
    assert abs(float(x.abs().mean()) - 2.0) < 0.03 and abs(float(x.abs().std()) - S) < 0.03
    assert math.isfinite(float(x.sum()))
