"""train.compile: the compiled network computes what the eager one does and saves the same checkpoints.

Compiled with the ``aot_eager`` backend: it traces forward and backward like inductor does but
runs the traced graphs with torch's own kernels, so the test needs no C++ compiler.
"""

import pytest
import torch
import yaml
from torch._dynamo.utils import counters

from flowcore.errors import ConfigError
from flowcore.train.config import load_config
from flowcore.train.module import FlowModule
from flowcore.train.pipeline import train

TRANSFORMER = {"network": "transformer", "hidden": 32, "depth": 1}


def config(tmp_path, registry, **train):
    path = tmp_path / "cfg.yaml"
    path.write_text(yaml.safe_dump({
        "seed": 0, "out_dir": str(tmp_path / "run"), "modalities": {"toy2d": {}}, "data": {"dataset": "moons"},
        "model": TRANSFORMER,
        "train": {"steps": 4, "batch_size": 32, "ema": 0.9, "checkpoint_every": 2, "progress_bar": False,
                  "cpu_threads": 1, **train},
    }))
    return load_config(path, registry=registry)


def loss_and_grads(module: FlowModule, x0) -> tuple[torch.Tensor, list[torch.Tensor]]:
    torch.manual_seed(1)  # the same times and noise for both
    loss, _ = module.flow_loss(x0)
    loss.backward()
    return loss.detach(), [p.grad.clone() for p in module.net.parameters()]


def test_compiled_network_matches_eager_and_keeps_parameter_names(tmp_path, registry):
    eager = FlowModule(config(tmp_path, registry), registry)
    compiled = FlowModule(config(tmp_path, registry, compile=True, compile_backend="aot_eager"), registry)
    compiled.load_state_dict(eager.state_dict())
    assert list(compiled.state_dict()) == list(eager.state_dict())  # no "_orig_mod." in checkpoints

    points = torch.randn(32, 2, generator=torch.Generator().manual_seed(0))
    x0 = {"toy2d": eager.bundles["toy2d"].tokens(points)}
    loss, grads = loss_and_grads(eager, x0)
    counters.clear()
    loss_c, grads_c = loss_and_grads(compiled, x0)
    assert counters["stats"]["unique_graphs"] >= 1  # dynamo really traced the network
    torch.testing.assert_close(loss_c, loss, rtol=1e-5, atol=1e-6)
    for g_c, g in zip(grads_c, grads):
        torch.testing.assert_close(g_c, g, rtol=1e-4, atol=1e-6)


def test_a_compiled_runs_checkpoint_loads_into_an_eager_module(tmp_path, registry):
    cfg = config(tmp_path, registry, compile=True, compile_backend="aot_eager")
    train(cfg, registry)
    last = tmp_path / "run" / "checkpoints" / "last.ckpt"
    state = torch.load(last, map_location="cpu", weights_only=False)
    assert state["global_step"] == 4
    eager = FlowModule(config(tmp_path, registry), registry)
    eager.load_state_dict(state["state_dict"])  # strict: the same names as an eager run's


def test_an_unknown_compile_mode_is_a_config_error(tmp_path, registry):
    with pytest.raises(ConfigError, match="train.compile.*reduce-overhead"):
        config(tmp_path, registry, compile="fastest")
