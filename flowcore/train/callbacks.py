"""Lightning pieces of a run: the append-only metrics log, checkpoints, weight export, periodic
samples, the stop on a non-finite loss, and the random states a resumed run goes on from."""

from __future__ import annotations

import csv
import os
import random
import sys
from pathlib import Path
from typing import Any, Callable, Mapping

import lightning as L
import numpy as np
import torch
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.loggers.logger import Logger, rank_zero_experiment
from lightning.pytorch.utilities import rank_zero_only

from flowcore.errors import NonFiniteError
from flowcore.io import atomic_path
from flowcore.train.sharding import is_sharded


class MetricsCSV(Logger):
    """``step,metric,value`` rows appended to ``<dir>/metrics.csv``, flushed as they come.

    Long format so new metrics never rewrite the header, and appending so a killed and
    resumed run keeps one continuous curve (rows of the steps it trains again are dropped first).
    A row's step is the batch's index: the one that takes the step count from s to s + 1 is
    logged as step s.
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
    def truncate_from(self, step: int) -> None:
        """Drop rows of step ``step`` on (left by a run killed after its last checkpoint, at ``step``
        optimizer steps: it trains the batch logged as ``step`` first)."""
        if not self.path.exists():
            return
        with open(self.path, newline="") as f:
            rows = [r for r in csv.DictReader(f) if r.get("step", "").isdigit() and int(r["step"]) < step]
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
        self.metrics.truncate_from(trainer.global_step)


def exports_here(trainer, module) -> bool:
    """Whether this process calls an export or preview function: rank zero, or every rank when the
    weights are sharded (gathering them is a collective; the function then writes on rank zero)."""
    return trainer.is_global_zero or is_sharded(module)


class ExportWeights(L.Callback):
    """Every ``every`` steps (with the Lightning checkpoint) and after the last step, write the run files.

    After the last step the resumable checkpoint is written too, so rerunning a finished run finds
    nothing left to train (``every`` need not divide ``train.steps``). It is written at the end of
    that step's batch, as the periodic ones are, so a run extended from it (a larger
    ``train.steps``) goes on as the longer run would have. A run stopped by an error
    (``StopNonFinite``'s) writes nothing more, and weights holding NaN or infinity are never
    written (``checkpoint.refuse_nonfinite``): the files of the last checkpoint stay.
    """

    def __init__(self, export: Callable[[L.LightningModule], Any], every: int, last: Path):
        self.export, self.every, self.last = export, every, Path(last)
        self.saved: int | None = None

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        step = trainer.global_step
        final = step >= trainer.max_steps
        if final:
            self.save(trainer)
        if (final or self.every and step % self.every == 0) and exports_here(trainer, pl_module):
            self.export(pl_module)

    def on_train_end(self, trainer, pl_module) -> None:
        if self.saved != trainer.global_step:  # stopped before its last step, not by an error
            self.save(trainer)
            if exports_here(trainer, pl_module):
                self.export(pl_module)

    def save(self, trainer) -> None:
        trainer.save_checkpoint(self.last, weights_only=False)  # every rank calls it; the strategy writes once
        self.saved = trainer.global_step


class LastCheckpoint(ModelCheckpoint):
    """Lightning's checkpoint every ``every_n_train_steps`` steps, less its own save when training ends.

    ``ExportWeights`` writes the final checkpoint at the end of the last step's batch. Written
    when training ends, as Lightning would, it records the loops as finished: a run extended from
    it (a larger ``train.steps``) would start a new epoch where the longer run is mid-epoch.
    """

    def on_train_end(self, trainer, pl_module) -> None:
        pass


class StopNonFinite(L.Callback):
    """Stop training at a step whose loss or gradient norm is NaN or infinite, before its update.

    It raises :class:`NonFiniteError` naming the step (as metrics.csv logs it), the modality
    whose loss it is (the module's ``step_losses``) and the likely cause, so the process exits
    non-zero and the run directory keeps the weights of its last checkpoint. ``skip``: up to this
    many such steps are skipped first, with a warning: their gradients are dropped, so the
    optimizer leaves the weights as they were. Under fp16 with a gradient scaler only the loss is
    checked: the scaler skips the steps whose gradients overflow itself.
    """

    def __init__(self, skip: int = 0):
        self.skip, self.skipped = skip, 0
        self.loss: torch.Tensor | None = None

    def on_before_backward(self, trainer, pl_module, loss: torch.Tensor) -> None:
        self.loss = loss.detach()

    def on_before_optimizer_step(self, trainer, pl_module, optimizer) -> None:
        losses = {n: v.float() for n, v in getattr(pl_module, "step_losses", {}).items()}
        checked = [*losses.values(), *([self.loss.float()] if self.loss is not None else [])]
        grads = [p.grad for group in optimizer.param_groups for p in group["params"] if p.grad is not None]
        norm = None
        if grads and getattr(trainer.precision_plugin, "scaler", None) is None:
            norm = torch.nn.utils.get_total_norm(grads).float()
            checked.append(norm)
        if not checked:
            return
        bad = not bool(torch.stack([v.reshape(()).to(checked[0].device) for v in checked]).isfinite().all())
        if not trainer.strategy.reduce_boolean_decision(bad, all=False):  # every rank stops if one must
            return
        what = f"step {trainer.global_step}: {self.describe(losses, norm)}"
        if self.skipped < self.skip:
            self.skipped += 1
            optimizer.zero_grad(set_to_none=True)  # an optimizer leaves a parameter without a gradient alone
            print(f"warning: {what}; the step is skipped, its update not applied "
                  f"({self.skipped} of train.skip_nonfinite {self.skip})", file=sys.stderr)
            return
        skipped = f" (after skipping {self.skipped} such steps)" if self.skipped else ""
        last = getattr(trainer.checkpoint_callback, "last_model_path", "")
        kept = (f"{last} and the weights exported with it are kept" if last and Path(last).is_file()
                else "no checkpoint was written before it")
        raise NonFiniteError(f"{what}{skipped}; training diverged ({self.settings(trainer, optimizer)}). "
                             f"Train again in a fresh out_dir with a lower train.lr or train.grad_clip on; {kept}")

    def describe(self, losses: Mapping[str, torch.Tensor], norm: torch.Tensor | None) -> str:
        """What is not finite: the loss of which modalities, else the loss, else the gradient norm."""
        bad = {n: float(v) for n, v in losses.items() if not bool(v.isfinite())}
        if bad:
            names = ", ".join(f"{n!r} is {v}" for n, v in bad.items())
            return f"the loss of modality {names}" if len(bad) == 1 else f"the losses of modalities {names}"
        if self.loss is not None and not bool(self.loss.isfinite()):
            return f"the loss is {float(self.loss)}"
        finite = ", ".join(f"{n} {float(v):.4g}" for n, v in losses.items())
        return f"the gradient norm is {float(norm)}" + (f" (the losses are finite: {finite})" if finite else "")

    @staticmethod
    def settings(trainer, optimizer) -> str:
        clip = trainer.gradient_clip_val
        return (f"train.lr {optimizer.param_groups[0]['lr']:g} at this step, "
                f"train.grad_clip {clip if clip else 'off'}, precision {trainer.precision}")

    def state_dict(self) -> dict[str, Any]:
        return {"skipped": self.skipped}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.skipped = int(state_dict.get("skipped", 0))


def random_states() -> dict[str, Any]:
    """The states of torch (CPU, and CUDA once it is in use), numpy and Python's ``random``, as
    tensors and plain containers (what ``torch.load(weights_only=True)`` reads back)."""
    kind, keys, pos, has_gauss, gauss = np.random.get_state()
    states: dict[str, Any] = {"torch": torch.get_rng_state(), "python": random.getstate(),
                              "numpy": (kind, torch.from_numpy(keys.astype(np.int64)), int(pos), int(has_gauss),
                                        float(gauss))}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        states["cuda"] = torch.cuda.get_rng_state_all()
    return states


def set_random_states(states: Mapping[str, Any]) -> None:
    """Restore what :func:`random_states` returned (CUDA's only onto as many devices)."""
    torch.set_rng_state(states["torch"])
    random.setstate(tuple(v if not isinstance(v, list) else tuple(v) for v in states["python"]))
    kind, keys, pos, has_gauss, gauss = states["numpy"]
    np.random.set_state((kind, keys.numpy().astype(np.uint32), pos, has_gauss, gauss))
    cuda = states.get("cuda")
    if cuda is not None and torch.cuda.is_available() and len(cuda) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all(cuda)


class RandomState(L.Callback):
    """The random states go in every checkpoint and are restored on resume, so a resumed run draws
    the noise and times the uninterrupted one would have drawn.

    Checkpoints are written after a step, before the next batch is drawn; a resumed run restores
    the states just before drawing its first batch. Lightning creates the data iterator before
    that, which draws a seed for its workers: where the uninterrupted run starts a new epoch after
    the checkpoint it draws that seed too, so there the states are restored before the iterator is
    made. The datamodule's ``position()`` ((epoch, batch in it) of the next batch) says which.
    """

    KEY = "random_states"

    def __init__(self):
        self.pending: dict[str, Any] | None = None

    def on_save_checkpoint(self, trainer, pl_module, checkpoint: dict[str, Any]) -> None:
        position = getattr(trainer.datamodule, "position", lambda: None)()
        checkpoint[self.KEY] = {**random_states(), "new_epoch": position is not None and position[1] == 0}

    def on_load_checkpoint(self, trainer, pl_module, checkpoint: dict[str, Any]) -> None:
        states = checkpoint.get(self.KEY)
        if states is None:  # a checkpoint from before they were saved
            return
        if states["new_epoch"]:
            set_random_states(states)
        else:
            self.pending = states

    def on_train_start(self, trainer, pl_module) -> None:
        if self.pending is not None:
            set_random_states(self.pending)
            self.pending = None


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
        if self.every and step % self.every == 0 and exports_here(trainer, pl_module):
            was_training = pl_module.training
            pl_module.eval()
            self.write(pl_module, self.out_dir / "samples" / f"step_{step:06d}")
            pl_module.train(was_training)
