"""A run stopped after a checkpoint and resumed follows the uninterrupted run step by step."""

import csv
import os
import random
import tempfile

import lightning as L
import numpy as np
import pytest
import torch
import yaml
from safetensors.torch import load_file

from flowcore.io import TEMP_NAME, atomic_path
from flowcore.train import pipeline
from flowcore.train.callbacks import random_states, set_random_states
from flowcore.train.config import load_config
from flowcore.train.data import EpochShuffle, LengthBatches

STEPS = 16  # moons of 600 points: 540 train, 4 batches of 128 an epoch; a constant lr, so a run extended
# from fewer steps has the same schedule


def config(tmp_path, registry, name, steps=STEPS, checkpoint_every=3):
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump({
        "seed": 0, "out_dir": str(tmp_path / name), "modalities": {"toy2d": {}},
        "data": {"dataset": "moons", "options": {"size": 600}},
        "model": {"network": "mlp", "hidden": 32, "depth": 1, "time_dim": 16},
        "train": {"steps": steps, "batch_size": 128, "lr": 1.0e-2, "ema": 0.9, "checkpoint_every": checkpoint_every,
                  "log_every": 1, "sample_every": 0, "progress_bar": False, "cpu_threads": 1},
    }))
    return load_config(path, registry=registry)


def rows(run) -> list[tuple[int, str, float]]:
    with open(run / "logs" / "metrics.csv", newline="") as f:
        return [(int(r["step"]), r["metric"], float(r["value"])) for r in csv.DictReader(f)]


class Crash(Exception):
    pass


class CrashAt(L.Callback):
    """Raises at the end of the batch that takes the step count to ``step`` (before its checkpoint, if any)."""

    def __init__(self, step: int):
        self.step = step

    def on_train_batch_end(self, trainer, *args) -> None:
        if trainer.global_step == self.step:
            raise Crash


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory):
    from flowcore.registry import Registry

    tmp = tmp_path_factory.mktemp("full")
    torch.set_num_threads(1)
    pipeline.train(config(tmp, Registry(), "run"), Registry())
    return tmp / "run"


def crash_at(monkeypatch, step: int) -> None:
    """The next ``pipeline.train`` raises ``Crash`` at the end of the batch that takes it to ``step`` steps."""
    make_trainer = pipeline.make_trainer
    monkeypatch.setattr(pipeline, "make_trainer", lambda cfg, out_dir, callbacks, steps: make_trainer(
        cfg, out_dir, [*callbacks, CrashAt(step)], steps))


@pytest.mark.parametrize("crash, checkpoint", [(11, 9), (13, 12)], ids=["mid-epoch", "epoch-end"])
def test_a_resumed_run_follows_the_uninterrupted_one(uninterrupted, tmp_path, registry, monkeypatch, one_thread,
                                                     crash, checkpoint):
    # killed two steps after its checkpoint (every 3 steps; an epoch is 4): metrics.csv holds a row
    # of the step after the checkpoint, which the resumed run trains again
    crash_at(monkeypatch, crash)
    run = tmp_path / "run"
    with pytest.raises(Crash):
        pipeline.train(config(tmp_path, registry, "run"), registry)
    monkeypatch.undo()
    assert torch.load(run / "checkpoints" / "last.ckpt", weights_only=True)["global_step"] == checkpoint
    assert {s for s, m, _ in rows(run) if m == "train/loss"} == set(range(crash - 1))

    pipeline.train(config(tmp_path, registry, "run"), registry)
    assert_follows(run, uninterrupted)


@pytest.mark.parametrize("steps", [6, 8], ids=["mid-epoch", "epoch-end"])
def test_a_finished_run_extended_follows_the_longer_one(uninterrupted, tmp_path, registry, one_thread, steps):
    # no periodic checkpoint: the one written after the last step is all there is
    pipeline.train(config(tmp_path, registry, "run", steps=steps, checkpoint_every=100), registry)
    pipeline.train(config(tmp_path, registry, "run", checkpoint_every=100), registry)  # train.steps raised
    assert_follows(tmp_path / "run", uninterrupted)


def assert_follows(run, uninterrupted) -> None:
    resumed, reference = rows(run), rows(uninterrupted)
    assert len(resumed) == len({(s, m) for s, m, _ in resumed})  # no step logged twice
    loss = {s: v for s, m, v in resumed if m == "train/loss"}
    assert sorted(loss) == list(range(STEPS))
    # the same batches, times and noise: the same losses (as logged, to 6 digits) and the same weights
    assert loss == {s: v for s, m, v in reference if m == "train/loss"}
    a, b = load_file(str(run / "model.safetensors")), load_file(str(uninterrupted / "model.safetensors"))
    assert all(torch.equal(a[k], b[k]) for k in b)


def test_random_states_survive_a_weights_only_checkpoint(tmp_path):
    torch.manual_seed(1)
    np.random.seed(2)
    random.seed(3)
    np.random.normal()  # numpy keeps a cached gaussian
    torch.save({"random_states": random_states()}, tmp_path / "c.ckpt")
    draws = torch.rand(3), np.random.normal(size=3), random.random()
    set_random_states(torch.load(tmp_path / "c.ckpt", weights_only=True)["random_states"])
    again = torch.rand(3), np.random.normal(size=3), random.random()
    assert torch.equal(draws[0], again[0]) and np.array_equal(draws[1], again[1]) and draws[2] == again[2]


def test_samplers_resume_at_a_position_of_an_epoch():
    shuffle = EpochShuffle(10, seed=4)
    shuffle.set_epoch(2)
    whole = list(shuffle)
    resumed = EpochShuffle(10, seed=4)
    resumed.resume_at(2, 6)
    assert len(resumed) == 10 and list(resumed) == whole[6:]
    after = EpochShuffle(10, seed=4)
    after.set_epoch(3)
    assert list(resumed) == list(after)  # then the next epoch, whole
    batches = LengthBatches([3, 1, 4, 1, 5, 9, 2, 6, 5, 3], tokens=12, max_items=4, seed=1)
    plan, first_len = batches.plan(3), len(batches)
    batches.resume_at(3, 2)
    assert len(batches) == first_len  # Lightning counts an epoch's batches before the first iteration
    assert list(batches) == plan[2:] and list(batches) == batches.plan(4)


def test_stale_temporary_files_are_removed_when_training_starts(tmp_path, registry, one_thread):
    run = tmp_path / "run"
    (run / "checkpoints").mkdir(parents=True)
    stale = []
    for target in (run / "checkpoints" / "last.ckpt", run / "model.safetensors"):
        fd, name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=target.suffix + ".tmp", dir=target.parent)
        os.close(fd)
        stale.append(name)
    kept = [run / ".notes.tmp", run / "checkpoints" / "step.ckpt.tmp"]  # not atomic_path's names
    for p in kept:
        p.write_text("mine")
    pipeline.train(config(tmp_path, registry, "run", steps=1), registry)
    assert not any(os.path.exists(p) for p in stale)
    assert all(p.is_file() for p in kept)
    with atomic_path(run / "eval.json") as tmp:  # the names atomic_path makes are the ones removed
        assert TEMP_NAME.fullmatch(tmp.name)
