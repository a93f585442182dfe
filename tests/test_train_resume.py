"""`flowcore train` survives kill -9: rerun, it resumes from the last checkpoint and the curve goes on."""

import csv
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import yaml

STEPS = 240


def config(tmp_path: Path) -> Path:
    # a tight cluster far from the prior: the untrained loss (~1 + |c|^2 / 2 = 7.5) is far above
    # the trained one (x0 is nearly known from x_t, so the optimum is near 0)
    points = tmp_path / "points"
    points.mkdir()
    g = torch.Generator().manual_seed(0)
    xy = torch.tensor([3.0, -2.0]) + 0.05 * torch.randn(400, 2, generator=g)
    (points / "cluster.csv").write_text("x,y\n" + "".join(f"{x:.5f},{y:.5f}\n" for x, y in xy.tolist()))
    data = {
        "seed": 0, "out_dir": str(tmp_path / "run"),
        "modalities": {"toy2d": {}}, "data": {"path": str(points)},
        "model": {"network": "mlp", "hidden": 32, "depth": 1, "time_dim": 16},
        "train": {"steps": STEPS, "batch_size": 64, "lr": 1.0e-2, "schedule": "cosine", "ema": 0.9,
                  "checkpoint_every": 20, "log_every": 5, "progress_bar": False, "cpu_threads": 1},
    }
    path = tmp_path / "cfg.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def logged(run: Path, metric: str) -> dict[int, float]:
    path = run / "logs" / "metrics.csv"
    if not path.exists():
        return {}
    with open(path, newline="") as f:
        rows = [r for r in csv.DictReader(f) if r["metric"] == metric]
    return {int(r["step"]): float(r["value"]) for r in rows}


def ckpt_step(path: Path) -> int:
    return int(torch.load(path, map_location="cpu", weights_only=False)["global_step"])


@pytest.mark.slow
def test_kill_9_then_resume(tmp_path):
    cfg = config(tmp_path)
    run = tmp_path / "run"
    cmd = [sys.executable, "-m", "flowcore.cli", "train", str(cfg)]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.time() + 240
    last = run / "checkpoints" / "last.ckpt"
    while time.time() < deadline and proc.poll() is None:
        if last.exists() and max(logged(run, "train/loss"), default=0) >= 70:
            break
        time.sleep(0.2)
    assert proc.poll() is None, f"training ended before it could be killed: {proc.stderr.read().decode()[-2000:]}"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    killed_at = max(logged(run, "train/loss"))
    resumed_from = ckpt_step(last)
    assert 20 <= resumed_from < STEPS

    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "resuming from" in done.stderr
    assert ckpt_step(last) == STEPS

    loss = logged(run, "train/loss")
    steps = sorted(loss)
    # one curve: every logged step once, from the start to the end (rows the killed run wrote
    # after its last checkpoint were trained again and replaced)
    assert steps == list(range(4, STEPS, 5)), (steps, resumed_from, killed_at)
    # the lr schedule continues where it was (cosine over STEPS), not from its start
    lr = logged(run, "train/lr")
    after = min(s for s in steps if s > resumed_from)
    expected = 1.0e-2 * 0.5 * (1 + torch.cos(torch.tensor(torch.pi * after / STEPS)))
    assert lr[after] == pytest.approx(float(expected), rel=1e-3)
    # the weights continue too: the loss right after the resume is near the loss before it,
    # far below the untrained loss at the start
    first = sum(loss[s] for s in steps[:3]) / 3
    before = sum(loss[s] for s in steps if resumed_from - 15 <= s <= resumed_from) / 3
    resumed = sum(loss[s] for s in steps if resumed_from < s <= resumed_from + 15) / 3
    assert resumed < 0.2 * first, (first, before, resumed)
    assert resumed < 2 * before + 0.05, (first, before, resumed)
