"""The plugin's training budgets: epochs with a floor of steps, and batch and lr rules by table size.

A fixed step count over-trains a 1,000-row table (1,000 steps of 512 rows are 500 epochs)
and under-trains a 30,000-row one. ``flowcore tabular-train CONFIG --epochs E`` gives the run
the core's epoch budget (``train.epochs``, ``train.min_steps``: steps = max(min_steps,
ceil(rows x epochs / batch_size)), ``flowcore.train.config.epoch_steps``), with the plugin's
floor and, optionally, its batch rule. The floor keeps a small table from getting too few
optimizer steps to move at all (300 steps: the point where the GLU-MLP's Shape and Trend
on titanic and german credit have passed CTGAN's, benchmarks/RESULTS.md).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Sequence

from flowcore.errors import ConfigError
from flowcore.train.config import epoch_steps

MIN_STEPS = 300


def train_rows(config, registry) -> int:
    """How many rows the run's train split holds (its dataset or CSV, after ``data.limit``)."""
    from flowcore.train.bundle import build_bundles
    from flowcore.train.data import build_split

    bundles = build_bundles(config, registry, load_autoencoders=False)
    return len(build_split(config, bundles, "train", registry))


def epoch_overrides(config, rows: int, epochs: float, min_steps: int = MIN_STEPS,
                    batch_size: int | None = None) -> list[str]:
    """``--set`` overrides giving ``config`` an epoch budget (train.epochs, train.min_steps), and warm-up /
    checkpoint intervals shortened where they would exceed its steps (warm-up at most a tenth of them).
    ``batch_size``: the batch the run will have, when another override sets it (default: the config's)."""
    steps = epoch_steps(rows, epochs, batch_size or config.train.batch_size, min_steps)
    out = ["train.steps=null", f"train.epochs={epochs}", f"train.min_steps={min_steps}"]
    if config.train.warmup_steps > steps // 10:
        out.append(f"train.warmup_steps={steps // 10}")
    if config.train.checkpoint_every > steps:
        out.append(f"train.checkpoint_every={steps}")
    return out


def load_with_epochs(path: str | Path, overrides: Sequence[str], epochs: float, min_steps: int = MIN_STEPS,
                     registry=None, batch_rule: str | None = None):
    """(Config, its train rows, the overrides added): the YAML config with an epoch budget.

    ``batch_rule`` (``glu`` or ``transformer``): first set ``train.batch_size`` and ``train.lr``
    from the table's rows by that network's rule (:func:`rule_batch`)."""
    from flowcore.registry import get_registry
    from flowcore.train.config import load_config

    registry = registry or get_registry()
    config = load_config(path, overrides, registry)
    rows = train_rows(config, registry)
    extra = batch_rule_overrides(batch_rule, rows) if batch_rule else []
    batch = rule_batch(batch_rule, rows)[0] if batch_rule else None
    extra += epoch_overrides(config, rows, epochs, min_steps, batch_size=batch)
    return load_config(path, [*overrides, *extra], registry), rows, extra


def rows_batch(rows: int, low: int = 256, high: int = 1024, per_epoch: int = 32) -> int:
    """A batch size for a table of ``rows`` rows: the power of two nearest ``rows / per_epoch``, within
    [low, high].

    A small table keeps 256-row batches (titanic, german credit: the 300-step floor is already
    dozens of epochs); a large one gets bigger batches, so an epoch budget of more passes over it
    costs fewer, cheaper-per-row steps (Adult: 1,024; RecTable itself uses 4,096 on a GPU).
    """
    if rows < 1 or per_epoch < 1 or not 1 <= low <= high:
        raise ConfigError(f"rows_batch needs rows >= 1, per_epoch >= 1 and 1 <= low <= high; got rows={rows}, "
                          f"per_epoch={per_epoch}, low={low}, high={high}")
    target = rows / per_epoch
    power = 2 ** round(math.log2(max(target, 1.0)))
    return int(min(high, max(low, power)))


def scaled_lr(lr: float, batch_size: int, reference_batch: int = 256) -> float:
    """``lr`` tuned at ``reference_batch`` rows, scaled by sqrt(batch / reference) (the square-root
    rule for Adam-type optimisers: the gradient noise falls as 1 / sqrt(batch))."""
    return lr * math.sqrt(batch_size / reference_batch)


#: The ColumnTransformer's budget (the FlowTransformer on column tokens; benchmarks/notes/tabular.md,
#: "FlowTransformer on column tokens"): width 64, 4 heads, 2 single-stream blocks, 12 epochs with a
#: floor of 150 steps; tables of more than TRANSFORMER_DEEP_ROWS rows get 4 blocks and 20 epochs
#: (Adult: at 12 its rarest categories, 0.16 % of rows, came out at an eighth of their rate). A row
#: costs about ten GLU rows (one token per column), so small tables get small batches.
TRANSFORMER_OPTIONS = {"hidden_size": 64, "num_heads": 4, "depth_double": 0, "depth_single": 2, "mlp_ratio": 2.0,
                       "column_ids": True, "rope": False, "own_channels": True}
TRANSFORMER_EPOCHS, TRANSFORMER_MIN_STEPS = 12.0, 150
TRANSFORMER_LR, TRANSFORMER_LR_BATCH = 3e-3, 128
TRANSFORMER_DEEP_ROWS, TRANSFORMER_DEEP, TRANSFORMER_DEEP_EPOCHS = 10_000, 4, 20.0


def transformer_batch(rows: int) -> tuple[int, float]:
    """The ColumnTransformer's (batch, lr) on ``rows`` training rows: ``rows_batch(rows, 64, 256,
    per_epoch=32)`` (german credit and titanic 64, Adult 256) and lr 3e-3 x sqrt(batch / 128), at most 3e-3."""
    batch = rows_batch(rows, low=64, high=256, per_epoch=32)
    return batch, min(TRANSFORMER_LR, scaled_lr(TRANSFORMER_LR, batch, TRANSFORMER_LR_BATCH))


def transformer_epochs(rows: int) -> float:
    """The ColumnTransformer's epochs on ``rows`` training rows (more on large tables, see above)."""
    return TRANSFORMER_DEEP_EPOCHS if rows > TRANSFORMER_DEEP_ROWS else TRANSFORMER_EPOCHS


def transformer_options(rows: int) -> dict:
    """The ColumnTransformer's ``model.options`` on ``rows`` training rows (deeper on large tables)."""
    depth = TRANSFORMER_DEEP if rows > TRANSFORMER_DEEP_ROWS else TRANSFORMER_OPTIONS["depth_single"]
    return {**TRANSFORMER_OPTIONS, "depth_single": depth}


#: the GLU-MLP's peak lr at 256 rows a batch (benchmarks/tabular.py; docs "GLU-MLP sizes")
GLU_LR = 3e-3
BATCH_RULES = ("glu", "transformer")


def glu_batch(rows: int) -> tuple[int, float]:
    """The GLU-MLP's (batch, lr) on ``rows`` training rows: ``rows_batch(rows)`` at ``GLU_LR`` x sqrt(batch / 256)."""
    batch = rows_batch(rows)
    return batch, scaled_lr(GLU_LR, batch)


def rule_batch(rule: str, rows: int) -> tuple[int, float]:
    """(batch, lr) by a network's rule on ``rows`` rows: ``glu``: :func:`glu_batch`;
    ``transformer``: :func:`transformer_batch`."""
    if rule == "glu":
        return glu_batch(rows)
    if rule == "transformer":
        return transformer_batch(rows)
    raise ConfigError(f"batch rule {rule!r}; use one of {list(BATCH_RULES)}")


def batch_rule_overrides(rule: str, rows: int) -> list[str]:
    """``--set`` overrides of train.batch_size and train.lr by a network's rule (:func:`rule_batch`)."""
    batch, lr = rule_batch(rule, rows)
    return [f"train.batch_size={batch}", f"train.lr={lr:.6g}"]
