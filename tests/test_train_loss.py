"""The loss a training step takes is flowcore/flow/loss.py's, and both are the closed form."""

import math

import pytest
import torch

from flowcore.flow.loss import flow_matching_loss
from flowcore.modality import Tokens
from flowcore.train.config import from_dict
from flowcore.train.module import FlowModule

TINY = {"network": "mlp", "hidden": 32, "depth": 2, "time_dim": 8}


def _module(registry, modalities, **flow):
    config = from_dict({"seed": 0, "modalities": modalities, "data": {"dataset": "eight_gaussians_labeled"},
                        "model": TINY,
                        "flow": {"timesteps": "uniform", **flow}, "train": {"ema": 0}}, registry=registry)
    return FlowModule(config, registry)


def _tokens(module, name, values):
    return module.bundles[name].layout(values.shape[0]).with_values(values)


def test_training_loss_is_loss_py_and_the_closed_form(registry):
    """A generated point cloud and a clean label: the step's loss is loss.py's on the same noise and
    times (the label seen clean at t = 0, adding nothing), and that is mean |v_theta(x_t) - (eps - x0)|^2."""
    module = _module(registry, {"toy2d": {}, "label": {"role": "condition", "classes": ["a", "b", "c"]}})
    g = torch.Generator().manual_seed(0)
    b = 16
    x0 = {"toy2d": _tokens(module, "toy2d", torch.randn(b, 1, 2, generator=g)),
          "label": module.bundles["label"].tokens(torch.randint(3, (b,), generator=g))}
    eps = {n: torch.randn(tok.values.shape, generator=g) for n, tok in x0.items()}
    t = torch.rand(b, generator=g)
    module.objective.timesteps = lambda batch, device=None: t
    with torch.no_grad():
        step_loss, parts = module.flow_loss(x0, eps=eps)

    def velocity(x, times):
        return module.net({n: x0[n].with_values(x[n]) for n in x0}, times)

    times = {"toy2d": t, "label": torch.zeros(b)}
    noised = {"toy2d": torch.ones(b, dtype=torch.bool), "label": torch.zeros(b, dtype=torch.bool)}
    with torch.no_grad():
        reference = flow_matching_loss(velocity, {n: tok.values for n, tok in x0.items()}, eps, times, noised=noised)
    assert float(step_loss) == pytest.approx(float(reference), rel=1e-6)

    x_t = (1 - t.view(-1, 1, 1)) * x0["toy2d"].values + t.view(-1, 1, 1) * eps["toy2d"]
    label_in = x0["label"]
    with torch.no_grad():
        v = module.net({"toy2d": x0["toy2d"].with_values(x_t), "label": label_in}, times)["toy2d"]
    closed = float(((v - (eps["toy2d"] - x0["toy2d"].values)) ** 2).mean())
    assert float(step_loss) == pytest.approx(closed, rel=1e-6)
    assert set(parts) == {"toy2d"}  # a condition has no loss to log


def test_flow_distance_pseudo_huber_reaches_the_training_step(registry):
    """flow.distance: pseudo_huber: the step's loss is mean_b sqrt(mse_b + c^2) - c on the same noise and times."""
    c = 0.01
    module = _module(registry, {"toy2d": {}}, distance="pseudo_huber", huber_c=c)
    g = torch.Generator().manual_seed(0)
    x0 = {"toy2d": _tokens(module, "toy2d", torch.randn(16, 1, 2, generator=g))}
    eps = {"toy2d": torch.randn(16, 1, 2, generator=g)}
    t = torch.rand(16, generator=g)
    module.objective.timesteps = lambda batch, device=None: t
    x_t = (1 - t.view(-1, 1, 1)) * x0["toy2d"].values + t.view(-1, 1, 1) * eps["toy2d"]
    with torch.no_grad():
        step_loss, _ = module.flow_loss(x0, eps=eps)
        v = module.net({"toy2d": x0["toy2d"].with_values(x_t)}, {"toy2d": t})["toy2d"]
    mse = ((v - (eps["toy2d"] - x0["toy2d"].values)) ** 2).mean((1, 2))
    assert float(step_loss) == pytest.approx(float(((mse + c * c).sqrt() - c).mean()), rel=1e-6)


def test_each_noised_pair_weighs_the_same(registry):
    """Any-to-any: the loss is the mean over noised (sample, modality) pairs, each scaled by its
    modality's loss_weight; clean and absent pairs add nothing."""
    module = _module(registry, {"toy2d": {"role": "any", "loss_weight": 2.0},
                                "label": {"role": "any", "classes": ["a", "b", "c"]}}, p_clean=0.3, p_absent=0.3)
    module.net = _ConstantVelocity()
    g = torch.Generator().manual_seed(1)
    b = 64
    x0 = {"toy2d": _tokens(module, "toy2d", torch.randn(b, 1, 2, generator=g)),
          "label": module.bundles["label"].tokens(torch.randint(3, (b,), generator=g))}
    eps = {n: torch.randn(tok.values.shape, generator=g) for n, tok in x0.items()}
    torch.manual_seed(3)
    states = module.objective.states(b, torch.device("cpu"))
    torch.manual_seed(3)
    loss, _ = module.flow_loss(x0, eps=eps)
    total, count = 0.0, 0
    for name, weight in (("toy2d", 2.0), ("label", 1.0)):
        per_sample = ((eps[name] - x0[name].values) ** 2).mean((1, 2))  # v_theta = 0
        on = states[name] == 0
        total += float((weight * per_sample[on]).sum())
        count += int(on.sum())
    assert math.isclose(float(loss), total / count, rel_tol=1e-5)


class _ConstantVelocity(torch.nn.Module):
    def forward(self, tokens: dict[str, Tokens], t):
        return {n: torch.zeros_like(tok.values) for n, tok in tokens.items()}
