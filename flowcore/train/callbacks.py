"""Lightning pieces of a run: the append-only metrics log, weight export, periodic samples."""

from __future__ import annotations

import csv
import os
from pathlib import Path
from typing import Any, Callable, Mapping

import lightning as L
from lightning.pytorch.loggers.logger import Logger, rank_zero_experiment
from lightning.pytorch.utilities import rank_zero_only

from flowcore.io import atomic_path


class MetricsCSV(Logger):
    """``step,metric,value`` rows appended to ``<dir>/metrics.csv``, flushed as they come.

    Long format so new metrics never rewrite the header, and appending so a killed and
    resumed run keeps one continuous curve (rows past the resumed step are dropped first:
    those steps are trained again).
    """

    def __init__(self, directory: str | Path):
        super().__init__()
        self.path = Path(directory) / "metrics.csv"

    @property
    def name(self) -> str:
        return "metrics"

    @property
    def version(self) -> int:
        return 0

    @property
    def save_dir(self) -> str:
        return str(self.path.parent)

    @property
    @rank_zero_experiment
    def experiment(self) -> Path:
        return self.path

    @rank_zero_only
    def truncate_after(self, step: int) -> None:
        """Drop rows with a step beyond ``step`` (left by a run killed after its last checkpoint)."""
        if not self.path.exists():
            return
        with open(self.path, newline="") as f:
            rows = [r for r in csv.DictReader(f) if r.get("step", "").isdigit() and int(r["step"]) <= step]
        with atomic_path(self.path) as tmp:
            with open(tmp, "w", newline="") as f:
                writer = csv.DictWriter(f, fieldnames=["step", "metric", "value"])
                writer.writeheader()
                writer.writerows(rows)

    @rank_zero_only
    def log_metrics(self, metrics: Mapping[str, float], step: int | None = None) -> None:
        fresh = not self.path.exists()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.path, "a", newline="") as f:
            if fresh:
                f.write("step,metric,value\n")
            for k, v in metrics.items():
                if k != "epoch":
                    f.write(f"{step},{k},{float(v):.6g}\n")
            f.flush()
            os.fsync(f.fileno())

    @rank_zero_only
    def log_hyperparams(self, params: Any, *args: Any, **kwargs: Any) -> None:
        """The config is saved as config.yaml beside the weights; nothing to do here."""


class ResumeLog(L.Callback):
    """On (re)start, cut the metrics log back to the step training resumes from."""

    def __init__(self, log: MetricsCSV):
        self.metrics = log

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.metrics.truncate_after(trainer.global_step)


class ExportWeights(L.Callback):
    """Every ``every`` steps (with the Lightning checkpoint) and at the end, write the run files.

    At the end the resumable checkpoint is written too, so rerunning a finished run finds
    nothing left to train (``every`` need not divide ``train.steps``).
    """

    def __init__(self, export: Callable[[L.LightningModule], Any], every: int, last: Path):
        self.export, self.every, self.last = export, every, Path(last)

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if self.every and trainer.global_step % self.every == 0 and trainer.is_global_zero:
            self.export(pl_module)

    def on_train_end(self, trainer, pl_module) -> None:
        trainer.save_checkpoint(self.last)  # every rank calls it; the strategy writes once
        if trainer.is_global_zero:
            self.export(pl_module)


class SampleEvery(L.Callback):
    """Every ``every`` steps, write sample files and previews to ``<out>/samples/step_NNNNNN/``.

    ``every=None``: ten times a run, every tenth of the steps Lightning will take (at least ``least``).
    """

    def __init__(self, write: Callable[[L.LightningModule, Path], Any], out_dir: Path, every: int | None,
                 least: int = 1):
        self.write, self.out_dir, self.every, self.least = write, Path(out_dir), every, least

    def on_train_start(self, trainer, pl_module) -> None:
        if self.every is None:
            self.every = max(self.least, int(trainer.estimated_stepping_batches) // 10)

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        step = trainer.global_step
        if self.every and step % self.every == 0 and trainer.is_global_zero:
            was_training = pl_module.training
            pl_module.eval()
            self.write(pl_module, self.out_dir / "samples" / f"step_{step:06d}")
            pl_module.train(was_training)
