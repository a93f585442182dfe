"""onestep: MeanFlow's one-network-pass MNIST-5k samples beside the base flow and a distilled student.

In one table, scored like benchmarks/image.py (flowcore_image.score.score_run: --count images of
the classes 0..9 in turn, the metric classifier's class accuracy and Fréchet distance in its
128 features to as many real test images):

  1. the MeanFlow run (examples/configs/image_mnist_meanflow.yaml, flow.objective meanflow,
     guidance inside the target) sampled with the meanflow solver at 1, 2 and 4 steps, cfg 1
     (one network pass per step), trained here as a timed child process unless --skip-train
     (--set KEY=VALUE overrides go to its training); a run warm-started from the base flow
     (train.init_from) is charged the base flow's training too;
  2. the base flow of the same budget (examples/configs/image_mnist.yaml: same U-Net, steps,
     batch) at 1, 2, 4 and 8 Euler steps with cfg 3 (two passes per step), --base-run;
  3. a student distilled to one step on the base flow's guided pairs (`flowcore reflow` with
     flow.timesteps grid k = 1), trained here unless --skip-distill, at 1 Euler step, cfg 1;
     without it, the reflowed student of benchmarks/results/image.json (same base config) at
     1 and 2 Euler steps.

Writes benchmarks/results/onestep.json, a sample grid per model and the "## onestep" section
of benchmarks/RESULTS.md (``--name onestep_fashion``: the same for Fashion-MNIST, with
``--set data.dataset=fashion_mnist --set modalities.image.classifier=fashion_mnist`` and
``--base-run runs/image_fashion``).

Run:  .venv/bin/python benchmarks/onestep.py                       # trains MeanFlow and the student
      .venv/bin/python benchmarks/onestep.py --skip-train --skip-distill   # score existing runs
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shlex
import sys
from pathlib import Path

from image import ROOT, fresh, timed, timing  # noqa: E402  (benchmarks/ is on sys.path when run)
from results_md import replace_section  # noqa: E402

CONFIG = "examples/configs/image_mnist_meanflow.yaml"
DISTILL_SETS = ["reflow.pairs=3000", "reflow.steps=8", "train.steps=600", "train.warmup_steps=50",
                "flow.timesteps=grid", "flow.timestep_options={k: 1}", "train.progress_bar=false"]


def command_line(argv: list[str]) -> str:
    """The command as run, its --note text elided: RESULTS.md prints the note after it."""
    shown, after_note = [], False
    for a in argv:
        shown.append("…" if after_note else "--note=…" if a.startswith("--note=") else a)
        after_note = a == "--note"
    return "python benchmarks/onestep.py " + shlex.join(shown)


def score(run: Path, steps, cfg: float, solver: str, count: int, grid_steps: int) -> dict:
    from flowcore_image.score import score_run

    grid = ROOT / "results" / f"onestep_{run.name}_grid.png"
    result = score_run(run, steps, count, cfg, grid, grid_steps=grid_steps, solver=solver)
    for k, row in result["steps"].items():
        print(f"{run.name} {solver} {k:>2} steps, cfg {cfg:g}: {row}", flush=True)
    result["grid"] = str(grid.relative_to(ROOT.parent))
    return result


def write_markdown(payload: dict, path: Path) -> None:
    rows = payload["rows"]
    other = "a student distilled to one step from it" if "distill" in payload["runs"] else "its reflowed student"
    warm = payload["runs"]["meanflow"].get("init_from")
    base = "the base flow it is fine-tuned from (`train.init_from`)" if warm else "the base flow of the same budget"
    name = payload.get("benchmark", "onestep")
    dataset = {"mnist5k": "MNIST-5k", "fashion_mnist": "Fashion-MNIST"}.get(payload.get("dataset"), "MNIST-5k")
    lines = [f"## {name}", "",
             f"One-step class-conditional {dataset} with MeanFlow (docs/meanflow.md) against {base} and {other}. "
             "Same conv U-Net "
             f"(`flowcore_image.network:ConvUNet`, width 32), batch 64; "
             f"{payload.get('budget', '2,500 steps each')}. Scored by "
             "`flowcore_image.score.score_run` like the `image` section: *accuracy* = fraction of samples the "
             "metric classifier assigns the requested class (the classifier scores "
             f"{payload['classifier']['test_accuracy']:.3f} on real test images); *classifier_fd* = Fréchet "
             f"distance in its 128 features to {payload['count']} real test images; *NFE* = network passes per "
             f"sample. Figures in `benchmarks/results/{name}.json`; made by `{payload['command']}`.", "",
             "| model | sampler | NFE | accuracy | classifier_fd | sample_s |",
             "| --- | --- | ---: | ---: | ---: | ---: |"]
    for r in rows:
        lines.append(f"| {r['model']} | {r['sampler']} | {r['nfe']} | {r['accuracy']:.3f} | "
                     f"{r['classifier_fd']:.2f} | {r['sample_s']:g} |")
    lines += [""]
    for key, entry in payload["runs"].items():
        where = " (the run timed by benchmarks/image.py, same config)" if key in ("base", "reflow") else ""
        lines.append(f"- {entry['label']}{where}: {timing(entry.get('train'))}.")
    if payload.get("total"):
        lines.append(f"- {payload['total']}")
    lines += ["", payload["verdict"], ""]
    for key, entry in payload["runs"].items():
        if entry.get("grid"):
            lines.append(f"{entry['label']} ({entry['grid_caption']}): "
                         f"![{key}]({Path(entry['grid']).relative_to('benchmarks')})")
            lines.append("")
    if payload.get("note"):
        lines += [payload["note"], ""]
    replace_section(path, name, "\n".join(lines))


def verdict(rows: list[dict]) -> str:
    by = {(r["key"], r["nfe_steps"]): r for r in rows}
    mf = by.get(("meanflow", 1))
    base8 = by.get(("base", 8))
    student = by.get(("distill", 1)) or by.get(("reflow", 1))
    if not (mf and base8):
        return "Verdict: incomplete (a model is missing)."
    parts = [f"MeanFlow 1-NFE FD {mf['classifier_fd']:.2f}, accuracy {mf['accuracy']:.3f}"]
    ok_acc = mf["accuracy"] >= 0.95
    ok_base = mf["classifier_fd"] <= 1.5 * base8["classifier_fd"]
    parts.append(f"within 1.5x of the base at 8 Euler steps ({base8['classifier_fd']:.2f} x 1.5 = "
                 f"{1.5 * base8['classifier_fd']:.2f}): {'yes' if ok_base else 'no'}")
    if student:
        ok_student = mf["classifier_fd"] < student["classifier_fd"]
        parts.append(f"below the one-step FD of {student['model']} ({student['classifier_fd']:.2f}): "
                     f"{'yes' if ok_student else 'no'}")
    parts.append(f"accuracy >= 0.95: {'yes' if ok_acc else 'no'}")
    within = [r for r in rows if r["key"] == "meanflow" and r["classifier_fd"] <= 1.5 * base8["classifier_fd"]
              and r["accuracy"] >= 0.95]
    if within:
        r = within[0]
        parts.append(f"the fewest MeanFlow passes within 1.5x of the base's 8-step FD with accuracy >= 0.95: "
                     f"{r['nfe']} (FD {r['classifier_fd']:.2f}, accuracy {r['accuracy']:.3f})")
    return "Verdict: " + "; ".join(parts) + "."


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--config", default=CONFIG)
    parser.add_argument("--base-run", default="runs/image_mnist", help="the base flow (image_mnist.yaml) run")
    parser.add_argument("--skip-train", action="store_true", help="score the existing MeanFlow run")
    parser.add_argument("--train-timing", help="JSON of the MeanFlow training's timing (image.timed) when skipped")
    parser.add_argument("--scratch-run", help="also score this MeanFlow run trained from scratch (1, 2, 4 steps)")
    parser.add_argument("--reuse-base", action="store_true",
                        help="take the base flow's rows from onestep.json when it scored the same run")
    parser.add_argument("--skip-distill", action="store_true", help="score the existing distilled student, if any")
    parser.add_argument("--count", type=int, default=1000)
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="an override of the MeanFlow config (its training and the run it names)")
    parser.add_argument("--note", default=None)
    parser.add_argument("--markdown-only", action="store_true", help="rewrite the RESULTS section from NAME.json")
    parser.add_argument("--name", default="onestep",
                        help="results/NAME.json and RESULTS.md's NAME section (onestep_fashion for Fashion-MNIST)")
    args = parser.parse_args()
    out = ROOT / "results" / f"{args.name}.json"
    if args.markdown_only:
        payload = json.loads(out.read_text())
        payload["verdict"] = verdict(payload["rows"])
        payload["note"] = args.note or payload.get("note")
        payload["command"] = command_line(shlex.split(payload["command"])[2:])
        out.write_text(json.dumps(payload, indent=1) + "\n")
        write_markdown(payload, ROOT / "RESULTS.md")
        return

    import torch

    from flowcore.registry import get_registry
    from flowcore.train.config import load_config

    config = load_config(args.config, args.set, get_registry())
    run, base = Path(config.out_dir), Path(args.base_run)
    student = Path(f"{base}_distill1")
    previous = json.loads(out.read_text()) if out.exists() else {"runs": {}}
    runs: dict[str, dict] = {}
    for trains, where in ((not args.skip_train, run), (not args.skip_distill, student)):
        if trains:  # before anything runs: a run left in place would be resumed, not timed
            fresh(where)
    if args.skip_train:
        trained = json.loads(Path(args.train_timing).read_text()) if args.train_timing else \
            previous["runs"].get("meanflow", {}).get("train")
    else:
        trained = timed(["train", args.config, *[a for kv in args.set for a in ("--set", kv)],
                         "--set", "train.progress_bar=false"])
    rows = []

    def add(key: str, label: str, scored: dict, sampler: str, passes: int) -> None:
        for k, row in scored["steps"].items():
            rows.append({"key": key, "model": label, "sampler": f"{sampler}, {k} step{'s' if k != '1' else ''}, "
                         f"cfg {scored['cfg']:g}", "nfe_steps": int(k), "nfe": int(k) * passes,
                         **{m: row[m] for m in ("accuracy", "classifier_fd", "sample_s")}})

    warm = config.train.init_from
    mf_label = "MeanFlow" if not warm else "MeanFlow, fine-tuned from the base flow"
    s = score(run, (1, 2, 4), 1.0, "meanflow", args.count, grid_steps=1)
    runs["meanflow"] = {"label": mf_label, "train": trained, "score": s, "grid": s["grid"],
                        "grid_caption": "1 step, row = class", "config": args.config, "sets": args.set,
                        "steps": config.train.steps, "init_from": warm}
    add("meanflow", mf_label, s, "meanflow", 1)
    if args.scratch_run:
        scratch = Path(args.scratch_run)
        s = score(scratch, (1, 2, 4), 1.0, "meanflow", args.count, grid_steps=1)
        steps = load_config(str(scratch / "config.yaml"), [], get_registry()).train.steps
        label = f"MeanFlow from scratch ({steps:,} steps)"
        runs["meanflow_scratch"] = {"label": label, "train": previous["runs"].get("meanflow_scratch", {}).get(
            "train") or (previous["runs"].get("meanflow", {}).get("train") if not previous["runs"].get(
                "meanflow", {}).get("init_from") else None), "score": s, "grid": s["grid"],
            "grid_caption": "1 step, row = class", "run": str(scratch)}
        add("meanflow_scratch", label, s, "meanflow", 1)
    base_cfg = load_config(str(base / "config.yaml"), [], get_registry()).sample.cfg
    old = previous["runs"].get("base", {}).get("score")
    if args.reuse_base and old and old.get("run") == str(base) and old.get("count", args.count) == args.count:
        s = old  # seeded sampling of the same run: rescoring it gives the same figures
    else:
        s = score(base, (1, 2, 4, 8), base_cfg, "euler", args.count, grid_steps=8)
    image_runs = json.loads((ROOT / "results" / "image.json").read_text())["runs"]
    base_train = image_runs.get(base.name, {}).get("train")  # the image benchmark's timing of the same config
    runs["base"] = {"label": "base flow", "train": base_train, "score": s,
                    "grid": s["grid"], "grid_caption": "8 Euler steps",
                    "config": f"examples/configs/{base.name}.yaml"}
    add("base", "base flow", s, "euler", 2 if base_cfg != 1 else 1)
    if not args.skip_distill:
        sets = [a for kv in DISTILL_SETS for a in ("--set", kv)]
        runs["distill"] = {"train": timed(["reflow", str(base), "--out", str(student), *sets])}
    reflowed = image_runs.get(base.name, {}).get("reflow")
    if not student.is_dir() and isinstance(reflowed, dict):
        # no distilled student here: the image benchmark's reflowed student of the same base config
        label = "one reflow round (benchmarks/results/image.json)"
        s = {**reflowed["score"], "steps": {k: v for k, v in reflowed["score"]["steps"].items() if k in ("1", "2")}}
        runs["reflow"] = {"label": label, "train": reflowed.get("train"), "score": s, "grid": None,
                          "command": reflowed.get("command")}
        add("reflow", label, s, "euler", 1)
    if student.is_dir():
        s = score(student, (1,), 1.0, "euler", args.count, grid_steps=1)
        entry = previous["runs"].get("distill", {}) | runs.get("distill", {})
        runs["distill"] = {**entry, "label": "reflow pairs + 1-step distillation", "score": s, "grid": s["grid"],
                           "grid_caption": "1 Euler step", "command": "flowcore reflow " + " ".join(
                               [str(base), "--out", str(student)] + [f"--set {kv}" for kv in DISTILL_SETS])}
        add("distill", "reflow pairs + 1-step distillation", s, "euler", 1)
    classifier = runs["meanflow"]["score"]["classifier"]
    base_steps = load_config(str(base / "config.yaml"), [], get_registry()).train.steps
    budget = (f"the base flow {base_steps:,} steps, MeanFlow {config.train.steps:,} steps"
              + (" on top of the base flow's (a warm start, train.init_from)" if warm else ""))
    total = None
    if warm and trained and base_train:
        cpu, wall = base_train["cpu_s"] + trained["cpu_s"], base_train["wall_s"] + trained["wall_s"]
        total = f"MeanFlow's whole budget (base flow training + fine-tune): {cpu:g} s CPU, {wall:g} s wall."
    payload = {"benchmark": args.name, "dataset": config.data.dataset, "script": "benchmarks/onestep.py",
               "command": command_line(sys.argv[1:]),
               "machine": f"{platform.machine()} CPU, {os.cpu_count()} cores, torch {torch.__version__}",
               "count": args.count, "classifier": classifier, "rows": rows, "runs": runs, "budget": budget,
               "total": total,
               "verdict": verdict(rows), "note": args.note or previous.get("note")}
    out.write_text(json.dumps(payload, indent=1) + "\n")
    write_markdown(payload, ROOT / "RESULTS.md")
    print(payload["verdict"])


if __name__ == "__main__":
    main()
