"""Timestep samplers against their analytic laws (KS tests); shifts and weights at chosen points."""

import math

import numpy as np
import pytest
import torch
from scipy import optimize, stats

from flowcore.errors import ConfigError, UnknownNameError
from flowcore.flow.solvers import time_grid
from flowcore.flow.timesteps import flux_mu, flux_shift, make_loss_weight, make_timestep_sampler, shift_time

N = 20_000


def _draw(name, **kw):
    t = make_timestep_sampler(name, **kw)(N, generator=torch.Generator().manual_seed(0))
    assert t.shape == (N,)
    return t.double().numpy()


def test_uniform_sampler_is_uniform():
    assert stats.kstest(_draw("uniform"), "uniform").pvalue > 0.01


@pytest.mark.parametrize("m,s", [(0.0, 1.0), (1.2, 1.2), (-0.5, 0.7)])
def test_logit_normal_sampler_matches_its_cdf(m, s):
    t = _draw("logit_normal", m=m, s=s)
    assert stats.kstest(t, lambda x: stats.norm.cdf((np.log(x) - np.log1p(-x) - m) / s)).pvalue > 0.01
    # a wrong m is rejected: the test can tell the laws apart
    assert stats.kstest(t, lambda x: stats.norm.cdf((np.log(x) - np.log1p(-x) - m - 0.1) / s)).pvalue < 1e-3


def test_logit_normal_with_a_uniform_share_matches_the_mixture_cdf():
    def logit_cdf(x):
        return stats.norm.cdf((np.log(x) - np.log1p(-x) + 0.4) / 1.0)

    t = _draw("logit_normal", m=-0.4, s=1.0, uniform=0.1)
    assert stats.kstest(t, lambda x: 0.1 * x + 0.9 * logit_cdf(x)).pvalue > 0.01
    assert stats.kstest(t, logit_cdf).pvalue < 1e-3  # the share is there, and is seen
    assert (t > 0.95).mean() == pytest.approx(0.1 * 0.05 + 0.9 * (1 - logit_cdf(0.95)), abs=2e-3)
    with pytest.raises(ConfigError, match="uniform"):
        make_timestep_sampler("logit_normal", uniform=1.5)


@pytest.mark.parametrize("s", [1.29, 0.5, -0.5])
def test_mode_sampler_matches_its_cdf(s):
    """t = f(u) with f(u) = 1 - u - s (cos^2(pi u / 2) - 1 + u) decreasing, so P(T <= t) = 1 - f^-1(t)."""
    def f(u):
        return 1 - u - s * (math.cos(math.pi * u / 2) ** 2 - 1 + u)

    # f^-1 on a fine table, checked against a root finder at a few points
    u = np.linspace(0.0, 1.0, 200_001)
    ft = 1 - u - s * (np.cos(np.pi * u / 2) ** 2 - 1 + u)
    for x in (0.1, 0.5, 0.9):
        assert np.interp(x, ft[::-1], u[::-1]) == pytest.approx(optimize.brentq(lambda v: f(v) - x, 0, 1), abs=1e-5)

    def cdf(t):
        return 1 - np.interp(t, ft[::-1], u[::-1])

    assert stats.kstest(_draw("mode", s=s), cdf).pvalue > 0.01


def test_mode_sampler_rejects_non_monotone_scale():
    with pytest.raises(ConfigError, match="mode"):
        make_timestep_sampler("mode", s=2.0)


def test_grid_sampler_draws_the_k_step_grid():
    t = torch.from_numpy(_draw("grid", k=4, shift=3.0))
    expected = time_grid(4, shift=3.0)[:-1].double()
    assert set(np.round(t.numpy(), 6)) == set(np.round(expected.numpy(), 6))
    counts = torch.stack([(t - e).abs().lt(1e-6).sum() for e in expected]).double()
    assert stats.chisquare(counts.numpy()).pvalue > 0.01


def test_static_shift_published_values():
    """SD3: t' = s t / (1 + (s - 1) t). s = 3 at t = 0.5 gives 0.75; at t = 0.25 gives 0.5."""
    t = torch.tensor([0.0, 0.25, 0.5, 1.0], dtype=torch.float64)
    assert torch.allclose(shift_time(t, 3.0), torch.tensor([0.0, 0.5, 0.75, 1.0], dtype=torch.float64))
    assert torch.equal(shift_time(t, 1.0), t)
    with pytest.raises(ConfigError):
        shift_time(t, 0.0)


def test_flux_shift_published_values():
    """Flux: mu = 0.5 at 256 tokens, 1.15 at 4096; t' = e^mu / (e^mu + 1/t - 1)."""
    assert flux_mu(256) == pytest.approx(0.5) and flux_mu(4096) == pytest.approx(1.15)
    assert flux_mu(2176) == pytest.approx(0.825)  # halfway
    t = torch.tensor([0.5, 0.2], dtype=torch.float64)
    for seq_len, mu in ((256, 0.5), (4096, 1.15), (1024, 0.5 + 0.65 * 768 / 3840)):
        expected = torch.tensor([math.exp(mu) / (math.exp(mu) + 1 / x - 1) for x in (0.5, 0.2)], dtype=torch.float64)
        assert torch.allclose(flux_shift(t, seq_len), expected)
    assert float(flux_shift(torch.tensor([0.5]), 4096)) == pytest.approx(0.75951, abs=1e-5)


def test_cosmap_weight_values():
    w = make_loss_weight("cosmap")(torch.tensor([0.0, 0.5, 1.0]))
    assert torch.allclose(w, torch.tensor([2 / math.pi, 4 / math.pi, 2 / math.pi]))
    assert torch.equal(make_loss_weight("none")(torch.tensor([0.3, 0.9])), torch.ones(2))


def test_unknown_names_say_what_exists():
    with pytest.raises(UnknownNameError, match="logit_normal"):
        make_timestep_sampler("lognormal")
    with pytest.raises(UnknownNameError, match="cosmap"):
        make_loss_weight("cosine")
