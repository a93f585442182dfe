"""The training-speed switches: train.compile (auto), train.kernels, train.fused_optimizer and the
backbone's selective activation checkpointing (model.transformer.checkpointing).

Each switch must leave the arithmetic alone: a compiled step, a fused optimizer and a checkpointed
block compute what the eager, foreach, stored-activation path computes (compiled with
``aot_eager``, fp32, so the test needs no C++ compiler).
"""

import pytest
import torch
import yaml

from flowcore import kernels
from flowcore.errors import ConfigError
from flowcore.nn import FlowTransformer, FlowTransformerConfig, StreamConfig
from flowcore.nn.tiny import tiny_transformer
from flowcore.train.config import load_config
from flowcore.train.module import FlowModule, compile_mode, make_optimizer
from flowcore.train.pipeline import train

TRANSFORMER = {"network": "transformer", "hidden": 32, "depth": 1,
               "transformer": {"hidden_size": 32, "num_heads": 2, "depth_double": 1, "depth_single": 1,
                               "frequency_dim": 16}}


def write_config(tmp_path, model=None, **train):
    path = tmp_path / "cfg.yaml"
    path.write_text(yaml.safe_dump({
        "seed": 0, "out_dir": str(tmp_path / "run"), "modalities": {"toy2d": {}}, "data": {"dataset": "moons"},
        "model": model or TRANSFORMER,
        "train": {"steps": 2, "batch_size": 32, "ema": 0.9, "checkpoint_every": 2, "progress_bar": False,
                  "cpu_threads": 1, "accelerator": "cpu", **train},
    }))
    return path


def config(tmp_path, registry, model=None, **train):
    return load_config(write_config(tmp_path, model, **train), registry=registry)


# ----------------------------------------------------------------------------- train.compile


def test_compile_auto_compiles_on_cuda_only():
    assert compile_mode("auto", "cpu") is None
    assert compile_mode("auto", "cuda") == compile_mode("auto", "gpu") == "default"
    assert compile_mode(False, "cuda") is None and compile_mode(True, "cpu") == "default"
    assert compile_mode("reduce-overhead", "cuda") == "reduce-overhead"


def test_the_default_config_trains_eagerly_on_cpu(tmp_path, registry):
    module = FlowModule(config(tmp_path, registry), registry)
    assert module.config.train.compile == "auto"
    assert all(m._compiled_call_impl is None for m in module.net.modules())  # nothing compiled
    compiled = FlowModule(config(tmp_path, registry, compile="max-autotune-no-cudagraphs",
                                 compile_backend="aot_eager"), registry)
    transformer = compiled.net.transformer
    blocks = [*transformer.double_blocks, *transformer.single_blocks]
    assert [m for m in compiled.net.modules() if m._compiled_call_impl is not None] == blocks  # compile_scope blocks
    whole = FlowModule(config(tmp_path, registry, compile=True, compile_backend="aot_eager",
                              compile_scope="network"), registry)
    assert [m for m in whole.net.modules() if m._compiled_call_impl is not None] == [whole.net]


def one_step(module: FlowModule, x0, fused) -> list[torch.Tensor]:
    """Weights after one AdamW step on the flow loss of ``x0`` (fixed times and noise)."""
    cfg = module.config.model_copy(update={"train": module.config.train.model_copy(
        update={"fused_optimizer": fused, "weight_decay": 0.01})})
    opt = make_optimizer(module.net.parameters(), cfg)["optimizer"]
    torch.manual_seed(1)
    loss, _ = module.flow_loss(x0)
    loss.backward()
    opt.step()
    return [p.detach().clone() for p in module.net.parameters()]


@pytest.mark.parametrize("scope", ["blocks", "network"])
def test_a_compiled_step_with_the_fused_optimizer_gives_the_eager_foreach_weights(tmp_path, registry, scope):
    eager = FlowModule(config(tmp_path, registry), registry)
    compiled = FlowModule(config(tmp_path, registry, compile=True, compile_backend="aot_eager", compile_scope=scope),
                          registry)
    with torch.no_grad():  # a fresh network's gates and head are zero: make every weight get a gradient
        for p in eager.net.parameters():
            p.add_(0.1 * torch.randn_like(p))
    compiled.load_state_dict(eager.state_dict())
    points = torch.randn(32, 2, generator=torch.Generator().manual_seed(0))
    x0 = {"toy2d": eager.bundles["toy2d"].tokens(points)}
    before = [p.detach().clone() for p in eager.net.parameters()]
    reference = one_step(eager, x0, fused=False)
    fast = one_step(compiled, x0, fused=True)
    moved = 0
    for b, r, f in zip(before, reference, fast):
        torch.testing.assert_close(f, r, rtol=1e-5, atol=1e-6)
        moved += int(not torch.equal(b, r))
    assert moved == len(before)  # the step really changed every weight


def test_fused_optimizer_auto_is_foreach_on_cpu(tmp_path, registry):
    cfg = config(tmp_path, registry)
    opt = make_optimizer([torch.nn.Parameter(torch.zeros(3))], cfg)["optimizer"]
    assert opt.defaults["foreach"] and not opt.defaults["fused"]
    cfg = config(tmp_path, registry, fused_optimizer=True, optimizer="sgd")
    opt = make_optimizer([torch.nn.Parameter(torch.zeros(3))], cfg)["optimizer"]
    assert opt.defaults["fused"] and not opt.defaults["foreach"]


def test_train_kernels_sets_the_backends_dispatch(tmp_path, registry):
    try:
        train(config(tmp_path, registry, kernels="reference", steps=1), registry)
        assert kernels.get_backend() == "reference"
    finally:
        kernels.set_backend("auto")


@pytest.mark.parametrize("key, value, expected", [
    ("compile", "fastest", "train.compile.*auto.*reduce-overhead"),
    ("kernels", "cuda", "train.kernels.*triton.*reference"),
    ("fused_optimizer", "yes", "train.fused_optimizer"),
    ("compile_scope", "layers", "train.compile_scope.*blocks.*network"),
])
def test_an_unknown_speed_switch_is_a_config_error_naming_the_key(tmp_path, registry, key, value, expected):
    with pytest.raises(ConfigError, match=expected):
        config(tmp_path, registry, **{key: value})


# ----------------------------------------------------------------------------- checkpointing


def four_block_config(checkpointing) -> FlowTransformerConfig:
    return FlowTransformerConfig(
        streams={"image": StreamConfig(in_channels=4, position_axes=2), "label": StreamConfig(in_channels=3)},
        hidden_size=16, num_heads=2, depth_double=2, depth_single=2, mlp_ratio=2.0, frequency_dim=16,
        checkpointing=checkpointing)


def counted(forward, count: list[int], i: int):
    def run(*args):
        count[i] += 1
        return forward(*args)
    return run


@pytest.mark.parametrize("checkpointing, recomputed", [
    ("none", []), (False, []), ("all", [0, 1, 2, 3]), (True, [0, 1, 2, 3]), ("every_2", [0, 2]),
    ("every_3", [0, 3]), ([1, 2], [1, 2]),
])
def test_selective_checkpointing_recomputes_the_chosen_blocks_and_keeps_the_gradients(checkpointing, recomputed):
    _, tokens, t = tiny_transformer()
    grads, calls = [], []
    for setting in (False, checkpointing):
        torch.manual_seed(0)
        model = FlowTransformer(four_block_config(setting)).train()
        with torch.no_grad():
            for p in model.parameters():
                p.add_(0.1 * torch.randn_like(p))
        blocks = [*model.double_blocks, *model.single_blocks]
        count = [0] * len(blocks)
        for i, block in enumerate(blocks):  # counted in forward itself: the recomputation skips module hooks
            block.forward = counted(block.forward, count, i)
        out = model(tokens, t)
        (out["image"].square().sum() + out["label"].square().sum()).backward()
        grads.append([p.grad for p in model.parameters()])
        calls.append(count)
    assert calls[0] == [1] * 4
    assert [i for i, n in enumerate(calls[1]) if n == 2] == recomputed  # a checkpointed block runs again in backward
    for g, ref in zip(grads[1], grads[0]):
        torch.testing.assert_close(g, ref, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("value, expected", [
    ("some", "checkpointing.*every_N"), ("every_0", "checkpointing.*every_N"), ([0, 4], "checkpointing.*0 to 3"),
    ([1, 1], "checkpointing.*repeat"), ([-1], "checkpointing"),
])
def test_a_bad_checkpointing_value_is_a_config_error_naming_the_key(tmp_path, registry, value, expected):
    model = {**TRANSFORMER, "transformer": {**TRANSFORMER["transformer"], "depth_double": 2, "depth_single": 2,
                                            "checkpointing": value}}
    with pytest.raises(ConfigError, match=f"model.transformer.*{expected}"):
        config(tmp_path, registry, model=model)


def test_a_run_config_with_selective_checkpointing_builds_and_trains(tmp_path, registry):
    model = {**TRANSFORMER, "transformer": {**TRANSFORMER["transformer"], "checkpointing": [1]}}
    module = train(config(tmp_path, registry, model=model, steps=1), registry)
    cfg = module.net.transformer.config
    assert [cfg.checkpointed(i) for i in range(2)] == [False, True]


def saved_bytes(model: FlowTransformer, tokens, t) -> int:
    """Bytes of the tensors autograd keeps for backward during one forward (activation memory)."""
    total = 0

    def pack(x):
        nonlocal total
        total += x.numel() * x.element_size()
        return x

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda x: x):
        model(tokens, t)
    return total


def test_checkpointing_more_blocks_keeps_fewer_activations():
    _, tokens, t = tiny_transformer()
    saved = {}
    for setting in ("none", [3], "every_2", "all"):
        torch.manual_seed(0)
        saved[str(setting)] = saved_bytes(FlowTransformer(four_block_config(setting)).train(), tokens, t)
    assert saved["none"] > saved["[3]"] > saved["every_2"] > saved["all"]
    assert saved["all"] < 0.5 * saved["none"]
