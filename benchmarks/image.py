"""image: class-conditional MNIST / Fashion-MNIST with flowcore-image, scored by its own classifier.

For one config (examples/configs/image_mnist.yaml or image_fashion.yaml) it
  1. runs `flowcore train CONFIG [--set ...]` as a child process and records its wall time,
     its CPU time (user + system of the child) and the load average before and after
     (skip with --skip-train to score an existing run directory);
  2. scores the run with `flowcore image-score` (flowcore_image.score.score_run): --count images,
     classes 0..K-1 in turn, Euler at 1, 2, 4, 8 and 32 steps with guidance --cfg, each step
     count from the same noise: class accuracy by the dataset's metric classifier (its accuracy
     on real test images is stored beside it), Fréchet distance in the classifier's features
     to --count real test images, class-histogram TV, pixel statistics; a 10 x 10 grid (row =
     class) of the 8-step samples goes to benchmarks/results/<run>_grid.png;
  3. with --reflow, runs `flowcore reflow RUN [--reflow-set ...]` the same way (timed) and scores
     the reflowed run identically (grid <run>_reflow_grid.png);
  4. writes benchmarks/results/image.json (one entry per run directory, merged) and the
     "## image" section of benchmarks/RESULTS.md.

Run:  .venv/bin/python benchmarks/image.py --config examples/configs/image_mnist.yaml
      .venv/bin/python benchmarks/image.py --config examples/configs/image_mnist.yaml --skip-train \\
          --reflow --reflow-set reflow.pairs=5000 --reflow-set train.steps=1000
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import time
from pathlib import Path

from results_md import replace_section  # noqa: E402  (benchmarks/ is on sys.path when run)

ROOT = Path(__file__).resolve().parent
STEPS = (1, 2, 4, 8, 32)
GOALS = {"mnist5k": 0.90, "fashion_mnist": 0.80}
FLOWCORE = str(Path(sys.executable).parent / "flowcore")
#: idle OpenMP threads sleep instead of spinning: on a shared 2-core CPU, spinning threads made a
#: U-Net step ~8x slower (2.4 s instead of 0.31 s, measured side by side at load average ~5)
ENV = {"OMP_WAIT_POLICY": os.environ.get("OMP_WAIT_POLICY", "PASSIVE")}
METRICS = ("accuracy", "classifier_fd", "class_histogram_tv", "pixel_moments", "pixel_histogram_tv", "sample_s")


def timed(argv: list[str]) -> dict:
    """Run ``flowcore ARGV`` as a child; its wall time, CPU time and the load average around it."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    load_start, start = os.getloadavg(), time.perf_counter()
    subprocess.run([FLOWCORE, *argv], check=True, env={**os.environ, **ENV})
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return {"command": " ".join(f"{k}={v}" for k, v in ENV.items()) + " flowcore " + " ".join(argv),
            "wall_s": round(wall, 1), "cpu_s": round(cpu, 1),
            "load_start": [round(v, 2) for v in load_start], "load_end": [round(v, 2) for v in os.getloadavg()]}


def fresh(run_dir: Path) -> None:
    """Exit if ``run_dir`` holds a checkpoint: a timed training would resume it and time nothing."""
    if (run_dir / "checkpoints").is_dir():
        sys.exit(f"{run_dir} already holds a run, which a timed training would resume instead of training; "
                 "move it away, or score it as it is with --skip-train")


def score(run_dir: Path, count: int, cfg: float | None, grid: Path) -> dict:
    from flowcore_image.score import score_run

    result = score_run(run_dir, STEPS, count, cfg, grid)
    for k, row in result["steps"].items():
        print(f"{run_dir.name} {k:>2} steps: {row}", flush=True)
    result["grid"] = str(grid.relative_to(ROOT.parent))
    return result


def real_floor(dataset: str, count: int) -> dict:
    """FD between real test and real val images, as many of each as there are (at most ``count``)."""
    from flowcore_image import metrics as M
    from flowcore_image.classifier import _stack_split, load_classifier

    test, val = _stack_split(dataset, "test")[0][:count], _stack_split(dataset, "val")[0][:count]
    n = min(len(test), len(val))
    return {"count": n, "classifier_fd": round(M.classifier_fd(load_classifier(dataset), test[:n], val[:n]), 3)}


def table(scored: dict) -> list[str]:
    lines = ["| Euler steps | " + " | ".join(scored["steps"]) + " |", "| --- |" + " ---: |" * len(scored["steps"])]
    for key in METRICS:
        lines.append(f"| {key} | " + " | ".join(f"{row[key]:g}" for row in scored["steps"].values()) + " |")
    return lines


def timing(t: dict | None) -> str:
    if not t:
        return "not timed here"
    load = (f", load average {'/'.join(map(str, t['load_start']))} before, "
            f"{'/'.join(map(str, t['load_end']))} after" if "load_start" in t else "")
    return f"`{t['command']}`: {t['wall_s']:g} s wall, {t['cpu_s']:g} s CPU" + load


def write_markdown(payload: dict, path: Path) -> None:
    lines = ["## image", "",
             "Class-conditional generation with flowcore-image in pixel space: the conv U-Net "
             "`flowcore_image.network:ConvUNet`, label as a `condition` with dropout 0.1, Euler sampling "
             "with classifier-free guidance. Scored by `flowcore image-score` with the plugin's own "
             "classifier (docs/plugins/image.md#metrics), whose accuracy on real test images is given with "
             "each run: *accuracy* = fraction of samples the classifier assigns the requested class; "
             "*classifier_fd* = Fréchet distance in its 128-feature space to as many real test images as "
             "samples; *sample_s* = seconds to generate them. Figures in `benchmarks/results/image.json`; "
             f"made by `{payload['script']}`.", ""]
    if payload.get("note"):
        lines += [payload["note"], ""]
    for name, entry in payload["runs"].items():
        s = entry["score"]
        clf = s["classifier"]
        lines += [f"### {entry['label']}", "",
                  f"- Machine: {entry['machine']}.",
                  f"- Train: {timing(entry.get('train'))} ({entry['train_steps']} steps).",
                  f"- Score: `{entry['score_command']}`; classifier test accuracy **{clf['test_accuracy']:.4f}** on "
                  f"{clf['test_count']} real test images; {s['count']} samples, cfg {s['cfg']:g}.", ""]
        lines += table(s)
        floor = entry.get("real_floor")
        if floor:
            lines += ["", f"Reference: classifier_fd of {floor['count']} real test against {floor['count']} real val "
                          f"images = {floor['classifier_fd']:g} (the floor: real against real at this size)."]
        goal = GOALS.get(entry["dataset"])
        if goal is not None:
            acc = s["steps"]["8"]["accuracy"]
            lines += ["", f"Goal >= {goal:.0%} accuracy at 8 steps: **{'met' if acc >= goal else 'missed'}** "
                          f"({acc:.1%}; classifier on real test images {clf['test_accuracy']:.1%})."]
        lines += ["", f"Samples at 8 steps (row = class): ![{name}]({Path(s['grid']).relative_to('benchmarks')})", ""]
        reflow = entry.get("reflow")
        if isinstance(reflow, dict):
            cfg = reflow["score"]["cfg"]
            lines += [f"After one reflow round — {timing(reflow['train'])} (pair generation and student "
                      f"training); scored the same way, at cfg {cfg:g}: the pairs were made with the teacher's "
                      "guidance, so the student's conditional field already carries it and it is sampled with "
                      "one network pass per step (docs/flow.md#conditional-reflow), the teacher with two:", ""]
            lines += table(reflow["score"])
            lines += ["", f"Reflowed samples at 8 steps: ![{name} reflow]"
                          f"({Path(reflow['score']['grid']).relative_to('benchmarks')})", ""]
        elif reflow:
            lines += [f"Reflow: {reflow}", ""]
    replace_section(path, "image", "\n".join(lines))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--config", required=True)
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="config override")
    parser.add_argument("--skip-train", action="store_true", help="score the existing run directory")
    parser.add_argument("--reuse-score", action="store_true",
                        help="with --skip-train: keep the run's recorded score instead of scoring it again")
    parser.add_argument("--count", type=int, default=1000)
    parser.add_argument("--cfg", type=float, default=None, help="guidance weight (default: the run's sample.cfg)")
    parser.add_argument("--reflow", action="store_true", help="also run one reflow round and score it")
    parser.add_argument("--reflow-set", action="append", default=[], metavar="KEY=VALUE",
                        help="override for `flowcore reflow`")
    parser.add_argument("--label", default=None, help="a heading for this run in RESULTS.md")
    parser.add_argument("--note", default=None, help="a status paragraph for the RESULTS.md section")
    args = parser.parse_args()

    import torch

    from flowcore.registry import get_registry
    from flowcore.train.config import load_config

    config = load_config(args.config, args.set, get_registry())
    run_dir = Path(config.out_dir)
    name = run_dir.name
    out = ROOT / "results" / "image.json"
    payload = json.loads(out.read_text()) if out.exists() else {"runs": {}}
    previous = payload["runs"].get(name, {})
    sets = [a for kv in args.set for a in ("--set", kv)]
    for trains, where in ((not args.skip_train, run_dir), (args.reflow, Path(f"{run_dir}_reflow"))):
        if trains:  # before anything runs: a run left in place would be resumed, not timed
            fresh(where)
    trained = previous.get("train") if args.skip_train else timed(["train", args.config, *sets])
    if args.skip_train and args.reuse_score and "score" in previous:
        scored = previous["score"]
    else:
        scored = score(run_dir, args.count, args.cfg, ROOT / "results" / f"{name}_grid.png")
    score_command = f"flowcore image-score {run_dir} --steps {','.join(map(str, STEPS))} --count {args.count}"
    entry = {
        "dataset": config.data.dataset, "label": args.label or previous.get("label") or name,
        "train": trained, "train_steps": config.train.steps, "score_command": score_command,
        "command": (previous.get("command") if args.reuse_score
                    else "python benchmarks/image.py " + " ".join(sys.argv[1:])),
        "machine": f"{platform.machine()} CPU, {os.cpu_count()} cores, train.cpu_threads "
                   f"{config.train.cpu_threads}, torch {torch.__version__}",
        "score": scored, "real_floor": real_floor(config.data.dataset, args.count), "reflow": previous.get("reflow"),
    }
    if args.reflow:
        student = Path(f"{run_dir}_reflow")
        reflow_sets = [a for kv in args.reflow_set for a in ("--set", kv)]
        entry["reflow"] = {"command": "python benchmarks/image.py " + " ".join(sys.argv[1:]),
                           "train": timed(["reflow", str(run_dir), "--out", str(student), *reflow_sets]),
                           "score": score(student, args.count, args.cfg,
                                          ROOT / "results" / f"{name}_reflow_grid.png")}
    payload = {"benchmark": "image", "script": "benchmarks/image.py", **payload}
    payload["runs"][name] = entry
    if args.note:
        payload["note"] = args.note
    out.write_text(json.dumps(payload, indent=1) + "\n")
    write_markdown(payload, ROOT / "RESULTS.md")


if __name__ == "__main__":
    main()
