"""flowcore train / sample / eval / invert / reflow, end to end on a tiny toy2d run."""

import json

import pytest
import torch
import yaml
from PIL import Image
from safetensors.torch import load_file

from flowcore.builtins.toy2d import PointsCsv
from flowcore.cli import main


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """A toy2d run trained for 200 steps through the CLI."""
    tmp = tmp_path_factory.mktemp("cli")
    cfg = tmp / "toy.yaml"
    cfg.write_text(yaml.safe_dump({
        "seed": 0, "out_dir": str(tmp / "run"),
        "modalities": {"toy2d": {}}, "data": {"dataset": "moons", "options": {"size": 2000}},
        "model": {"network": "mlp", "hidden": 64, "depth": 2, "time_dim": 16},
        "train": {"steps": 200, "batch_size": 128, "lr": 5.0e-3, "ema": 0.9, "checkpoint_every": 30,
                  "sample_every": 30, "progress_bar": False, "cpu_threads": 1},
        "sample": {"count": 100},
    }))
    assert main(["train", str(cfg)]) == 0
    return tmp / "run"


def test_train_writes_the_run_directory(run):
    for name in ("model.safetensors", "config.yaml", "versions.json", "checkpoints/last.ckpt", "logs/metrics.csv"):
        assert (run / name).is_file(), name
    assert json.loads((run / "versions.json").read_text())["builtins"]
    assert yaml.safe_load((run / "config.yaml").read_text())["train"]["steps"] == 200
    assert (run / "samples" / "step_000030" / "toy2d" / "sample.csv").is_file()
    weights = load_file(str(run / "model.safetensors"))
    assert weights and all(k.startswith("net.") for k in weights)


def test_sample_writes_points_and_a_scatter_png(run, tmp_path):
    args = ["sample", str(run), "--make", "toy2d", "--steps", "4", "--solver", "midpoint", "--cfg", "1",
            "--count", "50"]
    assert main(args + ["--seed", "3", "--out", str(tmp_path / "a")]) == 0
    assert main(args + ["--seed", "3", "--out", str(tmp_path / "b")]) == 0
    assert main(args + ["--seed", "4", "--out", str(tmp_path / "c")]) == 0
    a, b, c = (tmp_path / d / "toy2d" / "sample.csv" for d in "abc")
    points = PointsCsv().read_all(a)
    assert len(points) == 50
    assert a.read_text() == b.read_text() and a.read_text() != c.read_text()  # the seed decides
    with Image.open(tmp_path / "a" / "toy2d" / "sample_preview.png") as img:
        assert img.format == "PNG" and img.size == (512, 512)


def test_eval_writes_metrics_json(run, tmp_path):
    out = tmp_path / "eval.json"
    assert main(["eval", str(run), "--count", "1000", "--steps", "8", "--out", str(out)]) == 0
    report = json.loads(out.read_text())
    assert report["count"] == 1000 and report["split"] == "test"
    metrics = report["metrics"]["toy2d"]
    assert set(metrics) == {"sliced_wasserstein", "mmd"}
    # a trained flow is far closer to the data than its own prior (N(0, I)) is
    from flowcore.builtins.toy2d import sample_points, sliced_wasserstein

    # (1,000 points a side: at 300 the two distances' sampling noise is a third of the margin)
    noise = torch.randn(1000, 2, generator=torch.Generator().manual_seed(0))
    prior = sliced_wasserstein(sample_points("moons", 1000, seed=2), noise)
    assert metrics["sliced_wasserstein"] < 0.7 * prior
    assert report["flow_loss"] > 0


def test_invert_round_trips_a_file(run, tmp_path):
    pts = tmp_path / "pts.csv"
    PointsCsv().write_all([torch.tensor([0.5, 0.2]), torch.tensor([-0.8, 0.4])], tmp_path, "pts")
    out = tmp_path / "inv"
    assert main(["invert", str(run), "--mod", "toy2d", "--input", str(pts), "--steps", "32", "--solver", "rk4",
                 "--out", str(out)]) == 0
    report = json.loads((out / "invert.json").read_text())
    noise = load_file(report["noise"])["toy2d"]
    assert noise.shape == (2, 1, 2)
    back = PointsCsv().read_all(out / "reconstruction" / "sample.csv")
    err = torch.stack(back) - torch.stack(PointsCsv().read_all(pts))
    assert err.abs().max() < 1e-2
    assert report["rms_error"] == pytest.approx(float(err.pow(2).mean().sqrt()), abs=1e-4)


def test_reflow_trains_on_teacher_pairs(run, tmp_path):
    out = tmp_path / "reflow"
    assert main(["reflow", str(run), "--out", str(out), "--set", "reflow.pairs=256", "--set", "reflow.steps=4",
                 "--set", "train.steps=10", "--set", "train.sample_every=0"]) == 0
    manifest = json.loads((out / "pairs" / "pairs.json").read_text())
    assert manifest["count"] == 256
    config = yaml.safe_load((out / "config.yaml").read_text())
    assert config["stage"] == "reflow" and config["reflow"]["teacher"] == str(run)
    assert main(["sample", str(out), "--make", "toy2d", "--steps", "1", "--count", "10",
                 "--out", str(tmp_path / "s")]) == 0


def test_cli_errors_name_what_is_wrong(run, tmp_path, capsys):
    assert main(["sample", str(run), "--make", "image", "--out", str(tmp_path)]) == 2
    assert "no modality 'image'" in capsys.readouterr().err
    bad = tmp_path / "bad.yaml"
    bad.write_text("modalities: {toy2d: {}}\ndata: {dataset: moons}\ntrain: {stepz: 3}\n")
    assert main(["train", str(bad)]) == 2
    err = capsys.readouterr().err
    assert err == f"flowcore: error: {bad}: train.stepz: unknown key; did you mean 'steps'?\n"
    assert main(["train", str(bad), "--set", "train.stepz"]) == 2
    assert "key=value" in capsys.readouterr().err
