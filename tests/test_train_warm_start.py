"""train.init_from: a run starts from another run's network weights. A MeanFlow network warm-started
from a velocity run is that velocity field at every interval (its interval embedding starts at zero)."""

import pytest
import torch
import yaml

from flowcore.errors import ConfigError
from flowcore.train import checkpoint as ckpt
from flowcore.train.config import from_dict, load_config
from flowcore.train.module import FlowModule
from flowcore.train.pipeline import train, warm_start
from flowcore.train.sampling import tokens_of

pytestmark = pytest.mark.usefixtures("one_thread")

MLP = {"network": "mlp", "hidden": 16, "depth": 1, "time_dim": 8}
TRANSFORMER = {"network": "transformer", "transformer": {"hidden_size": 32, "num_heads": 2, "depth_double": 1,
                                                         "depth_single": 1}}


def raw_config(model: dict, **flow) -> dict:
    return {"seed": 0, "modalities": {"toy2d": {}, "label": {"role": "condition", "num_classes": 2, "dropout": 0.2}},
            "data": {"dataset": "eight_gaussians_labeled", "options": {"classes": 2}}, "model": model,
            "flow": flow}


def batch(module: FlowModule, registry, n: int = 8):
    ds = registry.dataset("eight_gaussians_labeled").build("train", classes=2)
    items = [ds[i] for i in range(n)]
    tokens = {name: tokens_of(b, [it[name] for it in items], "cpu") for name, b in module.bundles.items()}
    g = torch.Generator().manual_seed(1)
    t = {"toy2d": torch.rand(n, generator=g), "label": torch.zeros(n)}
    r = {"toy2d": t["toy2d"] * torch.rand(n, generator=g), "label": torch.zeros(n)}
    return tokens, t, r


def trained_flow_run(tmp_path, registry, model: dict):
    """A velocity (flow matching) run's folder, its weights moved off their init so the check means something."""
    module = FlowModule(from_dict(raw_config(model), registry=registry), registry)
    with torch.no_grad():
        for p in module.net.parameters():
            p.add_(0.05 * torch.randn_like(p))
    module.ema.net.load_state_dict(module.net.state_dict())
    ckpt.write_run_files(tmp_path / "flow", module.config, ckpt.flow_state(module), registry)
    return tmp_path / "flow", module


@pytest.mark.parametrize("model", [MLP, TRANSFORMER], ids=["mlp", "transformer"])
def test_a_meanflow_network_warm_started_from_a_flow_run_is_that_flow_at_every_interval(tmp_path, registry, model):
    run, flow = trained_flow_run(tmp_path, registry, model)
    mean = FlowModule(from_dict(raw_config(model, objective="meanflow", meanflow={"cfg": 2.0}), registry=registry),
                      registry)
    new = warm_start(mean, run)
    assert new and all("interval" in k for k in new)  # only the interval embedding is not the flow's
    tokens, t, r = batch(mean, registry)
    with torch.no_grad():
        v = flow.ema.net(tokens, t)["toy2d"]
        for net in (mean.net, mean.ema.net):
            u = net(tokens, t, r)["toy2d"]
            assert torch.allclose(u, v, atol=1e-6) and not torch.allclose(v, torch.zeros_like(v))


def test_init_from_in_training_starts_from_the_run_and_refuses_another_network(tmp_path, registry):
    run, flow = trained_flow_run(tmp_path, registry, MLP)
    raw = raw_config(MLP, objective="meanflow")
    raw.update(out_dir=str(tmp_path / "mean"), train={
        "steps": 2, "batch_size": 8, "lr": 1e-9, "ema": 0, "init_from": str(run), "checkpoint_every": 100,
        "progress_bar": False, "cpu_threads": 1, "sample_every": 0})
    cfg = tmp_path / "mean.yaml"
    cfg.write_text(yaml.safe_dump(raw))
    module = train(load_config(cfg, registry=registry), registry)
    source = ckpt.read_weights(run / ckpt.WEIGHTS, "net.")
    trained = ckpt.read_weights(tmp_path / "mean" / ckpt.WEIGHTS, "net.")
    assert module.trainer.global_step == 2 and set(source) < set(trained)
    for k, w in source.items():  # two steps at lr 1e-9 move no weight measurably from the run's
        assert torch.allclose(trained[k], w, atol=1e-7), k
    # a network of another width, or no run there: one line naming train.init_from
    other = FlowModule(from_dict(raw_config({**MLP, "hidden": 24}, objective="meanflow"), registry=registry), registry)
    with pytest.raises(ConfigError, match=r"train.init_from: .*other shapes"):
        warm_start(other, run)
    with pytest.raises(ConfigError, match=r"train.init_from: .*not found"):
        warm_start(other, tmp_path / "nowhere")
    with pytest.raises(ConfigError, match="train.init_from"):
        from_dict({**raw_config(MLP), "stage": "reflow", "reflow": {"teacher": str(run)},
                   "train": {"init_from": str(run)}}, registry=registry)


def teacher_and_batch(tmp_path, registry):
    """A trained velocity run (the teacher), its module, a batch with times t and r, label states
    (the first half kept, the rest absent) and the noise: what the MeanFlow-teacher checks share."""
    from flowcore.train.objective import ABSENT, CLEAN

    run, flow = trained_flow_run(tmp_path, registry, MLP)
    tokens, t, r = batch(flow, registry)
    n = len(t["toy2d"])
    label_state = torch.tensor([CLEAN] * (n // 2) + [ABSENT] * (n - n // 2))
    g = torch.Generator().manual_seed(2)
    eps = {name: torch.randn(tok.values.shape, generator=g) for name, tok in tokens.items()}
    return run, flow, tokens, t, r, label_state, eps


def test_a_meanflow_teacher_puts_its_guided_velocity_in_the_target(tmp_path, registry):
    """flow.meanflow.teacher at r = t: the target is the teacher's velocity, guided at cfg where the
    label is kept. A student warm-started from the teacher then has loss mean |v_c - v_u|^2 over the
    kept samples (guidance is the only difference) and none on the others; without the teacher the
    target is the noisy eps - x0."""
    from flowcore.train.objective import CLEAN, NOISED

    run, flow, tokens, t, _, label_state, eps = teacher_and_batch(tmp_path, registry)
    n = len(t["toy2d"])

    def loss(**meanflow):
        module = FlowModule(from_dict(raw_config(MLP, objective="meanflow", meanflow={
            "p_equal": 1.0, "norm_p": 0, **meanflow}), registry=registry), registry)
        warm_start(module, run)
        objective = module.objective
        objective.states = lambda b, device: {"toy2d": torch.full((b,), NOISED), "label": label_state}
        objective.timesteps = lambda b, device=None, generator=None: t["toy2d"]
        return float(objective(module.net, tokens, eps=eps).loss)

    z = (1 - t["toy2d"].view(-1, 1, 1)) * tokens["toy2d"].values + t["toy2d"].view(-1, 1, 1) * eps["toy2d"]
    absent = tokens["label"].with_values(eps["label"])
    with torch.no_grad():
        v_c = flow.ema.net({"toy2d": tokens["toy2d"].with_values(z), "label": tokens["label"]},
                           {"toy2d": t["toy2d"], "label": torch.zeros(n)})["toy2d"]
        v_u = flow.ema.net({"toy2d": tokens["toy2d"].with_values(z), "label": absent},
                           {"toy2d": t["toy2d"], "label": torch.ones(n)})["toy2d"]
    kept = label_state == CLEAN
    expected = float(((v_c - v_u) ** 2).mean((1, 2))[kept].sum() / n)
    assert expected > 1e-6
    assert loss(teacher=str(run), cfg=2.0) == pytest.approx(expected, rel=1e-4)
    assert loss(teacher=str(run)) == pytest.approx(0.0, abs=1e-10)
    assert loss() > 0.1


def test_the_lagrangian_identity_reads_the_teacher_where_the_map_lands(tmp_path, registry, monkeypatch):
    """flow.meanflow.identity: lagrangian on an interval r < t: a student warm-started from the teacher is
    the teacher's velocity at every interval (du/dr = 0), so its map lands one Euler step away,
    X = z - (t - r) v(z, t), and the target is the teacher's velocity there, v(X, r)."""
    import flowcore.train.objective as objective_module
    from flowcore.train.objective import CLEAN, NOISED

    run, flow, tokens, t, r, label_state, eps = teacher_and_batch(tmp_path, registry)
    monkeypatch.setattr(objective_module, "sample_interval", lambda *a, **k: (t["toy2d"], r["toy2d"]))
    module = FlowModule(from_dict(raw_config(MLP, objective="meanflow", meanflow={
        "norm_p": 0, "teacher": str(run), "identity": "lagrangian"}), registry=registry), registry)
    warm_start(module, run)
    module.objective.states = lambda b, device: {"toy2d": torch.full((b,), NOISED), "label": label_state}
    got = float(module.objective(module.net, tokens, eps=eps).loss)

    kept = (label_state == CLEAN).view(-1, 1, 1)
    label = tokens["label"].with_values(torch.where(kept.view(-1, 1, 1), tokens["label"].values, eps["label"]))
    label_t = torch.where(kept.view(-1), 0.0, 1.0)

    def v(x, time):
        with torch.no_grad():
            return flow.ema.net({"toy2d": tokens["toy2d"].with_values(x), "label": label},
                                {"toy2d": time, "label": label_t})["toy2d"]

    tt, rr = t["toy2d"].view(-1, 1, 1), r["toy2d"].view(-1, 1, 1)
    z = (1 - tt) * tokens["toy2d"].values + tt * eps["toy2d"]
    u = v(z, t["toy2d"])
    landed = v(z - (tt - rr) * u, r["toy2d"])
    expected = float(((u - landed) ** 2).mean((1, 2)).mean())
    assert expected > 1e-6
    assert got == pytest.approx(expected, rel=1e-4)
    with pytest.raises(ConfigError, match="flow.meanflow.identity: lagrangian"):
        from_dict(raw_config(MLP, objective="meanflow", meanflow={"identity": "lagrangian"}), registry=registry)
