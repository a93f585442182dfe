"""Paths against their definitions: endpoints, velocities as finite differences, SO(3) geometry.

References: scipy.spatial.transform.Rotation (quaternion <-> matrix/rotation vector) and the
Haar measure's rotation-angle density (1 - cos a) / pi on [0, pi].
"""

import math

import numpy as np
import pytest
import torch
from scipy import stats
from scipy.spatial.transform import Rotation

from flowcore.errors import DataError
from flowcore.flow import so3
from flowcore.flow.path import LinearPath, ProductPath, QuaternionPath


def _gen(seed=0):
    return torch.Generator().manual_seed(seed)


def _scipy(q: torch.Tensor) -> Rotation:
    """flowcore (w, x, y, z) -> scipy (x, y, z, w)."""
    q = q.reshape(-1, 4).double().numpy()
    return Rotation.from_quat(np.concatenate([q[:, 1:], q[:, :1]], 1))


# ----------------------------------------------------------------------------- linear


def test_linear_path_endpoints_velocity_and_prior_scale():
    path = LinearPath(prior_scale=10.0)
    x0 = torch.randn(4, 3, 2, generator=_gen(0))
    eps = path.prior((4, 3, 2), generator=_gen(1))
    assert 8.0 < float(eps.std()) < 12.5
    assert torch.allclose(path.interpolate(x0, eps, torch.zeros(4)).x_t, x0)
    assert torch.allclose(path.interpolate(x0, eps, torch.ones(4)).x_t, eps)
    t, h = torch.full((4,), 0.3, dtype=torch.float64), 1e-6
    fd = (path.interpolate(x0.double(), eps.double(), t + h).x_t
          - path.interpolate(x0.double(), eps.double(), t - h).x_t) / (2 * h)
    assert torch.allclose(path.interpolate(x0.double(), eps.double(), t).v, fd, atol=1e-6)
    assert torch.equal(LinearPath().prior((3, 2), generator=_gen(5)), torch.randn(3, 2, generator=_gen(5)))


# ----------------------------------------------------------------------------- so3 helpers


def test_so3_matrix_exp_log_and_product_match_scipy():
    q = so3.uniform((64,), generator=_gen(0), dtype=torch.float64)
    r = _scipy(q)
    assert np.allclose(so3.to_matrix(q).numpy(), r.as_matrix(), atol=1e-12)
    rotvec = torch.from_numpy(r.as_rotvec())
    assert torch.allclose(so3.log(q), rotvec, atol=1e-10)
    assert torch.allclose(so3.rotation_angle(so3.exp(rotvec), q), torch.zeros(64, dtype=torch.float64), atol=1e-6)
    p = so3.uniform((64,), generator=_gen(1), dtype=torch.float64)
    # Hamilton product = composition: R(p q) = R(p) R(q)
    assert np.allclose(so3.to_matrix(so3.multiply(p, q)).numpy(), (_scipy(p) * r).as_matrix(), atol=1e-12)
    angle = so3.rotation_angle(p, q).numpy()
    assert np.allclose(angle, (_scipy(p).inv() * r).magnitude(), atol=1e-6)
    small = torch.tensor([[1e-9, -2e-9, 3e-9]], dtype=torch.float64)
    assert torch.allclose(so3.log(so3.exp(small)), small, rtol=1e-6, atol=0)


def test_uniform_prior_is_haar():
    """Rotation angles of Haar-uniform rotations have CDF (a - sin a) / pi on [0, pi]."""
    q = QuaternionPath().prior((4000, 1, 4), generator=_gen(3), dtype=torch.float64)
    angle = (2 * torch.acos(q[..., 0].clamp(-1, 1))).flatten().numpy()
    assert (q[..., 0] >= 0).all()
    assert stats.kstest(angle, lambda a: (a - np.sin(a)) / np.pi).pvalue > 0.01
    # axes are isotropic: a fixed unit vector rotated lands uniformly on the sphere (z ~ U(-1, 1))
    z = _scipy(q).apply([0.0, 0.0, 1.0])[:, 2]
    assert stats.kstest(z, stats.uniform(-1, 2).cdf).pvalue > 0.01


# ----------------------------------------------------------------------------- quaternion path


def _pair(n=256, seed=0):
    path = QuaternionPath()
    x0 = path.prior((n, 2, 4), generator=_gen(seed), dtype=torch.float64)
    eps = path.prior((n, 2, 4), generator=_gen(seed + 1), dtype=torch.float64)
    return path, x0, eps


def test_quaternion_path_endpoints_exact_and_unit_norm():
    path, x0, eps = _pair()
    n = x0.shape[0]
    assert torch.allclose(path.interpolate(x0, eps, torch.zeros(n, dtype=torch.float64)).x_t, x0, atol=1e-12)
    assert torch.allclose(path.interpolate(x0, eps, torch.ones(n, dtype=torch.float64)).x_t, eps, atol=1e-12)
    for t in (0.1, 0.5, 0.77):
        x_t = path.interpolate(x0, eps, torch.full((n,), t, dtype=torch.float64)).x_t
        assert torch.allclose(x_t.norm(dim=-1), torch.ones(n, 2, dtype=torch.float64), atol=1e-12)


def test_quaternion_path_geodesic_distance_linear_in_t_and_shortest():
    path, x0, eps = _pair()
    total = so3.rotation_angle(x0, eps)
    assert float(total.max()) <= math.pi + 1e-9
    for t in (0.0, 0.25, 0.5, 0.9, 1.0):
        x_t = path.interpolate(x0, eps, torch.full((x0.shape[0],), t, dtype=torch.float64)).x_t
        assert torch.allclose(so3.rotation_angle(x0, x_t), t * total, atol=1e-6)
        assert torch.allclose(so3.rotation_angle(x_t, eps), (1 - t) * total, atol=1e-6)


def test_quaternion_path_matches_relative_rotation_formula():
    """x_t = x0 * exp(t log(x0^-1 eps)) (ReQFlow), compared as rotations through scipy."""
    path, x0, eps = _pair(64)
    t = 0.37
    x_t = path.interpolate(x0, eps, torch.full((64,), t, dtype=torch.float64)).x_t
    r0, r1 = _scipy(x0), _scipy(eps)
    expected = r0 * Rotation.from_rotvec(t * (r0.inv() * r1).as_rotvec())
    assert np.allclose((_scipy(x_t).inv() * expected).magnitude(), 0, atol=1e-6)


def test_quaternion_velocity_is_finite_difference_and_tangent():
    path, x0, eps = _pair()
    n, h = x0.shape[0], 1e-6
    t = torch.full((n,), 0.4, dtype=torch.float64)
    mid = path.interpolate(x0, eps, t)
    lo, hi = path.interpolate(x0, eps, t - h).x_t, path.interpolate(x0, eps, t + h).x_t
    # leave out tokens whose w is about to change sign (canonicalisation flips them there)
    ok = (mid.x_t[..., 0].abs() > 1e-3)
    fd = (hi - lo) / (2 * h)
    assert ok.float().mean() > 0.95
    assert torch.allclose(mid.v[ok], fd[ok], atol=1e-6)
    assert torch.allclose((mid.v * mid.x_t).sum(-1), torch.zeros(n, 2, dtype=torch.float64), atol=1e-12)
    # |v| on S^3 is half the rotation angle
    assert torch.allclose(mid.v.norm(dim=-1), so3.rotation_angle(x0, eps) / 2, atol=1e-9)


def test_quaternion_sign_ambiguity_is_harmless():
    path, x0, eps = _pair()
    t = torch.rand(x0.shape[0], generator=_gen(9), dtype=torch.float64)
    ref = path.interpolate(x0, eps, t)
    for a, b in ((-x0, eps), (x0, -eps), (-x0, -eps)):
        s = path.interpolate(a, b, t)
        assert torch.allclose(s.x_t, ref.x_t, atol=1e-12)
        assert torch.allclose(s.v, ref.v, atol=1e-12)


def test_quaternion_step_follows_the_geodesic():
    """An Euler step with the path's own velocity lands on the path (exactly, any step size)."""
    path, x0, eps = _pair()
    n = x0.shape[0]
    t, dt = 0.8, -0.5
    s = path.interpolate(x0, eps, torch.full((n,), t, dtype=torch.float64))
    stepped = path.step(s.x_t, s.v, dt)
    target = path.interpolate(x0, eps, torch.full((n,), t + dt, dtype=torch.float64)).x_t
    assert torch.allclose(so3.rotation_angle(stepped, target), torch.zeros(n, 2, dtype=torch.float64), atol=1e-6)
    assert torch.allclose(stepped.norm(dim=-1), torch.ones(n, 2, dtype=torch.float64), atol=1e-12)
    # a velocity with a radial part still leaves the state unit (the radial part is dropped)
    assert torch.allclose(path.step(s.x_t, s.v + 3 * s.x_t, dt), stepped, atol=1e-12)


def test_quaternion_path_rejects_wrong_channels():
    with pytest.raises(DataError, match="4"):
        QuaternionPath().prior((2, 3, 3))


# ----------------------------------------------------------------------------- product


def test_product_path_is_its_parts_side_by_side():
    rot, trans = QuaternionPath(), LinearPath(prior_scale=10.0)
    se3 = ProductPath([(rot, 4), (trans, 3)])
    x0 = torch.cat([rot.prior((8, 5, 4), generator=_gen(0)), torch.randn(8, 5, 3, generator=_gen(1))], -1)
    eps = se3.prior((8, 5, 7), generator=_gen(2))
    assert torch.allclose(eps[..., :4].norm(dim=-1), torch.ones(8, 5), atol=1e-6)
    assert float(eps[..., 4:].std()) > 5
    t = torch.rand(8, generator=_gen(3))
    s = se3.interpolate(x0, eps, t)
    r, l = rot.interpolate(x0[..., :4], eps[..., :4], t), trans.interpolate(x0[..., 4:], eps[..., 4:], t)
    assert torch.equal(s.x_t, torch.cat([r.x_t, l.x_t], -1)) and torch.equal(s.v, torch.cat([r.v, l.v], -1))
    stepped = se3.step(s.x_t, s.v, -0.1)
    assert torch.equal(stepped[..., :4], rot.step(r.x_t, r.v, -0.1))
    assert torch.allclose(stepped[..., 4:], l.x_t - 0.1 * l.v)
    with pytest.raises(DataError, match="7 channels"):
        se3.interpolate(x0[..., :6], eps[..., :6], t)


def test_quaternion_transport_carries_path_velocity_along_the_path():
    """The geodesic's velocity at t1, transported to x_t2, is its velocity at t2 (even across a sign flip)."""
    path, x0, eps = _pair()
    n = x0.shape[0]
    a = path.interpolate(x0, eps, torch.full((n,), 0.9, dtype=torch.float64))
    b = path.interpolate(x0, eps, torch.full((n,), 0.3, dtype=torch.float64))
    moved = path.transport(a.v, a.x_t, b.x_t)
    assert torch.allclose(moved, b.v, atol=1e-9)
    assert torch.allclose(path.transport(-a.v, -a.x_t, b.x_t), b.v, atol=1e-9)
    assert torch.allclose(LinearPath().transport(a.v, a.x_t, b.x_t), a.v)


# ----------------------------------------------------------------------------- centred prior, clean estimate


def test_centred_prior_has_zero_mean_over_real_tokens_and_the_centred_variance():
    """Centring n iid N(0, s^2) draws leaves each with variance s^2 (1 - 1/n) and sum zero."""
    path = LinearPath(prior_scale=2.0, centre=True)
    lengths = torch.tensor([3, 8, 5, 8] * 2000)
    mask = torch.arange(8)[None, :] < lengths[:, None]
    eps = path.masked_prior((len(lengths), 8, 3), mask, generator=_gen(0))
    real = mask[..., None].double()
    assert float(((eps.double() * real).sum(1)).abs().max()) < 1e-4
    for n in (3, 5, 8):
        rows = eps[lengths == n][:, :n].double()
        assert float(rows.var()) == pytest.approx(4.0 * (1 - 1 / n), rel=0.03)
    full = path.prior((6, 8, 3), generator=_gen(1))  # no mask: every token is real
    assert float(full.mean(1).abs().max()) < 1e-5
    plain = LinearPath(prior_scale=2.0)
    assert torch.equal(plain.masked_prior((4, 8, 3), mask[:4], generator=_gen(2)),
                       plain.prior((4, 8, 3), generator=_gen(2)))
    se3 = ProductPath([(QuaternionPath(), 4), (path, 3)])
    both = se3.masked_prior((4, 8, 7), mask[:4], generator=_gen(3))
    assert torch.allclose(both[..., :4].norm(dim=-1), torch.ones(4, 8), atol=1e-6)
    assert float(((both[..., 4:] * mask[:4, :, None]).sum(1)).abs().max()) < 1e-4


@pytest.mark.parametrize("path", [LinearPath(prior_scale=10.0), QuaternionPath(),
                                  ProductPath([(QuaternionPath(), 4), (LinearPath(prior_scale=10.0), 3)])])
def test_clean_estimate_of_the_true_velocity_is_the_data(path):
    channels = {LinearPath: 3, QuaternionPath: 4, ProductPath: 7}[type(path)]
    shape = (16, 5, channels)
    x0 = path.project(path.prior(shape, generator=_gen(0)).double())
    eps = path.prior(shape, generator=_gen(1)).double()
    t = torch.rand(16, generator=_gen(2), dtype=torch.float64)
    s = path.interpolate(x0, eps, t)
    assert torch.allclose(path.clean_estimate(s.x_t, s.v, t), x0, atol=1e-9)
