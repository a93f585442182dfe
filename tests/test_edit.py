"""Editing by inversion on a field with a known answer: the exact conditional velocity of
eight_gaussians_labeled (classes 2: class k = the gaussians k, k + 2, k + 4, k + 6)."""

from pathlib import Path

import pytest
import torch
from torch import nn

from flowcore.builtins.toy2d import EIGHT_GAUSSIANS_STD, eight_gaussian_centers, in_class
from flowcore.errors import ConfigError
from flowcore.train.bundle import build_bundles
from flowcore.train.config import from_dict
from flowcore.train.inference import FlowPipeline

pytestmark = pytest.mark.usefixtures("one_thread")


class MixtureField(nn.Module):
    """v(x_t, t | class) = E[eps - x0 | x_t] for x0 a mixture of isotropic gaussians, eps ~ N(0, I).

    Given component i, x_t ~ N((1 - t) mu_i, s_t^2 I), s_t^2 = (1 - t)^2 s^2 + t^2, and
    E[x0 | x_t, i] = mu_i + (1 - t) s^2 / s_t^2 (x_t - (1 - t) mu_i), E[eps | x_t, i] = t / s_t^2 (x_t - (1 - t) mu_i);
    the posterior over components weighs them. ``classes`` 2: a class keeps its 4 components.
    """

    def __init__(self, classes: int = 2):
        super().__init__()
        self.register_buffer("mu", eight_gaussian_centers().float())
        self.register_buffer("owner", torch.arange(8) % classes)
        self.s2 = EIGHT_GAUSSIANS_STD ** 2

    def forward(self, x, t, label):
        t = t[:, None, None]
        s_t2 = (1 - t) ** 2 * self.s2 + t ** 2
        d = x[:, None, :] - (1 - t) * self.mu[None]                     # [B, 8, 2]
        logp = -(d ** 2).sum(-1) / (2 * s_t2[:, :, 0])                  # [B, 8]
        other = (self.owner[None] != label[:, None]) & (label[:, None] >= 0)  # label -1: no class given
        logp = logp.masked_fill(other, float("-inf"))
        w = torch.softmax(logp, -1)[..., None]
        x0 = self.mu[None] + (1 - t) * self.s2 / s_t2 * d
        eps = t / s_t2 * d
        return (w * (eps - x0)).sum(1)


class ExactNet(nn.Module):
    """The flowcore network call around :class:`MixtureField`: the label counts when given (t = 0).

    One call of ``field`` per network call, so its output is the network's whole velocity (what
    the injection test replaces)."""

    def __init__(self):
        super().__init__()
        self.field = MixtureField()

    def forward(self, tokens, t, r=None):
        x = tokens["toy2d"].values[:, 0]
        given = t["label"] == 0
        label = torch.where(given, tokens["label"].values[:, 0].argmax(-1), -1)
        v = self.field(x, t["toy2d"], label)
        return {"toy2d": v[:, None], "label": torch.zeros_like(tokens["label"].values)}


@pytest.fixture(scope="module")
def pipe():
    from flowcore.registry import Registry

    registry = Registry()
    config = from_dict({"modalities": {"toy2d": {}, "label": {"role": "condition", "num_classes": 2,
                                                               "dropout": 0.1}},
                        "data": {"dataset": "eight_gaussians_labeled", "options": {"classes": 2}},
                        "sample": {"cfg": 1.0}}, registry=registry)
    bundles = build_bundles(config, registry)
    return FlowPipeline(config, ExactNet(), bundles, Path("exact"), torch.device("cpu"))


def points(label: int, n: int = 200, seed: int = 0) -> list[torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    comp = torch.randint(0, 4, (n,), generator=g) * 2 + label
    x = eight_gaussian_centers().float()[comp] + EIGHT_GAUSSIANS_STD * torch.randn(n, 2, generator=g)
    return list(x)


def rms(a, b) -> float:
    return float((torch.stack(a) - torch.stack(b)).pow(2).sum(-1).mean().sqrt())


def test_inversion_then_regeneration_under_the_same_label_returns_the_input(pipe):
    x = points(0)
    errors = {}
    for solver in ("euler", "rf_solver", "fireflow"):
        back = pipe.edit("toy2d", x, {"label": 0}, {"label": 0}, steps=16, solver=solver)
        errors[solver] = rms(back, x)
    assert errors["rf_solver"] < 0.02 and errors["fireflow"] < 0.03, errors
    # the second-order solvers invert far better than euler at the same step count
    assert errors["euler"] > 3 * errors["rf_solver"], errors


def test_editing_to_the_other_label_lands_in_its_class_near_the_source(pipe):
    x = points(0)
    edited = torch.stack(pipe.edit("toy2d", x, {"label": 0}, {"label": 1}, steps=16, solver="rf_solver"))
    assert float(in_class(edited, 1, classes=2).double().mean()) > 0.9
    # the edit keeps the source's place on the circle: the nearest class-1 gaussian (45 deg away), not a far one
    centers = eight_gaussian_centers().float()
    src_comp = torch.cdist(torch.stack(x), centers).argmin(1)
    new_comp = torch.cdist(edited, centers).argmin(1)
    steps = ((new_comp - src_comp) % 8).tolist()
    assert sum(s in (1, 7) for s in steps) / len(steps) > 0.9


def test_strength_below_one_keeps_more_of_the_source(pipe):
    x = points(0)
    full = pipe.edit("toy2d", x, {"label": 0}, {"label": 1}, steps=16, solver="rf_solver")
    weak = pipe.edit("toy2d", x, {"label": 0}, {"label": 1}, steps=16, solver="rf_solver", strength=0.2)
    assert rms(weak, x) < rms(full, x)
    with pytest.raises(ConfigError, match="strength must lie in"):
        pipe.edit("toy2d", x, {"label": 0}, {"label": 1}, strength=1.5)


@pytest.mark.parametrize("solver", ["rf_solver", "fireflow"])
def test_injecting_the_whole_field_at_every_step_retraces_the_source(pipe, solver):
    x = points(0, n=50)
    kept = pipe.edit("toy2d", x, {"label": 0}, {"label": 1}, steps=8, solver=solver, inject=8,
                     inject_modules=["field"])
    assert rms(kept, x) < 1e-4
    # injected for the first 2 of 8 steps only: the target label takes over for the rest
    some = torch.stack(pipe.edit("toy2d", x, {"label": 0}, {"label": 1}, steps=8, solver=solver, inject=2,
                                 inject_modules=["field"]))
    assert float(in_class(some, 1, classes=2).double().mean()) > 0.8
    with pytest.raises(ConfigError, match="no submodule 'nothing'"):
        pipe.edit("toy2d", x, {"label": 0}, {"label": 1}, inject=1, inject_modules=["nothing"])



def test_flowedit_keeps_the_input_under_its_own_label_and_moves_it_to_the_nearest_gaussian_of_another(pipe):
    x = points(0)
    same = pipe.edit("toy2d", x, {"label": 0}, {"label": 0}, steps=16, solver="euler", method="flowedit")
    assert rms(same, x) < 1e-5                                  # equal fields: the difference is zero
    # guided, as FlowEdit edits: unguided, the mean difference leaves a quarter of the points between
    # two gaussians of the target class
    edited = torch.stack(pipe.edit("toy2d", x, {"label": 0}, {"label": 1}, steps=16, solver="euler",
                                   method="flowedit", average=2, cfg=2.0))
    assert float(in_class(edited, 1, classes=2).double().mean()) > 0.9
    centers = eight_gaussian_centers().float()
    turn = (torch.cdist(edited, centers).argmin(1) - torch.cdist(torch.stack(x), centers).argmin(1)) % 8
    assert float(((turn == 1) | (turn == 7)).double().mean()) > 0.9
    with pytest.raises(ConfigError, match="flowedit takes Euler steps"):
        pipe.edit("toy2d", x, {"label": 0}, {"label": 1}, solver="fireflow", method="flowedit")
    with pytest.raises(ConfigError, match="method must be"):
        pipe.edit("toy2d", x, {"label": 0}, {"label": 1}, method="sdedit")

def exact_net(shapes):
    """``model.network: test_edit:exact_net``, for a run directory the command line opens."""
    return ExactNet()


def test_flowcore_edit_writes_the_edited_file(tmp_path, monkeypatch):
    import yaml
    from safetensors.torch import save_file

    from flowcore.cli import main

    monkeypatch.syspath_prepend(str(Path(__file__).parent))
    run = tmp_path / "run"
    run.mkdir()
    config = from_dict({"modalities": {"toy2d": {}, "label": {"role": "condition", "num_classes": 2, "dropout": 0.1}},
                        "data": {"dataset": "eight_gaussians_labeled", "options": {"classes": 2}},
                        "model": {"network": "test_edit:exact_net"}, "sample": {"cfg": 1.0}})
    (run / "config.yaml").write_text(yaml.safe_dump(config.to_dict(), sort_keys=False))
    save_file({f"net.{k}": v.contiguous() for k, v in ExactNet().state_dict().items()}, str(run / "model.safetensors"))
    x = torch.stack(points(0, n=40))
    src = tmp_path / "points.csv"
    src.write_text("x,y\n" + "".join(f"{a:.6f},{b:.6f}\n" for a, b in x.tolist()))
    out = tmp_path / "out"
    assert main(["edit", str(run), "--input", str(src), "--from", "label=0", "--to", "label=1", "--steps", "16",
                 "--solver", "rf_solver", "--out", str(out)]) == 0
    report = yaml.safe_load((out / "edit.json").read_text())
    assert report["modality"] == "toy2d" and report["count"] == 40 and report["solver"] == "rf_solver"
    edited = Path(report["edited"][0]).read_text().splitlines()[1:]
    y = torch.tensor([[float(v) for v in line.split(",")] for line in edited])
    assert y.shape == (40, 2) and float(in_class(y, 1, classes=2).double().mean()) > 0.9
    assert main(["edit", str(run), "--input", str(src), "--from", "label=0", "--to", "label=1", "--steps", "16",
                 "--method", "flowedit", "--solver", "euler", "--out", str(tmp_path / "fe")]) == 0
    report = yaml.safe_load((tmp_path / "fe" / "edit.json").read_text())
    assert report["method"] == "flowedit" and report["count"] == 40
