"""flowcore-tabular vs CTGAN and TVAE (the `ctgan` package) on Adult, titanic and german credit.

    .venv/bin/pip install ctgan            # or: pip install -e plugins/tabular[bench]
    .venv/bin/python benchmarks/tabular.py [--tables adult titanic german_credit] [--quick]

One run, one machine, every model on the same train split (seed 0) of our datasets:

- ``flowcore-glu``: RecTable rows (one flat token, mixed prior) and RecTable's GLU-MLP,
  trained by the core pipeline (``flowcore.train.pipeline.train``). The pipeline has no hook
  for plugin networks yet, so this script swaps the GLU-MLP in for ``model.network: mlp``
  (the hook the pipeline should add does exactly this; see docs/plugins/tabular.md).
- ``flowcore-transformer``: one token per column, the core FlowTransformer
  (``model.network: transformer``), same pipeline.
- ``ctgan``, ``tvae``: the ctgan package's models, CPU, their default widths and batch size,
  fewer epochs than their default 300 (stated per table in the output).

Metrics are this plugin's (``flowcore_tabular.metrics``, TabSyn's definitions) on
``min(train rows, 5000)`` generated rows: Shape, Trend, C2ST and alpha/beta against the
training rows (as TabSyn compares), MLE trained on generated and tested on the test split,
DCR share (training vs test rows; 0.5 ideal). Training time is the wall-clock of the fit
call (for flowcore: the whole ``train`` call, Lightning start-up included).

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

ROOT = Path(__file__).resolve().parents[1]

# per table: peer epochs, our steps (budgets stated in the output; see --quick)
BUDGETS = {
    "adult": {"ctgan_epochs": 10, "tvae_epochs": 10, "glu_steps": 800, "transformer_steps": 300},
    "titanic": {"ctgan_epochs": 100, "tvae_epochs": 100, "glu_steps": 1200, "transformer_steps": 500},
    "german_credit": {"ctgan_epochs": 150, "tvae_epochs": 150, "glu_steps": 1000, "transformer_steps": 400},
}
QUICK = {"ctgan_epochs": 2, "tvae_epochs": 2, "glu_steps": 30, "transformer_steps": 20}
MAX_ROWS = 5000
GLU_HIDDEN = (256, 512, 256, 256)


def flowcore_config(table: str, network: str, steps: int, out_dir: Path) -> dict[str, Any]:
    tokenizer = "row" if network == "mlp" else "column"
    model: dict[str, Any] = {"network": network}
    if network == "mlp":  # RecTable's GLU-MLP, a plugin network
        model = {"network": "flowcore_tabular.network:RecTableMLP",
                 "options": {"hidden": list(GLU_HIDDEN), "time_dim": 128}}
    if network == "transformer":
        model["transformer"] = {"hidden_size": 64, "num_heads": 4, "depth_double": 0, "depth_single": 2,
                                "mlp_ratio": 2.0}
    return {
        "seed": 0, "out_dir": str(out_dir),
        "modalities": {"tabular": {"dataset": table, "tokenizer": tokenizer}},
        "data": {"dataset": table},
        "model": model,
        "flow": {"timesteps": "logit_normal"},
        "train": {"steps": steps, "batch_size": 512 if network == "mlp" else 256, "lr": 1e-3 if network == "mlp"
                  else 5e-4, "schedule": "cosine", "warmup_steps": min(100, steps // 10), "ema": 0.999,
                  "cpu_threads": 1, "checkpoint_every": steps, "progress_bar": False, "log_every": 50},
        "sample": {"steps": 50, "solver": "euler"},
    }


def train_flowcore(table: str, network: str, steps: int, count: int, work: Path) -> tuple[list[dict], float]:
    from flowcore.train.config import from_dict
    from flowcore.train.pipeline import sample, train
    from flowcore_tabular.codec import TableCsv
    from flowcore_tabular.modality import Tabular

    run = work / f"{table}_{network}"
    config = from_dict(flowcore_config(table, network, steps, run))
    start = time.perf_counter()
    train(config)
    seconds = time.perf_counter() - start
    [csv] = sample(run, ["tabular"], {}, work / f"{table}_{network}_samples", count=count, device="cpu")
    return TableCsv(Tabular(dataset=table).schema).read_all(csv), seconds


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


def train_peer(kind: str, table, epochs: int, count: int) -> tuple[list[dict], float]:
    import torch
    from ctgan import CTGAN, TVAE

    torch.set_num_threads(1)
    frame = to_peer_frame(table.schema, table.splits["train"])
    discrete = [c.name for c in table.schema.columns if not c.continuous]
    model = (CTGAN if kind == "ctgan" else TVAE)(epochs=epochs, enable_gpu=False)
    torch.manual_seed(0)
    start = time.perf_counter()
    model.fit(frame, discrete)
    seconds = time.perf_counter() - start
    return from_peer_frame(table.schema, model.sample(count)), seconds


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


def write_results(results: dict[str, Any], args: argparse.Namespace) -> None:
    out = ROOT / "benchmarks" / "results" / "tabular.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=1) + "\n")
    lines = ["## tabular", "",
             f"`{results['command']}` — {results['date']}, {results['machine']}. One run, same machine; "
             "the CPU was shared with other jobs, so times are comparable only within this run.", "",
             "Shape, Trend, C2ST, alpha/beta: generated vs training rows (TabSyn's convention); MLE: "
             "ROC AUC of gradient boosting trained on generated rows, tested on the test split; DCR: share of "
             "generated rows nearer to a training row than to a test row (0.5 ideal for equal-sized sets). "
             f"{results['generated_rows']}. `real (test split)`: held-out real data in place of generated rows "
             "(test rows; for MLE the model is trained on the training rows; for DCR the val rows), i.e. "
             "what a perfect generator scores under the same size imbalance.", ""]
    for table, res in results["tables"].items():
        lines += [f"### {table} ({res['train_rows']} train rows)", "",
                  "| model | budget | train s | Shape | Trend | C2ST | MLE AUC | alpha | beta | DCR share |",
                  "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
        for name, r in res["models"].items():
            m = r["metrics"]
            secs = f"{r['train_seconds']:.0f}" if r.get("train_seconds") is not None else "-"
            lines.append(f"| {name} | {r['budget']} | {secs} | {m['shape']:.3f} | {m['trend']:.3f} | "
                         f"{m['c2st']:.3f} | {m['mle_auc']:.3f} | {m['alpha_precision']:.3f} | "
                         f"{m['beta_recall']:.3f} | {m['dcr_share']:.3f} |")
        lines.append("")
    lines += results.get("notes", [])
    section = "\n".join(lines).rstrip() + "\n"
    path = ROOT / "benchmarks" / "RESULTS.md"
    replace_section(path, "tabular", section)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--tables", nargs="+", default=list(BUDGETS), choices=list(BUDGETS))
    parser.add_argument("--models", nargs="+", default=["flowcore-glu", "flowcore-transformer", "ctgan", "tvae"])
    parser.add_argument("--quick", action="store_true", help="tiny budgets: checks the script runs")
    parser.add_argument("--no-write", action="store_true", help="print only")
    parser.add_argument("--steps-scale", type=float, default=1.0,
                        help="multiply the flowcore step budgets (a time-matched variant)")
    parser.add_argument("--merge", action="store_true",
                        help="add to the saved results instead of starting afresh (model names get the scale)")
    parser.add_argument("--reference-only", action="store_true",
                        help="recompute the real-data reference rows of the saved results and rewrite them")
    args = parser.parse_args()
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    from threadpoolctl import threadpool_limits

    from flowcore_tabular.datasets import load_table

    if args.reference_only:
        results = json.loads((ROOT / "benchmarks" / "results" / "tabular.json").read_text())
        for name, res in results["tables"].items():
            with threadpool_limits(1):
                res["models"]["real (test split)"]["metrics"] = real_reference(load_table(name, 0))
        write_results(results, args)
        return 0
    results: dict[str, Any] = {
        "command": "python benchmarks/tabular.py " + " ".join(sys.argv[1:]),
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, no GPU",
        "generated_rows": f"Generated rows per model: min(train rows, {MAX_ROWS}); real rows for "
                          f"Shape/Trend/C2ST/alpha-beta: a {MAX_ROWS}-row sample of train",
        "glu_hidden": list(GLU_HIDDEN), "tables": {}, "notes": [],
    }
    saved = ROOT / "benchmarks" / "results" / "tabular.json"
    if args.merge and saved.exists():
        previous = json.loads(saved.read_text())
        results["tables"] = previous["tables"]
        results["command"] = previous["command"] + " ; " + results["command"]
        results["date"] = previous["date"] + " ; " + results["date"]
    work = Path(tempfile.mkdtemp(prefix="flowcore_tabular_bench_"))
    for name in args.tables:
        table = load_table(name, 0)
        budget = dict(QUICK if args.quick else BUDGETS[name])
        for key in ("glu_steps", "transformer_steps"):
            budget[key] = max(1, int(budget[key] * args.steps_scale))
        n = len(table.splits["train"])
        count = min(n, MAX_ROWS)
        res = results["tables"].get(name) or {"train_rows": n, "models": {}}
        if "real (test split)" not in res["models"]:
            with threadpool_limits(1):
                res["models"]["real (test split)"] = {"budget": "-", "train_seconds": None,
                                                      "metrics": real_reference(table)}
        for model in args.models:
            print(f"[{name}] {model} ...", flush=True)
            if model == "flowcore-glu":
                rows, secs = train_flowcore(name, "mlp", budget["glu_steps"], count, work)
                label = f"{budget['glu_steps']} steps x 512 ({budget['glu_steps'] * 512 / n:.0f} epochs)"
            elif model == "flowcore-transformer":
                rows, secs = train_flowcore(name, "transformer", budget["transformer_steps"], count, work)
                label = (f"{budget['transformer_steps']} steps x 256 "
                         f"({budget['transformer_steps'] * 256 / n:.0f} epochs)")
            else:
                epochs = budget[f"{model}_epochs"]
                rows, secs = train_peer(model, table, epochs, count)
                label = f"{epochs} epochs x 500"
            with threadpool_limits(1):
                metrics = evaluate(table, rows)
            key = model if args.steps_scale == 1.0 or not model.startswith("flowcore") else \
                f"{model} (steps x{args.steps_scale:g})"
            res["models"][key] = {"budget": label, "train_seconds": secs, "metrics": metrics}
            print(f"[{name}] {model}: {secs:.0f} s, {json.dumps({k: round(v, 3) for k, v in metrics.items()})}",
                  flush=True)
            results["tables"][name] = res
            if not args.no_write:
                write_results(results, args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
