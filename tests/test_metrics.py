"""The shared metric helpers against closed forms and scipy."""

import math

import numpy as np
import pytest
import scipy.linalg
import torch

from flowcore.errors import DataError
from flowcore.metrics import frechet_distance


def with_moments(mean: torch.Tensor, cov: torch.Tensor, n: int, seed: int) -> torch.Tensor:
    """``n`` float64 samples [n, F] whose sample mean and (unbiased) sample covariance are exactly ``mean``, ``cov``."""
    z = torch.randn(n, len(mean), generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
    z = z - z.mean(0)
    white = z @ torch.linalg.inv(torch.linalg.cholesky(torch.cov(z.T))).T
    return white @ torch.linalg.cholesky(cov).T + mean


def rotation(angle: float) -> torch.Tensor:
    c, s = math.cos(angle), math.sin(angle)
    return torch.tensor([[c, -s], [s, c]], dtype=torch.float64)


def test_gaussians_with_commuting_covariances_give_the_closed_form():
    # S_a = Q diag(4, 1) Q^T, S_b = Q diag(9, 0.25) Q^T: FD = |mu_a - mu_b|^2 + sum (sqrt(l_a) - sqrt(l_b))^2
    q = rotation(0.7)
    mu_a, mu_b = torch.tensor([1.0, -2.0], dtype=torch.float64), torch.tensor([0.5, 1.0], dtype=torch.float64)
    a = with_moments(mu_a, q @ torch.diag(torch.tensor([4.0, 1.0], dtype=torch.float64)) @ q.T, 300, seed=0)
    b = with_moments(mu_b, q @ torch.diag(torch.tensor([9.0, 0.25], dtype=torch.float64)) @ q.T, 200, seed=1)
    expected = 0.5**2 + 3.0**2 + (2.0 - 3.0) ** 2 + (1.0 - 0.5) ** 2
    assert frechet_distance(a, b) == pytest.approx(expected, rel=1e-9)


def test_gaussians_with_any_2x2_covariances_give_the_closed_form():
    # for 2x2: tr sqrt(M) = sqrt(tr M + 2 sqrt(det M)), with M = S_a^1/2 S_b S_a^1/2 (tr M = tr S_a S_b)
    s_a = torch.tensor([[2.0, 0.6], [0.6, 1.0]], dtype=torch.float64)
    s_b = rotation(1.1) @ torch.diag(torch.tensor([3.0, 0.5], dtype=torch.float64)) @ rotation(1.1).T
    mu_a, mu_b = torch.zeros(2, dtype=torch.float64), torch.tensor([1.0, 1.0], dtype=torch.float64)
    a, b = with_moments(mu_a, s_a, 500, seed=2), with_moments(mu_b, s_b, 400, seed=3)
    cross = math.sqrt(float((s_a @ s_b).trace()) + 2 * math.sqrt(float(torch.det(s_a) * torch.det(s_b))))
    expected = 2.0 + float(s_a.trace() + s_b.trace()) - 2 * cross
    assert frechet_distance(a, b) == pytest.approx(expected, rel=1e-9)


def scipy_frechet(a, b):
    """The FID formula as pytorch-fid writes it, with scipy's sqrtm."""
    a, b = a.double().numpy(), b.double().numpy()
    mu1, mu2 = a.mean(0), b.mean(0)
    s1, s2 = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    covmean = scipy.linalg.sqrtm(s1 @ s2).real
    return float(((mu1 - mu2) ** 2).sum() + np.trace(s1 + s2 - 2 * covmean))


def test_frechet_distance_matches_scipy():
    g = torch.Generator().manual_seed(0)
    a = torch.randn(400, 6, generator=g)
    b = torch.randn(300, 6, generator=g) @ torch.randn(6, 6, generator=g) * 0.5 + 0.3
    assert frechet_distance(a, b) == pytest.approx(scipy_frechet(a, b), rel=1e-6)


def test_one_set_is_at_zero_and_a_shift_by_d_is_at_d_squared():
    g = torch.Generator().manual_seed(0)
    a = torch.randn(400, 6, generator=g)
    assert frechet_distance(a, a) == pytest.approx(0.0, abs=1e-6)
    d = torch.tensor([1.0, -2.0, 0.5, 0.0, 0.0, 3.0])
    assert frechet_distance(a, a + d) == pytest.approx(float(d.pow(2).sum()), abs=1e-6)


def test_float32_features_are_measured_in_float64():
    g = torch.Generator().manual_seed(0)
    a, b = torch.randn(50, 4, generator=g), torch.randn(60, 4, generator=g) + 0.5
    assert frechet_distance(a, b) == frechet_distance(a.double(), b.double())


@pytest.mark.parametrize("n_a, n_b", [(1, 5), (5, 1), (0, 5)])
def test_fewer_than_two_samples_on_a_side_is_a_data_error(n_a, n_b):
    with pytest.raises(DataError, match="at least two samples"):
        frechet_distance(torch.zeros(n_a, 3), torch.ones(n_b, 3))
