"""A last.ckpt that cannot be resumed is one line saying what is wrong and what to do, never a pickle run.

flowcore reads checkpoints with torch's weights-only unpickler itself (Lightning's resume too, through
AtomicCheckpointIO), so TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD=1 cannot turn a planted pickle back on.
"""

import shutil

import pytest
import torch
import yaml

from flowcore.cli import main
from flowcore.errors import ConfigError, DataError
from flowcore.train.checkpoint import LAST, AtomicCheckpointIO

AGAIN = "rerun with --restart to start from step 0"


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A toy2d run trained for 4 steps through the CLI, and its config file."""
    tmp = tmp_path_factory.mktemp("ckpt")
    config = {"out_dir": str(tmp / "run"), "modalities": {"toy2d": {}},
              "data": {"dataset": "moons", "options": {"size": 300}},
              "model": {"network": "mlp", "hidden": 16, "depth": 1, "time_dim": 8},
              "train": {"steps": 4, "batch_size": 32, "checkpoint_every": 4, "sample_every": 0,
                        "progress_bar": False, "cpu_threads": 1}}
    cfg = tmp / "toy.yaml"
    cfg.write_text(yaml.safe_dump(config))
    assert main(["train", str(cfg)]) == 0
    return tmp / "run", config


@pytest.fixture
def rerun(trained, tmp_path):
    """A copy of the run and ``flowcore train`` of its config into the copy (a rerun that resumes)."""
    run, config = trained
    copy = tmp_path / "run"
    shutil.copytree(run, copy)
    cfg = tmp_path / "toy.yaml"
    cfg.write_text(yaml.safe_dump({**config, "out_dir": str(copy)}))

    def train(*flags: str) -> int:
        return main(["train", str(cfg), "--set", "train.steps=6", *flags])
    return copy, train


def one_error_line(capsys) -> str:
    lines = [line for line in capsys.readouterr().err.splitlines() if line.startswith("flowcore:")]
    assert len(lines) == 1, lines
    assert "Traceback" not in lines[0]
    return lines[0]


class Planted:
    """Unpickling this writes ``path``: what a planted pickle would do."""

    def __init__(self, path):
        self.path = str(path)

    def __reduce__(self):
        return exec, (f"open({self.path!r}, 'w').write('ran')",)


def plant(ckpt, marker) -> None:
    checkpoint = torch.load(ckpt, weights_only=True)
    checkpoint["hyper_parameters"]["payload"] = Planted(marker)
    torch.save(checkpoint, ckpt)


def test_a_planted_pickle_is_refused_even_when_torch_is_told_not_to(rerun, tmp_path, capsys, monkeypatch):
    run, train = rerun
    marker = tmp_path / "marker"
    plant(run / LAST, marker)
    monkeypatch.setenv("TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD", "1")
    assert train() == 2
    line = one_error_line(capsys)
    assert line.startswith(f"flowcore: error: {run / LAST}: refused: it holds Python objects") and AGAIN in line
    assert not marker.exists()


def test_lightnings_resume_reads_weights_only_whatever_it_asks(trained, tmp_path, monkeypatch):
    run, _ = trained
    ckpt, marker = tmp_path / "last.ckpt", tmp_path / "marker"
    shutil.copy(run / LAST, ckpt)
    plant(ckpt, marker)
    monkeypatch.setenv("TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD", "1")
    with pytest.raises(DataError, match="refused"):
        AtomicCheckpointIO().load_checkpoint(ckpt, weights_only=False)
    assert not marker.exists()
    assert AtomicCheckpointIO().load_checkpoint(run / LAST)["global_step"] == 4


@pytest.mark.parametrize("damage, what", [
    (lambda data: b"", "(empty)"),
    (lambda data: data[: len(data) // 2], "(truncated or damaged)"),
    (lambda data: bytes(range(256)) * 8, "(truncated or damaged)"),
])
def test_an_unreadable_checkpoint_says_so_and_names_restart(rerun, capsys, damage, what):
    run, train = rerun
    (run / LAST).write_bytes(damage((run / LAST).read_bytes()))
    assert train() == 2
    assert one_error_line(capsys) == (f"flowcore: error: {run / LAST}: cannot read the checkpoint {what}; {AGAIN} "
                                      "(it overwrites the checkpoint), or train into a fresh out_dir")
    assert train("--restart") == 0  # what the line says to do works


def test_a_wider_network_does_not_fit_the_checkpoint(rerun, capsys):
    run, train = rerun
    assert train("--set", "model.hidden=24") == 2
    line = one_error_line(capsys)
    assert f"{run / LAST} does not fit the config: net." in line
    assert "(changed since: model.hidden: 16 -> 24)" in line and AGAIN in line


def test_another_optimizer_does_not_fit_the_checkpoint(rerun, capsys):
    _, train = rerun
    assert train("--set", "train.optimizer=sgd") == 2
    line = one_error_line(capsys)
    assert "its optimizer state is adamw's, the config asks for sgd" in line and AGAIN in line


def test_a_rerun_with_the_same_config_still_resumes(rerun):
    run, train = rerun
    assert train() == 0
    assert torch.load(run / LAST, weights_only=True)["global_step"] == 6


def test_an_autoencoder_run_of_other_options_is_named_not_a_size_mismatch(tmp_path):
    from safetensors.torch import save_file
    from torch import nn

    from flowcore.train.bundle import load_autoencoder_run

    save_file({f"autoencoder.{k}": v for k, v in nn.Linear(4, 8).state_dict().items()},
              str(tmp_path / "model.safetensors"))
    load_autoencoder_run(nn.Linear(4, 8), str(tmp_path), "points", "cfg.yaml")  # the same options load
    with pytest.raises(ConfigError, match=r"points.autoencoder: .*other options.*weight \(8, 4\) vs \(6, 4\)"):
        load_autoencoder_run(nn.Linear(4, 6), str(tmp_path), "points", "cfg.yaml")
