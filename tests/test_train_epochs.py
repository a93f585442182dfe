"""A budget in epochs (``train.epochs``): the steps that many passes over the train split take, at
least ``train.min_steps``; the LR schedule spans them."""

import json

import pytest
import yaml

from flowcore.errors import ConfigError
from flowcore.train.config import epoch_steps, load_config
from flowcore.train.pipeline import train


def test_epoch_steps_count_passes_over_the_items():
    assert epoch_steps(32561, 8, 256) == 1018  # ceil(1017.53)
    assert epoch_steps(800, 8, 256, min_steps=300) == 300  # 25 steps, lifted to the floor
    assert epoch_steps(800, 0.5, 100) == 4
    assert epoch_steps(10, 3, 4, batches=3) == 9  # length batching: 3 batches a pass
    with pytest.raises(ConfigError, match="epochs > 0"):
        epoch_steps(800, 0, 256)


def test_epochs_run_whole_passes_and_the_schedule_ends_with_them(tmp_path, registry):
    rows = [{"toy2d": [float(i % 7) / 7, float(i % 5) / 5]} for i in range(50)]
    manifest = tmp_path / "points.jsonl"
    manifest.write_text("".join(json.dumps(r) + "\n" for r in rows))
    cfg = tmp_path / "cfg.yaml"
    cfg.write_text(yaml.safe_dump({
        "seed": 0, "out_dir": str(tmp_path / "run"), "modalities": {"toy2d": {}},
        "data": {"path": str(manifest), "val_fraction": 0.0, "test_fraction": 0.0},
        "model": {"network": "mlp", "hidden": 16, "depth": 1, "time_dim": 8},
        "train": {"epochs": 3, "batch_size": 16, "lr": 1e-3, "schedule": "linear", "ema": 0,
                  "checkpoint_every": 1000, "log_every": 1, "progress_bar": False, "cpu_threads": 1}}))
    config = load_config(cfg, registry=registry)
    assert config.train.steps is None
    module = train(config, registry)
    steps = 10  # ceil(50 x 3 / 16)
    assert module.trainer.global_step == steps
    scheduler = module.trainer.lr_scheduler_configs[0].scheduler
    assert scheduler.lr_lambdas[0](steps) == 0.0  # the linear schedule reaches 0 at the budget's end
    assert scheduler.lr_lambdas[0](0) == 1.0
