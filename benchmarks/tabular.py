"""flowcore-tabular vs CTGAN and TVAE (the `ctgan` package) on Adult, titanic and german credit.

    .venv/bin/pip install ctgan            # or: pip install -e plugins/tabular[bench]
    .venv/bin/python benchmarks/tabular.py [--tables adult titanic german_credit] [--quick]

One run, one machine, every model on the same train split (seed 0) of our datasets:

- ``flowcore-glu`` (the default network): RecTable rows (one flat token, mixed prior) and
  RecTable's GLU-MLP as a plugin network, trained by the core pipeline
  (``flowcore.train.pipeline.train``).
- ``flowcore-transformer``: one token per column, the core FlowTransformer inside the plugin's
  ``ColumnTransformer`` (a learned embedding per column, velocity only on a token's own
  channels), same pipeline.
- ``ctgan``, ``tvae``: the ctgan package's models, CPU, their default widths and batch size,
  their default 300 epochs (adult: 10, to fit the machine's time; stated in the output).

flowcore's budget is in epochs, as ``flowcore tabular-train --epochs`` sets it:
steps = max(300, ceil(train rows x epochs / batch)) (``flowcore_tabular.budget``): the GLU
32 epochs in batches of ``rows_batch(rows)`` rows (256 on titanic and german credit, 1,024 on
Adult) at lr 3e-3 x sqrt(batch / 256); the transformer 12 epochs, at least 150 steps, in
batches of ``rows_batch(rows, 64, 256, per_epoch=32)`` at lr 3e-3 x sqrt(batch / 128) (at most
3e-3): ``flowcore_tabular.budget.transformer_batch``. Both see the tables with ``integer_levels: 20``
(few-valued integer columns one-hot).

``--impute`` instead measures imputation on titanic's test split: each target column is
generated given all the others, by masked-column models (GLU rows and transformer columns,
``masking: 0.5``) and by the guidance route on an unconditional GLU, against drawing the
target from its training marginal and a gradient-boosted predictor trained on the train split.

Metrics are this plugin's (``flowcore_tabular.metrics``, TabSyn's definitions) on
``min(train rows, 5000)`` generated rows: Shape, Trend, C2ST and alpha/beta against the
training rows (as TabSyn compares), MLE trained on generated and tested on the test split,
DCR share (training vs test rows; 0.5 ideal). Training time is the wall-clock of the fit
call (for flowcore: the whole ``train`` call, Lightning start-up included), with the process
CPU time and the load average before and after beside it.

Writes benchmarks/results/tabular.json and the "## tabular" section of benchmarks/RESULTS.md.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from results_md import replace_section  # noqa: E402  (benchmarks/ is on sys.path when run)

from flowcore_tabular.budget import (
    GLU_LR,
    TRANSFORMER_DEEP,
    TRANSFORMER_DEEP_EPOCHS,
    TRANSFORMER_DEEP_ROWS,
    TRANSFORMER_EPOCHS,
    TRANSFORMER_LR,
    TRANSFORMER_LR_BATCH,
    TRANSFORMER_MIN_STEPS,
    TRANSFORMER_OPTIONS,
    glu_batch,
    transformer_batch,
    transformer_epochs,
    transformer_options,
)

ROOT = Path(__file__).resolve().parents[1]

# per table: peer epochs (their default is 300; adult's 10 keep the run within the machine's time)
PEER_EPOCHS = {"adult": 10, "titanic": 300, "german_credit": 300}
PEER_DEFAULT_EPOCHS = 300
# tables whose peers run short of their default get a second CTGAN run at this many epochs:
# (t(20) - t(10)) / 10 is CTGAN's measured time per epoch there, which gives an estimate of its
# time at 300 epochs, t(10) + 290 x that (reported as an estimate, beside the measured ratio)
SLOPE_EPOCHS = {"adult": 20}
QUICK_PEER_EPOCHS = 2
# flowcore's budgets: steps = max(MIN_STEPS_BY_NETWORK, ceil(rows x epochs / batch)). The GLU's 32 epochs
# only lengthen training on Adult (titanic and german credit stay at its 300-step floor). The
# transformer: 12 epochs (20 on tables of more than 10,000 rows: transformer_epochs), at least 150 steps
# (german credit gets the floor, = 12 epochs of 64 rows)
EPOCHS = {"mlp": 32.0, "transformer": TRANSFORMER_EPOCHS}
MIN_STEPS_BY_NETWORK = {"mlp": 300, "transformer": TRANSFORMER_MIN_STEPS}
QUICK_EPOCHS = 0.1
# the FlowTransformer route: the core FlowTransformer on column tokens inside the plugin's
# ColumnTransformer; its budget rule is flowcore_tabular.budget's (transformer_batch, transformer_options,
# TRANSFORMER_*): batch rows_batch(rows, 64, 256, per_epoch=32), lr 3e-3 x sqrt(batch / 128) at most 3e-3,
# 4 blocks instead of 2 on tables of more than 10,000 rows (benchmarks/notes/tabular.md has the probes)

# the modality options of both networks: integer columns with at most 20 values one-hot, and columns
# that relabel each other modelled once (the default; on these tables: Adult's education_num, decoded
# from education, the pair both networks lost when they generated it as a column of its own)
TABLE_OPTIONS = {"integer_levels": 20, "relabels": "auto"}
MAX_ROWS = 5000
# two GLU blocks of 128 at lr 3e-3 (at 256 rows a batch; sqrt-scaled for larger batches): on this
# CPU's budgets the shallow, narrow GLU-MLP learns the tables' pairs faster than the earlier
# 256-512-256-256 at 1e-3 (german credit Trend 0.90 vs 0.80 in the same 300 steps, at a third of the
# time per step); benchmarks/notes/tabular.md has the probes
GLU_HIDDEN = (128, 128)
IMPUTE_TABLE, IMPUTE_TARGETS, IMPUTE_MASKING = "titanic", ("survived", "class", "age"), 0.5
IMPUTE_DRAWS = 9  # draws per row: the first is scored as one draw, all of them by their mode / median


def batch_and_lr(network: str, rows: int) -> tuple[int, float]:
    """Batch size and peak lr of a network on a table of ``rows`` training rows."""
    return glu_batch(rows) if network == "mlp" else transformer_batch(rows)


def flowcore_config(table: str, network: str, steps: int, out_dir: Path, masking: float = 0.0,
                    rows: int = 1, table_options: dict[str, Any] | None = None) -> dict[str, Any]:
    """The run's config. ``table_options``: more modality options (both benchmarks pass ``TABLE_OPTIONS``)."""
    tokenizer = "row" if network == "mlp" else "column"
    batch, lr = batch_and_lr(network, rows)
    model: dict[str, Any] = {"network": network}
    if network == "mlp":  # RecTable's GLU-MLP, a plugin network
        model = {"network": "flowcore_tabular.network:RecTableMLP",
                 "options": {"hidden": list(GLU_HIDDEN), "time_dim": 128}}
    if network == "transformer":
        model = {"network": "flowcore_tabular.network:ColumnTransformer", "options": transformer_options(rows)}
    return {
        "seed": 0, "out_dir": str(out_dir),
        "modalities": {"tabular": {"dataset": table, "tokenizer": tokenizer, "masking": masking,
                                   **(table_options or {})}},
        "data": {"dataset": table},
        "model": model,
        "flow": {"timesteps": "logit_normal"},
        "train": {"steps": steps, "batch_size": batch, "lr": lr, "schedule": "cosine",
                  "warmup_steps": min(100, steps // 10), "ema": 0.999,
                  "cpu_threads": 1, "checkpoint_every": steps, "progress_bar": False, "log_every": 50},
        "sample": {"steps": 50, "solver": "euler"},
    }


class Clock:
    """Wall and process CPU seconds of a block, and the load average before and after."""

    def __enter__(self) -> "Clock":
        self.load_start = os.getloadavg()[0]
        self.wall, self.cpu = time.perf_counter(), time.process_time()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.wall = time.perf_counter() - self.wall
        self.cpu = time.process_time() - self.cpu
        self.load_end = os.getloadavg()[0]

    def record(self) -> dict[str, float]:
        return {"train_seconds": self.wall, "cpu_seconds": self.cpu, "load_start": self.load_start,
                "load_end": self.load_end}


def train_run(table: str, network: str, steps: int, run: Path, rows: int, masking: float = 0.0,
              table_options: dict[str, Any] | None = None) -> Clock:
    from flowcore.train.config import from_dict
    from flowcore.train.pipeline import train

    config = from_dict(flowcore_config(table, network, steps, run, masking, rows, table_options))
    with Clock() as clock:
        train(config)
    return clock


def train_flowcore(table: str, network: str, steps: int, count: int, rows: int, work: Path
                   ) -> tuple[list[dict], Clock]:
    from flowcore.train.pipeline import sample
    from flowcore_tabular.codec import TableCsv
    from flowcore_tabular.modality import Tabular

    run = work / f"{table}_{network}"
    clock = train_run(table, network, steps, run, rows, table_options=TABLE_OPTIONS)
    [csv] = sample(run, ["tabular"], {}, work / f"{table}_{network}_samples", count=count, device="cpu").paths
    return TableCsv(Tabular(dataset=table).schema).read_all(csv), clock


def to_peer_frame(schema, rows):
    import pandas as pd

    data = {}
    for col in schema.columns:
        values = [r[col.name] for r in rows]
        if col.continuous:
            data[col.name] = pd.Series([float(v) for v in values], dtype="float64")
        else:
            data[col.name] = pd.Series(["<missing>" if v is None else str(v) for v in values], dtype="object")
    return pd.DataFrame(data)


def from_peer_frame(schema, frame) -> list[dict]:
    rows = []
    for rec in frame.to_dict("records"):
        row = {}
        for col in schema.columns:
            v = rec[col.name]
            if col.kind == "integer":
                row[col.name] = int(round(float(v)))
            elif col.kind == "numeric":
                row[col.name] = float(round(float(v), col.decimals)) if col.decimals is not None else float(v)
            elif col.kind == "boolean":
                row[col.name] = None if v == "<missing>" else v == "True"
            else:
                row[col.name] = None if v == "<missing>" else str(v)
        rows.append(row)
    return rows


def train_peer(kind: str, table, epochs: int, count: int) -> tuple[list[dict], Clock]:
    import torch
    from ctgan import CTGAN, TVAE

    torch.set_num_threads(1)
    frame = to_peer_frame(table.schema, table.splits["train"])
    discrete = [c.name for c in table.schema.columns if not c.continuous]
    model = (CTGAN if kind == "ctgan" else TVAE)(epochs=epochs, enable_gpu=False)
    torch.manual_seed(0)
    with Clock() as clock:
        model.fit(frame, discrete)
    return from_peer_frame(table.schema, model.sample(count)), clock


def evaluate(table, generated: list[dict], seed: int = 0) -> dict[str, float]:
    from flowcore_tabular import metrics as M

    train = table.splits["train"]
    real = M._subsample(train, MAX_ROWS, seed)
    cache = M._QualityCache()
    alpha, beta = M.alpha_beta(table.schema, real, generated, seed)
    return {
        "shape": M.column_shapes(table.schema, real, generated, cache),
        "trend": M.column_pair_trends(table.schema, real, generated, cache),
        "c2st": M.c2st(table.schema, real, generated),
        "mle_auc": M.mle(table.schema, table.target, table.splits["test"], generated, seed),
        "alpha_precision": alpha,
        "beta_recall": beta,
        "dcr_share": M.dcr_share(table.schema, train, table.splits["test"], generated, seed),
    }


def real_reference(table, seed: int = 0) -> dict[str, float]:
    """What real data scores, each metric with real rows the model would not have seen.

    Shape, Trend, C2ST, alpha/beta: the test rows in place of generated ones. MLE: trained on
    the training rows (the usual upper reference). DCR: the val rows, which are in neither
    reference set; with a training set larger than the test set a perfect generator scores
    above 0.5 too, and this row says how far.
    """
    from flowcore_tabular import metrics as M

    scores = evaluate(table, table.splits["test"], seed)
    scores["mle_auc"] = M.mle(table.schema, table.target, table.splits["test"], table.splits["train"], seed)
    scores["dcr_share"] = M.dcr_share(table.schema, table.splits["train"], table.splits["test"],
                                      table.splits["val"], seed)
    return scores


def ctgan_estimate(models: dict[str, Any]) -> dict[str, Any] | None:
    """CTGAN's time at its default epochs, from two or more measured runs of fewer epochs.

    A least-squares line through (epochs, train seconds) of every shorter CTGAN run
    (``SLOPE_EPOCHS``, and e.g. ``--models ctgan --peer-epochs 40 --merge``): its slope is the
    time per epoch, and the line at 300 epochs the estimate.
    """
    import numpy as np

    runs = {r["peer_epochs"]: r["train_seconds"] for k, r in models.items()
            if k.startswith("ctgan") and r.get("peer_epochs") and r.get("train_seconds")
            and r["peer_epochs"] < PEER_DEFAULT_EPOCHS}
    if len(runs) < 2:
        return None
    epochs = sorted(runs)
    per_epoch, start = np.polyfit(epochs, [runs[e] for e in epochs], 1)
    return {"epochs": tuple(epochs), "per_epoch_seconds": float(per_epoch),
            "seconds": float(start + PEER_DEFAULT_EPOCHS * per_epoch)}


def goal_line(table: str, models: dict[str, Any], name: str) -> str:
    """Does ``name`` beat every peer row on Shape and Trend, in at most a third of CTGAN's time?

    CTGAN's time is its time at its default 300 epochs: measured where it ran them, else the
    estimate from its two shorter runs (``ctgan_estimate``, said to be one), else (no estimate)
    its measured shorter run.
    """
    if name not in models or "ctgan" not in models or "tvae" not in models:
        return ""
    m = models[name]
    peers = [r for k, r in models.items() if k.startswith(("ctgan", "tvae"))]
    shape = all(m["metrics"]["shape"] > p["metrics"]["shape"] for p in peers)
    trend = all(m["metrics"]["trend"] > p["metrics"]["trend"] for p in peers)
    ctgan = models["ctgan"]
    ctgan_epochs = ctgan.get("peer_epochs", PEER_EPOCHS.get(table))
    measured = m["train_seconds"] / ctgan["train_seconds"]
    est = ctgan_estimate(models) if ctgan_epochs != PEER_DEFAULT_EPOCHS else None
    ratio = m["train_seconds"] / est["seconds"] if est else measured
    verdict = "met" if shape and trend and ratio <= 1 / 3 else "NOT met"
    line = (f"- {table}, {name}: Shape {'above' if shape else 'NOT above'} every peer row, Trend "
            f"{'above' if trend else 'NOT above'} every peer row, {measured:.2f}x CTGAN's measured training time "
            f"({ctgan_epochs} epochs)")
    if est:
        line += (f", {ratio:.3f}x its time at its default {PEER_DEFAULT_EPOCHS} epochs, estimated from its runs at "
                 f"{', '.join(map(str, est['epochs']))} epochs ({est['per_epoch_seconds']:.1f} s per epoch, "
                 f"{est['seconds']:.0f} s in all; not measured)")
    return line + f": goal {verdict}."


def write_results(results: dict[str, Any], args: argparse.Namespace) -> None:
    out = ROOT / "benchmarks" / "results" / "tabular.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=1) + "\n")
    lines = ["## tabular", "",
             f"`{results['command']}` — {results['date']}, {results['machine']}. One run per table, models side "
             "by side on the same machine, each run holding the machine's CPU lock (no other benchmark ran "
             "meanwhile; other processes, editors and tests, could). Train s: wall-clock of the fit call (flowcore: "
             "the whole `train` call, Lightning start-up included); CPU s: the process CPU time of it; load: the "
             "1-minute load average before / after; x CTGAN: train s over CTGAN's on the same table.", "",
             "Shape, Trend, C2ST, alpha/beta: generated vs training rows (TabSyn's convention); MLE: "
             "ROC AUC of gradient boosting trained on generated rows, tested on the test split; DCR: share of "
             "generated rows nearer to a training row than to a test row (0.5 ideal for equal-sized sets). "
             f"{results['generated_rows']}. `real (test split)`: held-out real data in place of generated rows "
             "(test rows; for MLE the model is trained on the training rows; for DCR the val rows), i.e. "
             "what a perfect generator scores under the same size imbalance.", "",
             "Budgets. flowcore: steps = max(floor, ceil(train rows x epochs / batch)) (`flowcore tabular-train "
             f"--epochs E --min-steps floor`), floor {MIN_STEPS_BY_NETWORK['mlp']} for the GLU and "
             f"{MIN_STEPS_BY_NETWORK['transformer']} for the transformer. GLU-MLP: {EPOCHS['mlp']:g} epochs "
             "(titanic and german credit stay at the 300-step floor), "
             "batch `rows_batch(train rows)` (the power of two nearest rows / 32, within 256-1024: 256 on titanic "
             f"and german credit, 1,024 on adult), lr {GLU_LR:g} x sqrt(batch / 256), widths "
             f"{'-'.join(map(str, GLU_HIDDEN))} (RecTable: 1024-2048-1024-1024); FlowTransformer (the plugin's "
             "ColumnTransformer: the core FlowTransformer on column tokens with a learned embedding per column, no "
             "rotary positions, velocity only on a token's own channels): "
             f"{EPOCHS['transformer']:g} epochs ({TRANSFORMER_DEEP_EPOCHS:g} on adult), at least "
             f"{MIN_STEPS_BY_NETWORK['transformer']} steps (its own floor; "
             "german credit gets the floor), batch `rows_batch(train rows, 64, 256, per_epoch=32)` (64 on "
             f"german credit and titanic, 256 on adult), lr {TRANSFORMER_LR:g} x sqrt(batch / "
             f"{TRANSFORMER_LR_BATCH}), at most {TRANSFORMER_LR:g}, width {TRANSFORMER_OPTIONS['hidden_size']}, "
             f"{TRANSFORMER_OPTIONS['num_heads']} heads, {TRANSFORMER_OPTIONS['depth_single']} single-stream blocks "
             f"({TRANSFORMER_DEEP} on tables of more than {TRANSFORMER_DEEP_ROWS:,} rows: adult), mlp ratio "
             f"{TRANSFORMER_OPTIONS['mlp_ratio']:g}; both "
             f"with the modality options {TABLE_OPTIONS} (integer columns with at most 20 values one-hot; columns "
             "that relabel each other modelled once, the other decoded by lookup: on these tables adult's "
             "education_num from education; docs/plugins/tabular.md); logit-normal t, AdamW, cosine lr, EMA 0.999, "
             "1 CPU thread, 50 Euler steps to sample. Peers: the ctgan package's CTGAN and TVAE at their default "
             "widths, batch 500 and 300 epochs (adult: 10 epochs, so that the run fits the machine's time; a second "
             "CTGAN run at 20 epochs measures its time per epoch there, for an estimate of its time at 300 "
             "epochs), CPU, 1 thread. The goal lines compare Shape and Trend against every peer row.", ""]
    goals = []
    for table, res in results["tables"].items():
        models = res["models"]
        ctgan = models.get("ctgan", {}).get("train_seconds")
        relabelled = f"; relabelled columns: {', '.join(res['relabels']) or 'none'}" if "relabels" in res else ""
        lines += [f"### {table} ({res['train_rows']} train rows{relabelled})", "",
                  "| model | budget | train s | CPU s | load | x CTGAN | Shape | Trend | C2ST | MLE AUC | alpha | beta "
                  "| DCR share |",
                  "| --- | --- | ---: | ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
        for name, r in models.items():
            m = r["metrics"]
            secs = r.get("train_seconds")
            timing = (f"{secs:.1f} | {r['cpu_seconds']:.1f} | {r['load_start']:.1f} / {r['load_end']:.1f} | "
                      + (f"{secs / ctgan:.2f}" if ctgan else "-")) if secs is not None else "- | - | - | -"
            lines.append(f"| {name} | {r['budget']} | {timing} | {m['shape']:.3f} | {m['trend']:.3f} | "
                         f"{m['c2st']:.3f} | {m['mle_auc']:.3f} | {m['alpha_precision']:.3f} | "
                         f"{m['beta_recall']:.3f} | {m['dcr_share']:.3f} |")
        lines.append("")
        goals += [g for g in (goal_line(table, models, "flowcore-glu"),
                              goal_line(table, models, "flowcore-transformer")) if g]
    if goals:
        lines += ["Against the goal (better Shape and Trend than every peer row, at most a third of CTGAN's "
                  "training time; flowcore-glu is the default network):", "", *goals, ""]
    imp = results.get("imputation")
    if imp:
        lines += [f"### imputation ({imp['table']}, {imp['test_rows']} test rows)", "",
                  f"`{results.get('impute_command', '')}` — {results.get('impute_date', '')}. Each target column is "
                  "generated given every other column of the test rows (50 Euler steps), "
                  "scored on one draw per row and "
                  f"on the mode (a number: the median) of {IMPUTE_DRAWS} draws per row. "
                  "`masked`: a model trained with `masking: "
                  f"{imp['masking']}` (known columns held at their values, flag channels), imputed by the masked "
                  "route; `guidance`: an unconditionally trained GLU, replacement plus reconstruction guidance 5. "
                  "`marginal draw`: the target drawn from its training column, ignoring the row; `gradient "
                  "boosting`: scikit-learn HistGradientBoosting trained on the train split to predict the target "
                  "(a point predictor: the upper reference for accuracy and error, not a sampler); `a draw from its "
                  "probabilities`: a category drawn from that model's class probabilities, what a one-draw sampler "
                  "that knew them would score (the fair reference for a single flow draw).", "",
                  "| model | budget | train s | CPU s |", "| --- | --- | ---: | ---: |"]
        for name, r in imp["models"].items():
            lines.append(f"| {name} | {r['budget']} | {r['train_seconds']:.1f} | {r['cpu_seconds']:.1f} |")
        lines.append("")
        for target, scores in imp["targets"].items():
            keys = sorted({k for v in scores.values() for k in v if k != "impute_seconds"})
            lines += [f"{target}:", "", "| imputer | " + " | ".join(keys) + " |",
                      "| --- |" + " ---: |" * len(keys)]
            for name, v in scores.items():
                lines.append(f"| {name} | " + " | ".join(f"{v[k]:.3f}" for k in keys) + " |")
            lines.append("")
    lines += results.get("notes", [])
    section = "\n".join(lines).rstrip() + "\n"
    path = ROOT / "benchmarks" / "RESULTS.md"
    replace_section(path, "tabular", section)


def run_tables(args: argparse.Namespace, results: dict[str, Any], work: Path) -> None:
    """Every model on every table of ``args.tables``; results are written after each model."""
    from threadpoolctl import threadpool_limits

    from flowcore.train.config import epoch_steps
    from flowcore_tabular.datasets import load_table
    from flowcore_tabular.relabel import find_relabels

    for name in args.tables:
        table = load_table(name, 0)
        n = len(table.splits["train"])
        count = min(n, MAX_ROWS)
        res = results["tables"].get(name) or {"train_rows": n, "models": {}}
        res["relabels"] = [f"{r.column} <- {r.source}" for r in find_relabels(table.schema, table.splits["train"])]
        if "real (test split)" not in res["models"]:
            with threadpool_limits(1):
                res["models"]["real (test split)"] = {"budget": "-", "train_seconds": None,
                                                      "metrics": real_reference(table)}
        jobs = [(model, None) for model in args.models]
        if "ctgan" in args.models and name in SLOPE_EPOCHS and not args.quick and not args.peer_epochs:
            jobs.append(("ctgan", SLOPE_EPOCHS[name]))  # the second run for CTGAN's time per epoch
        for model, slope_epochs in jobs:
            print(f"[{name}] {model} ...", flush=True)
            peer_epochs = None
            if model.startswith("flowcore"):
                network = "mlp" if model == "flowcore-glu" else "transformer"
                if args.quick:
                    epochs = QUICK_EPOCHS
                elif network == "mlp":
                    epochs = args.epochs or EPOCHS["mlp"]
                else:
                    epochs = transformer_epochs(n)
                batch, lr = batch_and_lr(network, n)
                steps = epoch_steps(n, epochs, batch, 5 if args.quick else MIN_STEPS_BY_NETWORK[network])
                rows, clock = train_flowcore(name, network, steps, count, n, work)
                label = f"{steps} steps x {batch} ({steps * batch / n:.0f} epochs), lr {lr:.3g}"
            else:
                peer_epochs = (slope_epochs or args.peer_epochs
                               or (QUICK_PEER_EPOCHS if args.quick else PEER_EPOCHS[name]))
                rows, clock = train_peer(model, table, peer_epochs, count)
                label = f"{peer_epochs} epochs x 500"
            with threadpool_limits(1):
                metrics = evaluate(table, rows)
            if slope_epochs or (peer_epochs and args.peer_epochs and peer_epochs != PEER_EPOCHS[name]):
                key = f"{model} ({peer_epochs} epochs)"
            elif not args.epochs or model != "flowcore-glu":
                key = model
            else:
                key = f"{model} ({args.epochs:g} epochs)"
            res["models"][key] = {"budget": label, **clock.record(), "metrics": metrics}
            if peer_epochs is not None:
                res["models"][key]["peer_epochs"] = peer_epochs
            print(f"[{name}] {key}: {clock.wall:.1f} s wall, {clock.cpu:.1f} s CPU, "
                  f"{json.dumps({k: round(v, 3) for k, v in metrics.items()})}", flush=True)
            results["tables"][name] = res
            if not args.no_write:
                write_results(results, args)


def marginal_draws(values: list[Any], count: int, seed: int) -> list[Any]:
    """``count`` values drawn from the training column: the imputation baseline that ignores the row."""
    import numpy as np

    rng = np.random.default_rng(seed)
    return [values[i] for i in rng.integers(0, len(values), count)]


def marginal_scores(column, truth: list[Any], train_values: list[Any]) -> dict[str, dict[str, float]]:
    """The marginal baseline scored as the flows are: one draw, and the mode / median of several."""
    draws = [marginal_draws(train_values, len(truth), seed) for seed in range(IMPUTE_DRAWS)]
    return {"marginal draw": impute_score(column, truth, draws[0]),
            f"marginal, {IMPUTE_DRAWS} draws' {'median' if column.continuous else 'mode'}":
                impute_score(column, truth, consensus(column, draws))}


def gbm_predictions(schema, train: list[dict], test: list[dict], target: str, seed: int = 0,
                    draw: bool = False) -> list[Any]:
    """A gradient-boosted model of ``target`` from every other column (the upper reference).

    ``draw``: a category drawn from the model's class probabilities instead of the likeliest
    one: what a sampler that knew those probabilities would score with one draw per row.
    """
    import numpy as np
    from sklearn.ensemble import HistGradientBoostingClassifier, HistGradientBoostingRegressor

    features = [c for c in schema.columns if c.name != target]

    def matrix(rows):
        cols = []
        for c in features:
            if c.continuous:
                cols.append(np.array([[np.nan if r[c.name] is None else float(r[c.name])] for r in rows]))
            else:
                cats = list(c.categories)
                cols.append(np.array([[cats.index(str(r[c.name])) if r[c.name] is not None else -1]
                                      for r in rows], dtype=float))
        return np.hstack(cols)

    mask = [not c.continuous for c in features]
    y = [r[target] for r in train]
    column = schema[target]
    model = (HistGradientBoostingRegressor if column.continuous else HistGradientBoostingClassifier)(
        categorical_features=mask, random_state=seed)
    model.fit(matrix(train), np.array(y, dtype=float if column.continuous else object))
    if draw:
        probs = model.predict_proba(matrix(test))
        rng = np.random.default_rng(seed)
        return [model.classes_[rng.choice(len(p), p=p / p.sum())] for p in probs]
    return list(model.predict(matrix(test)))


def consensus(column, draws: list[list[Any]]) -> list[Any]:
    """Per row, the most frequent of several imputed draws (a category) or their median (a number)."""
    from collections import Counter

    import numpy as np

    per_row = list(zip(*draws))
    if column.continuous:
        return [float(np.median([np.nan if v is None else float(v) for v in vs])) for vs in per_row]
    return [Counter(map(str, vs)).most_common(1)[0][0] for vs in per_row]


def impute_score(column, truth: list[Any], guess: list[Any]) -> dict[str, float]:
    """Accuracy for a category; mean absolute error and RMSE for a number."""
    import numpy as np

    if not column.continuous:
        return {"accuracy": float(np.mean([str(a) == str(b) for a, b in zip(truth, guess)]))}
    err = np.array(guess, dtype=float) - np.array(truth, dtype=float)
    return {"mae": float(np.abs(err).mean()), "rmse": float(np.sqrt((err ** 2).mean()))}


def run_imputation(args: argparse.Namespace, results: dict[str, Any], work: Path) -> None:
    """Masked-column and guidance imputation vs the marginal and a gradient-boosted predictor."""
    from threadpoolctl import threadpool_limits

    import flowcore
    from flowcore.train.config import epoch_steps
    from flowcore.train.sampling import SamplingOptions
    from flowcore_tabular.datasets import load_table
    from flowcore_tabular.impute import impute

    table = load_table(IMPUTE_TABLE, 0)
    train_rows, test = table.splits["train"], table.splits["test"]
    n = len(train_rows)
    epochs = QUICK_EPOCHS if args.quick else args.impute_epochs
    models = {"flowcore-glu masked": ("mlp", IMPUTE_MASKING, "masked"),
              "flowcore-transformer masked": ("transformer", IMPUTE_MASKING, "masked"),
              "flowcore-glu guidance": ("mlp", 0.0, "guidance")}
    out: dict[str, Any] = {"table": IMPUTE_TABLE, "test_rows": len(test), "masking": IMPUTE_MASKING,
                           "targets": {t: {} for t in IMPUTE_TARGETS}, "models": {}}
    for label, (network, masking, method) in models.items():
        batch, _ = batch_and_lr(network, n)
        steps = epoch_steps(n, epochs, batch, 5 if args.quick else MIN_STEPS_BY_NETWORK[network])
        run = work / f"impute_{network}_{masking}"
        clock = train_run(IMPUTE_TABLE, network, steps, run, n, masking, table_options=TABLE_OPTIONS)
        out["models"][label] = {"budget": f"{steps} steps x {batch} ({steps * batch / n:.0f} "
                                          f"epochs), masking {masking}", **clock.record()}
        loaded = flowcore.load(run, device="cpu")
        modality = loaded.bundles["tabular"].modality
        for target in IMPUTE_TARGETS:
            given = [c for c in table.schema.names if c != target]
            column, truth = table.schema[target], [r[target] for r in test]
            draws = []
            with Clock() as c:
                for seed in range(IMPUTE_DRAWS):
                    rows = impute(loaded.net, modality, [{k: r[k] for k in given} for r in test], given,
                                  SamplingOptions(steps=50, seed=seed), method=method)
                    draws.append([r[target] for r in rows])
            score = impute_score(column, truth, draws[0])
            out["targets"][target][label] = {**score, "impute_seconds": c.wall / IMPUTE_DRAWS}
            out["targets"][target][f"{label}, {IMPUTE_DRAWS} draws' {'median' if column.continuous else 'mode'}"] = \
                impute_score(column, truth, consensus(column, draws))
            print(f"[impute {target}] {label}: {score}", flush=True)
    for target in IMPUTE_TARGETS:
        column, truth = table.schema[target], [r[target] for r in test]
        out["targets"][target].update(marginal_scores(column, truth, [r[target] for r in train_rows]))
        with threadpool_limits(1):
            out["targets"][target]["gradient boosting (predictor)"] = impute_score(
                column, truth, gbm_predictions(table.schema, train_rows, test, target))
            if not column.continuous:
                out["targets"][target]["gradient boosting (a draw from its probabilities)"] = impute_score(
                    column, truth, gbm_predictions(table.schema, train_rows, test, target, draw=True))
        print(f"[impute {target}] baselines: {out['targets'][target]}", flush=True)
    results["imputation"] = out
    if not args.no_write:
        write_results(results, args)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--tables", nargs="+", default=list(PEER_EPOCHS), choices=list(PEER_EPOCHS))
    parser.add_argument("--models", nargs="+", default=["flowcore-glu", "flowcore-transformer", "ctgan", "tvae"])
    parser.add_argument("--epochs", type=float, help=f"the GLU's epoch budget (default {EPOCHS['mlp']:g}; the "
                        f"transformer's is {EPOCHS['transformer']:g}); its rows are then named e.g. "
                        "'flowcore-glu (8 epochs)'")
    parser.add_argument("--peer-epochs", type=int, help="the peers' epochs for these tables, in place of "
                        f"{PEER_EPOCHS}; their rows are named e.g. 'tvae (300 epochs)' "
                        "(with --merge: beside the others)")
    parser.add_argument("--impute", action="store_true", help="the imputation benchmark (titanic) instead")
    parser.add_argument("--impute-epochs", type=float, default=16, help="epoch budget of the imputation models")
    parser.add_argument("--quick", action="store_true", help="tiny budgets: checks the script runs")
    parser.add_argument("--no-write", action="store_true", help="print only")
    parser.add_argument("--merge", action="store_true",
                        help="add to the saved results instead of starting afresh (model names get the epochs)")
    parser.add_argument("--reference-only", action="store_true",
                        help="recompute the real-data reference rows of the saved results and rewrite them")
    args = parser.parse_args()
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    from threadpoolctl import threadpool_limits

    from flowcore_tabular.datasets import load_table

    saved = ROOT / "benchmarks" / "results" / "tabular.json"
    if args.reference_only:
        results = json.loads(saved.read_text())
        for name, res in results["tables"].items():
            with threadpool_limits(1):
                res["models"]["real (test split)"]["metrics"] = real_reference(load_table(name, 0))
        write_results(results, args)
        return 0
    command = "python benchmarks/tabular.py " + " ".join(sys.argv[1:])
    now = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    results: dict[str, Any] = {
        "command": command, "date": now,
        "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, no GPU",
        "generated_rows": f"Generated rows per model: min(train rows, {MAX_ROWS}); real rows for "
                          f"Shape/Trend/C2ST/alpha-beta: a {MAX_ROWS}-row sample of train",
        "glu_hidden": list(GLU_HIDDEN), "glu_lr": GLU_LR, "transformer_options": TRANSFORMER_OPTIONS,
        "epochs": EPOCHS, "min_steps": MIN_STEPS_BY_NETWORK, "table_options": TABLE_OPTIONS, "peer_epochs": PEER_EPOCHS,
        "tables": {},
        "notes": [],
    }
    if (args.merge or args.impute) and saved.exists():
        previous = json.loads(saved.read_text())
        keep = {k: previous[k] for k in ("tables", "imputation", "impute_command", "impute_date", "notes", "command",
                                         "date") if k in previous}
        results.update(keep)
        if not args.impute:
            results["command"] = " ; ".join(c for c in (previous.get("command"), command) if c)
            results["date"] = " ; ".join(d for d in (previous.get("date"), now) if d)
        else:
            results["impute_command"] = command
            results["impute_date"] = now
    work = Path(tempfile.mkdtemp(prefix="flowcore_tabular_bench_"))
    if args.impute:
        run_imputation(args, results, work)
    else:
        run_tables(args, results, work)
    return 0


if __name__ == "__main__":
    sys.exit(main())
