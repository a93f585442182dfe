"""A budget in epochs (``train.epochs``): Lightning runs that many passes, and the LR schedule spans them."""

import json

import yaml

from flowcore.train.config import load_config
from flowcore.train.pipeline import train


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
    batches = 50 // 16  # drop_last: every step sees a full batch
    assert module.trainer.global_step == 3 * batches
    scheduler = module.trainer.lr_scheduler_configs[0].scheduler
    assert scheduler.lr_lambdas[0](3 * batches) == 0.0  # the linear schedule reaches 0 at the last epoch's end
    assert scheduler.lr_lambdas[0](0) == 1.0
