"""A modality's auxiliary loss on the clean estimate, against its definition."""

import math

import pytest
import torch
import yaml

from flowcore.builtins.toy2d import Toy2d
from flowcore.hookspecs import hookimpl
from flowcore.modality import Tokens
from flowcore.spec import ModalitySpec
from flowcore.train.config import load_config
from flowcore.train.module import FlowModule

TINY = {"network": "mlp", "hidden": 16, "depth": 1, "time_dim": 8}


class AuxToy(Toy2d):
    """toy2d plus an auxiliary loss: the squared error of the clean estimate, mean over channels."""

    def auxiliary_loss(self, predicted: Tokens, target: Tokens, t: torch.Tensor) -> torch.Tensor:
        return ((predicted.values - target.values) ** 2).mean((1, 2))


class _Plugin:
    @hookimpl
    def flowcore_modalities(self):
        return [ModalitySpec("aux_toy", AuxToy)]


def _module(tmp_path, registry, name):
    registry.register(_Plugin(), name="aux_toy_plugin")
    manifest = tmp_path / "points.jsonl"
    manifest.write_text("".join(f'{{"{name}": [{i % 3}, 1.0]}}\n' for i in range(8)))
    cfg = tmp_path / "cfg.yaml"
    cfg.write_text(yaml.safe_dump({"seed": 0, "out_dir": str(tmp_path / "run"), "modalities": {name: {}},
                                   "data": {"path": str(manifest)}, "model": TINY}))
    return FlowModule(load_config(cfg, registry=registry), registry)


@pytest.mark.parametrize("name", ["toy2d", "aux_toy"])
def test_auxiliary_loss_is_added_on_the_clean_estimate(tmp_path, registry, name):
    """The zero-initialised head predicts v = 0, so the clean estimate is x_t itself and
    x_t - x0 = t (eps - x0): the sample's loss is (1 + t^2) mean (eps - x0)^2 with the
    auxiliary loss, mean (eps - x0)^2 without."""
    module = _module(tmp_path, registry, name)
    g = torch.Generator().manual_seed(0)
    x0 = torch.randn(6, 1, 2, generator=g)
    eps = torch.randn(6, 1, 2, generator=g)
    t = torch.linspace(0.1, 0.9, 6)
    module.objective.timesteps = lambda b, device=None: t
    tokens = Tokens(x0, torch.zeros(6, 1, 1), torch.ones(6, 1, dtype=torch.bool))
    loss, _ = module.flow_loss({name: tokens}, eps={name: eps})
    per_sample = ((eps - x0) ** 2).mean((1, 2))
    factor = 1 + t ** 2 if name == "aux_toy" else torch.ones(6)
    assert math.isclose(float(loss.detach()), float((factor * per_sample).mean()), rel_tol=1e-5)
