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

STEPS = 16  # moons of 600 points: 540 train, 4 batches of 128 an epoch


def config(tmp_path, registry, name, steps=STEPS):
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump({
        "seed": 0, "out_dir": str(tmp_path / name), "modalities": {"toy2d": {}},
        "data": {"dataset": "moons", "options": {"size": 600}},
        "model": {"network": "mlp", "hidden": 32, "depth": 1, "time_dim": 16},
        "train": {"steps": steps, "batch_size": 128, "lr": 1.0e-2, "schedule": "cosine", "ema": 0.9,
                  "checkpoint_every": 3, "log_every": 1, "sample_every": 0, "progress_bar": False, "cpu_threads": 1},
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


@pytest.mark.parametrize("crash_at", [11, 13], ids=["mid-epoch", "epoch-end"])
def test_a_resumed_run_follows_the_uninterrupted_one(uninterrupted, tmp_path, registry, monkeypatch, one_thread,
                                                     crash_at):
    # the crash comes two steps after the checkpoint at step 9 (mid-epoch) or 12 (end of epoch 3),
    # when metrics.csv holds a row of the step after the checkpoint, which the resumed run trains again
    make_trainer = pipeline.make_trainer
    monkeypatch.setattr(pipeline, "make_trainer", lambda cfg, out_dir, callbacks, steps: make_trainer(
        cfg, out_dir, [*callbacks, CrashAt(crash_at)], steps))
    run = tmp_path / "run"
    with pytest.raises(Crash):
        pipeline.train(config(tmp_path, registry, "run"), registry)
    monkeypatch.undo()
    checkpoint = torch.load(run / "checkpoints" / "last.ckpt", weights_only=True)
    assert checkpoint["global_step"] == crash_at - crash_at % 3
    assert {s for s, m, _ in rows(run) if m == "train/loss"} == set(range(crash_at - 1))

    pipeline.train(config(tmp_path, registry, "run"), registry)
    resumed, reference = rows(run), rows(uninterrupted)
    assert len(resumed) == len({(s, m) for s, m, _ in resumed})  # no step logged twice
    loss = {s: v for s, m, v in resumed if m == "train/loss"}
    expected = {s: v for s, m, v in reference if m == "train/loss"}
    assert sorted(loss) == list(range(STEPS))
    assert loss == expected  # the same batches, times and noise: the same losses (as logged, to 6 digits)
    a, b = load_file(str(run / "model.safetensors")), load_file(str(uninterrupted / "model.safetensors"))
    assert all(torch.equal(a[k], b[k]) for k in b)  # and the same EMA weights at the end


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
