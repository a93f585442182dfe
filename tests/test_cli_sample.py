"""`flowcore sample` samples as the run's `sample` section says: `unaided` and `solver_options` reach it.

The run's network is test_train_distill's ScaledField, v(x, t) = a x plus b x in eval mode unless
its ``unaided()`` is on, so Euler in n steps from the same noise x_1 ends at x_1 (1 - s/n)^n with
s = a + b (aided) or a.
"""

from pathlib import Path

import pytest
import torch
import yaml
from safetensors.torch import save_file

from flowcore.cli import main
from flowcore.train.config import from_dict

A, B, STEPS = 0.5, 1.0, 8


@pytest.fixture
def run_dir(tmp_path, monkeypatch):
    """A run directory as `flowcore train` leaves it, holding the scaled field with a = A."""
    monkeypatch.syspath_prepend(str(Path(__file__).parent))  # model.network names a module of tests/
    run = tmp_path / "run"
    run.mkdir()
    save_file({"net.a": torch.tensor(A)}, str(run / "model.safetensors"))
    return run


def write_config(run, **sample):
    config = from_dict({"modalities": {"toy2d": {}}, "data": {"dataset": "moons"},
                        "model": {"network": "test_train_distill:scaled_field", "options": {"b": B}},
                        "sample": {"steps": STEPS, "solver": "euler", **sample}})
    (run / "config.yaml").write_text(yaml.safe_dump(config.to_dict(), sort_keys=False))


def sample_points(run, out, *flags) -> torch.Tensor:
    assert main(["sample", str(run), "--make", "toy2d", "--count", "5", "--out", str(out), "--quiet", *flags]) == 0
    lines = (out / "toy2d" / "sample.csv").read_text().splitlines()[1:]
    return torch.tensor([[float(v) for v in line.split(",")] for line in lines])


def test_sample_unaided_reaches_flowcore_sample(run_dir, tmp_path):
    write_config(run_dir)
    aided = sample_points(run_dir, tmp_path / "aided")
    write_config(run_dir, unaided=True)
    alone = sample_points(run_dir, tmp_path / "alone")
    ratio = ((1 - A / STEPS) / (1 - (A + B) / STEPS)) ** STEPS
    assert torch.allclose(alone / aided, torch.full_like(aided, ratio), rtol=1e-4)


def test_sample_solver_options_reach_flowcore_sample(run_dir, tmp_path):
    write_config(run_dir)
    euler = sample_points(run_dir, tmp_path / "euler")
    write_config(run_dir, solver="euler_sde", solver_options={"churn": 0.0})
    no_churn = sample_points(run_dir, tmp_path / "sde0")  # euler_sde with churn 0 is the Euler ODE
    assert torch.allclose(no_churn, euler, rtol=1e-5)
    write_config(run_dir, solver="euler_sde")
    churned = sample_points(run_dir, tmp_path / "sde1")  # its default churn 1 moves the samples
    assert not torch.allclose(churned, euler, rtol=1e-3)
    # a --solver override drops the section's options (they belong to euler_sde): churn 1 again
    write_config(run_dir, solver="euler", solver_options={})
    assert torch.allclose(sample_points(run_dir, tmp_path / "flag", "--solver", "euler_sde"), churned)
