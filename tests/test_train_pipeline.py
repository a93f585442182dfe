"""Roles, any-to-any states, file data, the autoencoder stage and precision, checked against what they promise."""

import json
from pathlib import Path

import pytest
import torch
import yaml

from flowcore.errors import ConfigError, DataError
from flowcore.train.config import load_config
from flowcore.train.data import build_split
from flowcore.train.module import FlowModule
from flowcore.train.objective import ABSENT, CLEAN, NOISED
from flowcore.train.pipeline import cpu_has_amx, resolve_precision, sample, train

TINY = {"network": "mlp", "hidden": 64, "depth": 2, "time_dim": 16}
FAST = {"batch_size": 128, "lr": 5.0e-3, "ema": 0, "checkpoint_every": 1000, "progress_bar": False, "cpu_threads": 1}


def two_clusters(tmp_path, n=400):
    """A JSONL manifest pairing points with labels: class 0 near (+2, 0), class 1 near (-2, 0)."""
    g = torch.Generator().manual_seed(0)
    rows = []
    for i in range(n):
        label = i % 2
        x = (2.0 if label == 0 else -2.0) + 0.1 * float(torch.randn(1, generator=g))
        rows.append({"toy2d": [x, 0.1 * float(torch.randn(1, generator=g))], "label": "ab"[label]})
    path = tmp_path / "pairs.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def config_file(tmp_path, **sections):
    path = tmp_path / "cfg.yaml"
    path.write_text(yaml.safe_dump({"seed": 0, "out_dir": str(tmp_path / "run"), **sections}))
    return path


def test_states_follow_roles(tmp_path, registry):
    manifest = two_clusters(tmp_path, 20)
    cfg = load_config(config_file(
        tmp_path, modalities={"toy2d": {"role": "any"}, "label": {"role": "any", "classes": ["a", "b"]}},
        data={"path": str(manifest)}, model=TINY, flow={"p_clean": 0.3, "p_absent": 0.2}), registry=registry)
    module = FlowModule(cfg, registry)
    torch.manual_seed(0)
    s = module.objective.states(20000, torch.device("cpu"))
    stacked = torch.stack([s["toy2d"], s["label"]])
    assert (stacked == NOISED).any(0).all()  # every sample keeps something to learn
    # drawn: noised 0.5, clean 0.3, absent 0.2; when the other modality is not noised either
    # (p 0.5), one of the two (p 1/2) is turned to noised: P(absent) = 0.2 (1 - 0.5 / 2)
    assert (s["toy2d"] == ABSENT).float().mean() == pytest.approx(0.2 * 0.75, abs=0.015)
    assert (s["toy2d"] == CLEAN).float().mean() == pytest.approx(0.3 * 0.75, abs=0.015)

    # a modality's own probabilities override the flow section's for it alone
    cfg3 = load_config(config_file(
        tmp_path, modalities={"toy2d": {"role": "any"},
                              "label": {"role": "any", "classes": ["a", "b"], "p_clean": 0.1, "p_absent": 0.6}},
        data={"path": str(manifest)}, model=TINY, flow={"p_clean": 0.3, "p_absent": 0.2}), registry=registry)
    torch.manual_seed(0)
    s = FlowModule(cfg3, registry).objective.states(40000, torch.device("cpu"))
    # the turn-to-noised fix-up: P(toy2d not noised) = 0.5, P(label not noised) = 0.7; both not
    # noised with p 0.35, then each is noised with p 1/2
    assert (s["label"] == ABSENT).float().mean() == pytest.approx(0.6 * (1 - 0.5 / 2), abs=0.015)
    assert (s["label"] == CLEAN).float().mean() == pytest.approx(0.1 * (1 - 0.5 / 2), abs=0.015)
    assert (s["toy2d"] == ABSENT).float().mean() == pytest.approx(0.2 * (1 - 0.7 / 2), abs=0.015)
    with pytest.raises(ConfigError, match="modalities.label: p_clean \\+ p_absent must be < 1"):
        load_config(config_file(tmp_path, modalities={"toy2d": {"role": "any"}, "label": {
            "role": "any", "classes": ["a", "b"], "p_clean": 0.5, "p_absent": 0.5}},
            data={"path": str(manifest)}, model=TINY), registry=registry)
    with pytest.raises(ConfigError, match="modalities.label.p_clean / p_absent only apply to role 'any'"):
        load_config(config_file(tmp_path, modalities={"toy2d": {}, "label": {
            "role": "condition", "classes": ["a", "b"], "p_clean": 0.5}},
            data={"path": str(manifest)}, model=TINY), registry=registry)

    cfg2 = load_config(config_file(
        tmp_path, modalities={"toy2d": {}, "label": {"role": "condition", "dropout": 0.25, "classes": ["a", "b"]}},
        data={"path": str(manifest)}, model=TINY), registry=registry)
    s = FlowModule(cfg2, registry).objective.states(20000, torch.device("cpu"))
    assert (s["toy2d"] == NOISED).all()
    assert set(s["label"].unique().tolist()) == {CLEAN, ABSENT}
    assert (s["label"] == ABSENT).float().mean() == pytest.approx(0.25, abs=0.015)


def test_pair_tasks_take_their_share(tmp_path, registry):
    """flow.tasks: a p_task share of samples is one of the tasks (made noised, given clean or, with
    task_dropout, absent, the rest absent); the others keep the independent draw."""
    manifest = two_clusters(tmp_path, 20)
    cfg = load_config(config_file(
        tmp_path, modalities={"toy2d": {"role": "any"}, "label": {"role": "any", "classes": ["a", "b"]}},
        data={"path": str(manifest)}, model=TINY,
        flow={"p_clean": 0.0, "p_absent": 0.0, "tasks": ["toy2d|label", "label"], "p_task": 0.6,
              "task_dropout": 0.25}), registry=registry)
    torch.manual_seed(0)
    s = FlowModule(cfg, registry).objective.states(40000, torch.device("cpu"))
    # independent draw (p 0.4): both noised; "toy2d|label" (p 0.3): toy2d noised, label clean 0.75 /
    # absent 0.25; "label" (p 0.3): label noised, toy2d absent
    assert (s["toy2d"] == CLEAN).sum() == 0
    assert (s["label"] == CLEAN).float().mean() == pytest.approx(0.3 * 0.75, abs=0.01)
    assert (s["label"] == ABSENT).float().mean() == pytest.approx(0.3 * 0.25, abs=0.01)
    assert (s["toy2d"] == ABSENT).float().mean() == pytest.approx(0.3, abs=0.01)
    assert ((s["toy2d"] == NOISED) & (s["label"] == NOISED)).float().mean() == pytest.approx(0.4, abs=0.01)
    with pytest.raises(ConfigError, match=r"flow.tasks\[0\]: 'toy2d\|label': 'toy2d' has role 'generate'"):
        load_config(config_file(tmp_path, modalities={"toy2d": {}, "label": {"role": "any", "classes": ["a"]}},
                                data={"path": str(manifest)}, model=TINY, flow={"tasks": ["toy2d|label"]}),
                    registry=registry)
    with pytest.raises(ConfigError, match=r"flow.tasks\[0\]: .*no modality 'audio'"):
        load_config(config_file(tmp_path, modalities={"toy2d": {"role": "any"}, "label": {"role": "any",
                                "classes": ["a"]}}, data={"path": str(manifest)}, model=TINY,
                                flow={"tasks": ["audio|label"]}), registry=registry)


def test_class_conditional_generation_from_a_manifest(tmp_path, registry):
    manifest = two_clusters(tmp_path)
    cfg = load_config(config_file(
        tmp_path, modalities={"toy2d": {}, "label": {"role": "condition", "dropout": 0.1, "classes": ["a", "b"]}},
        data={"path": str(manifest), "val_fraction": 0.1, "test_fraction": 0.1}, model=TINY,
        train={**FAST, "steps": 150}), registry=registry)
    train(cfg, registry)
    for label, sign in (("a", 1), ("b", -1)):
        for cfg_weight in (1.0, 3.0):
            out = tmp_path / f"s_{label}_{cfg_weight}"
            sample(cfg.out_dir, ["toy2d"], {"label": label}, out, count=200, steps=8, cfg=cfg_weight,
                   registry=registry)
            pts = torch.tensor([[float(v) for v in line.split(",")]
                                for line in (out / "toy2d" / "sample.csv").read_text().splitlines()[1:]])
            assert (pts[:, 0] * sign > 0).float().mean() > 0.9, (label, cfg_weight)
    with pytest.raises(ConfigError, match="role 'condition'"):
        sample(cfg.out_dir, ["label"], {"toy2d": "[2.0, 0.0]"}, tmp_path / "x", count=2, steps=2, registry=registry)


def test_any_to_any_generates_both_ways(tmp_path, registry):
    from flowcore.train.pipeline import evaluate

    manifest = two_clusters(tmp_path)
    cfg = load_config(config_file(
        tmp_path, modalities={"toy2d": {"role": "any"}, "label": {"role": "any", "classes": ["a", "b"]}},
        data={"path": str(manifest), "val_fraction": 0.1, "test_fraction": 0.1}, model=TINY,
        train={**FAST, "steps": 250}, eval={"count": 100}), registry=registry)
    train(cfg, registry)
    report = evaluate(cfg.out_dir, steps=8, registry=registry)
    # label given the point is classification: the clusters are far apart, so nearly always right
    assert report["metrics"]["label|toy2d"]["accuracy"] > 0.9
    assert set(report["metrics"]["toy2d|label"]) == {"sliced_wasserstein", "mmd"}

    # via: the label made first from nothing, then given: every point lies in its label's cluster,
    # and the second pass is the plain conditional draw given those labels
    import flowcore

    pipe = flowcore.load(cfg.out_dir, registry=registry)
    out = pipe.generate("toy2d", count=200, via="label", steps=8, cfg=2.0)
    assert set(out) == {"label", "toy2d"} and set(map(int, out["label"])) == {0, 1}  # class indices: a, b
    x = torch.stack([torch.as_tensor(p).reshape(-1)[0] for p in out["toy2d"]])
    sign = torch.tensor([1.0 if int(label) == 0 else -1.0 for label in out["label"]])
    assert (x * sign > 0).float().mean() > 0.95
    again = pipe.generate("toy2d", {"label": out["label"]}, steps=8, cfg=2.0)["toy2d"]
    assert torch.equal(torch.stack([torch.as_tensor(p) for p in again]),
                       torch.stack([torch.as_tensor(p) for p in out["toy2d"]]))
    with pytest.raises(ConfigError, match="both made and made via"):
        pipe.generate("label", count=2, via="label")

    # sample.cfg_by_direction is its direction's default guidance (here 0: the unconditional field);
    # an explicit cfg wins, and other directions keep sample.cfg
    def points(out):
        return torch.stack([torch.as_tensor(p) for p in out["toy2d"]])

    pipe.config.sample.cfg_by_direction = {"toy2d|label": 0.0}
    made = points(pipe.generate("toy2d", {"label": ["a"] * 50}, steps=8))
    assert torch.equal(made, points(pipe.generate("toy2d", {"label": ["a"] * 50}, steps=8, cfg=0.0)))
    assert not torch.equal(made, points(pipe.generate("toy2d", {"label": ["a"] * 50}, steps=8, cfg=1.0)))
    assert pipe.direction_cfg(["label"], ["toy2d"]) is None
    chained = pipe.generate("toy2d", count=50, via="label", steps=8)  # its second pass is toy2d|label: cfg 0
    assert torch.equal(points(chained), points(pipe.generate("toy2d", {"label": chained["label"]}, steps=8,
                                                             cfg=0.0)))
    pipe.config.sample.cfg_by_direction = {}
    for bad, match in (({"toy2d|audio": 2.0}, "no modality 'audio'"), ({"toy2d|label": {"toy2d": 2.0}},
                                                                        "'toy2d' is not given")):
        with pytest.raises(ConfigError, match=rf"sample.cfg_by_direction\['toy2d\|\w+'\]: .*{match}"):
            load_config(config_file(
                tmp_path, modalities={"toy2d": {"role": "any"}, "label": {"role": "any", "classes": ["a", "b"]}},
                data={"path": str(manifest)}, model=TINY, sample={"cfg_by_direction": bad}), registry=registry)

    # chosen directions, a joint one among them, and the page that shows them
    from flowcore.train.gallery import gallery

    report = evaluate(cfg.out_dir, tmp_path / "dirs.json", steps=4, registry=registry,
                      directions=["label|toy2d", "toy2d,label"])
    assert set(report["metrics"]) == {"label|toy2d", "toy2d,label"}
    assert set(report["metrics"]["toy2d,label"]) == {"toy2d", "label"}
    page = gallery(cfg.out_dir, tmp_path / "gallery", count=3, scores=tmp_path / "dirs.json", steps=4,
                   registry=registry, directions=["label|toy2d", "toy2d,label"])
    text = page.read_text()
    assert text.count("<tr>") == 4 and "label ← toy2d" in text and "toy2d + label ← nothing" in text
    assert "label accuracy" in text  # the scores head their column
    made = sorted(p.name for p in (tmp_path / "gallery" / "label_from_toy2d" / "label").glob("*.txt"))
    assert len(made) == 3 and all((tmp_path / "gallery" / "label_from_toy2d" / "label" / m).read_text().strip()
                                  in ("a", "b") for m in made)

    # chained columns: beside a direction that neither makes nor gives the label, one made via it;
    # each chained cell shows its label, and its point lies in that label's cluster
    page = gallery(cfg.out_dir, tmp_path / "chained", count=6, steps=8, cfg=2.0, registry=registry,
                   directions=["toy2d", "label|toy2d"], via=["label"])
    text = page.read_text()
    assert "toy2d ← nothing via label" in text and text.count(" via label") == 1
    entries = json.loads((tmp_path / "chained" / "gallery.json").read_text())["directions"]
    chained = Path(entries["toy2d via label"]["folder"])
    for i in range(6):
        label = (chained / "label" / f"label_{i:04d}.txt").read_text().strip()
        x = float((chained / "toy2d" / f"toy2d_{i:04d}.csv").read_text().splitlines()[1].split(",")[0])
        assert (x > 0) == (label == "a")


def test_manifest_cells_are_files_or_values(tmp_path, registry):
    from flowcore.train.bundle import build_bundles

    (tmp_path / "p.csv").write_text("x,y\n1.5,-2.5\n")
    (tmp_path / "m.csv").write_text('toy2d,label\np.csv,b\n"[0.5, 0.25]",0\n')
    cfg = load_config(config_file(tmp_path, modalities={"toy2d": {}, "label": {"role": "condition",
                                                                                "classes": ["a", "b"]}},
                                  data={"path": "m.csv", "val_fraction": 0.0, "test_fraction": 0.0}),
                      registry=registry)
    bundles = build_bundles(cfg, registry)
    ds = build_split(cfg, bundles, "train", registry)
    items = sorted((ds[i] for i in range(len(ds))), key=lambda it: it["label"])
    assert items[0]["label"] == 0 and items[0]["toy2d"].tolist() == [0.5, 0.25]
    assert items[1]["label"] == 1 and items[1]["toy2d"].tolist() == [1.5, -2.5]

    (tmp_path / "m.csv").write_text("toy2d,label\nmissing.csv,a\n")
    with pytest.raises(DataError, match="row 1.*missing.csv"):
        build_split(cfg, bundles, "train", registry)
    (tmp_path / "m.csv").write_text("toy2d\np.csv\n")
    with pytest.raises(ConfigError, match="no column 'label'"):
        build_split(cfg, bundles, "train", registry)


def test_autoencoder_stage_then_flow_on_its_latents(tmp_path, registry):
    from pathlib import Path

    from safetensors.torch import load_file

    plugin = Path(__file__).resolve().parents[1] / "examples" / "plugins" / "toy_autoencoder.py"
    ae_cfg = load_config(config_file(tmp_path, plugins=[str(plugin)], stage="autoencoder",
                                     modalities={"toy2d_ae": {}}, data={"dataset": "moons_ae",
                                                                         "options": {"size": 1000}},
                                     train={**FAST, "steps": 150}), registry=registry)
    module = train(ae_cfg, registry)
    batch = torch.stack([module.modality.validate(p, "t") for p in build_split(
        ae_cfg, {"toy2d_ae": _bundle(ae_cfg, registry)}, "val", registry).base.points[:200]])
    with torch.no_grad():
        recon = module.autoencoder.decode(module.autoencoder.encode(batch))
        untrained = module.modality.autoencoder()
        before = ((untrained.decode(untrained.encode(batch)) - batch) ** 2).mean()
    assert ((recon - batch) ** 2).mean() < 0.2 * before

    flow_dir = tmp_path / "flow"
    flow_dir.mkdir()
    flow_cfg = load_config(config_file(flow_dir, plugins=[str(plugin)],
                                       modalities={"toy2d_ae": {"autoencoder": ae_cfg.out_dir}},
                                       data={"dataset": "moons_ae", "options": {"size": 1000},
                                             "cache_latents": True}, model=TINY,
                                       train={**FAST, "steps": 20}), registry=registry)
    flow = train(flow_cfg, registry)
    # the cached latents are the trained encoder's latents of the train split
    from flowcore.builtins.toy2d import moons

    cached = load_file(str(Path(flow_cfg.out_dir) / "latents" / "train.safetensors"))["toy2d_ae"]
    with torch.no_grad():
        assert torch.allclose(cached, module.autoencoder.encode(moons("train", size=1000).points), atol=1e-6)
    # the flow's exported weights carry the frozen autoencoder, equal to the trained one
    weights = load_file(str(Path(flow_cfg.out_dir) / "model.safetensors"))
    for k, v in module.autoencoder.state_dict().items():
        assert torch.equal(weights[f"autoencoders.toy2d_ae.{k}"], v)
    assert not any(p.requires_grad for p in flow.autoencoders.parameters())
    no_ae = load_config(config_file(flow_dir, plugins=[str(plugin)], modalities={"toy2d_ae": {}},
                                    data={"dataset": "moons_ae"}, model=TINY), registry=registry)
    with pytest.raises(ConfigError, match="modalities.toy2d_ae.autoencoder"):
        FlowModule(no_ae, registry)


def _bundle(cfg, registry):
    from flowcore.train.bundle import build_bundles

    return build_bundles(cfg, registry)["toy2d_ae"]


def test_precision_defaults_to_fp32_without_bf16_hardware():
    expected = "bf16-mixed" if cpu_has_amx() else "32-true"
    assert resolve_precision("auto", "cpu") == expected
    assert resolve_precision("16-mixed", "cpu") == "16-mixed"


def test_transformer_network_trains_and_samples(tmp_path, registry):
    cfg = load_config(config_file(
        tmp_path, modalities={"toy2d": {}}, data={"dataset": "moons", "options": {"size": 256}},
        model={"network": "transformer", "transformer": {"hidden_size": 32, "num_heads": 2, "depth_double": 1,
                                                          "depth_single": 1}},
        train={**FAST, "batch_size": 64, "steps": 6, "ema": 0.5}), registry=registry)
    module = train(cfg, registry)
    assert type(module.net).__name__ == "TransformerNet"
    assert any(p.abs().sum() > 0 for n, p in module.net.named_parameters() if "head" in n or "out" in n)
    files = sample(cfg.out_dir, ["toy2d"], {}, tmp_path / "s", count=16, steps=2, registry=registry).paths
    assert files[0].read_text().count("\n") == 17
    bad = config_file(tmp_path, modalities={"toy2d": {}}, data={"dataset": "moons"},
                      model={"network": "transformer", "transformer": {"hidden_sise": 32}})
    with pytest.raises(ConfigError, match="hidden_sise"):
        FlowModule(load_config(bad, registry=registry), registry)


def test_ema_follows_its_warmed_up_decay():
    from torch import nn

    from flowcore.train.module import EMA

    net = nn.Linear(1, 1, bias=False)
    nn.init.constant_(net.weight, 1.0)
    ema = EMA(net, decay=0.99)
    nn.init.constant_(net.weight, 3.0)
    expected = 1.0
    for n in range(50):
        ema.update(net)
        d = min(0.99, (1 + n) / (10 + n))
        expected = d * expected + (1 - d) * 3.0
    assert float(ema.net.weight) == pytest.approx(expected, rel=1e-6)
    assert not ema.net.weight.requires_grad



@pytest.mark.parametrize("width", [12 ** -0.5, 0.2, 0.05])
def test_a_power_ema_averages_the_run_with_its_relative_width(width):
    """Feed the weights k and k^2 at step k: the average is then the mean and second moment of
    the profile, which EDM2's power function puts at (gamma + 1) / (gamma + 2) of the run with
    standard deviation ``width`` of the run; the widest (gamma = 0) is the plain running mean."""
    from torch import nn

    from flowcore.train.module import EMA, power_ema_exponent

    net = nn.Linear(2, 1, bias=False).double()
    ema = EMA(net, decay=0.5, width=width)  # ``decay`` is unused
    steps = 2000
    for k in range(1, steps + 1):
        with torch.no_grad():
            net.weight.copy_(torch.tensor([[k / steps, (k / steps) ** 2]], dtype=torch.float64))
        ema.update(net)
    mean, square = ema.net.weight[0].tolist()
    gamma = power_ema_exponent(width)
    assert mean == pytest.approx((gamma + 1) / (gamma + 2), rel=2e-3)
    assert (square - mean**2) ** 0.5 == pytest.approx(width, rel=1e-2)
    if gamma == 0:
        assert mean == pytest.approx((steps + 1) / 2 / steps, rel=1e-9)
    with pytest.raises(ValueError, match="width 0.3"):
        power_ema_exponent(0.3)

def test_lr_schedules():
    from flowcore.train.module import lr_lambda

    assert lr_lambda(0, 10, 110, "cosine") == pytest.approx(0.1)
    assert lr_lambda(9, 10, 110, "cosine") == pytest.approx(1.0)
    assert lr_lambda(60, 10, 110, "cosine") == pytest.approx(0.5)
    assert lr_lambda(110, 10, 110, "cosine") == pytest.approx(0.0)
    assert lr_lambda(60, 10, 110, "linear") == pytest.approx(0.5)
    assert lr_lambda(100, 0, 110, "constant") == 1.0
