"""reflow_conditional: one round of conditional reflow on a class-conditional toy2d task with a known answer.

Task: examples/configs/toy2d_labeled.yaml, eight_gaussians_labeled with ``classes: 2`` (class k =
the gaussians k, k + 2, k + 4, k + 6 of the circle; each class has mean 0). For each seed the
teacher is trained through the pipeline (``flowcore train``), then reflowed as ``flowcore reflow``
does it: pairs at the teacher's guidance (``--pair-cfgs``; the first is the headline run), the
student started from the teacher and trained on (noise, sample, label).

Scores, per class k and then averaged over both classes, of 1000 Euler samples given k at each
NFE: ``in_class`` (fraction within 3 std of a gaussian of class k; flowcore.builtins.toy2d) and
sliced W2 to the test split's class-k points. The teacher is sampled at its own cfg, the student
at cfg 1 and at the teacher's cfg (is guidance still worth it after reflow?).

Run:  .venv/bin/python benchmarks/reflow_conditional.py      (writes benchmarks/results/
      reflow_conditional.json and the "## reflow_conditional" section of benchmarks/RESULTS.md)
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

import torch
from results_md import replace_section  # noqa: E402  (benchmarks/ is on sys.path when run)

import flowcore
from flowcore.builtins.toy2d import in_class, sliced_wasserstein
from flowcore.registry import get_registry
from flowcore.train.config import load_config
from flowcore.train.pipeline import train
from flowcore.train.reflow import reflow_config

ROOT = Path(__file__).resolve().parent
CONFIG = ROOT.parent / "examples" / "configs" / "toy2d_labeled.yaml"
NFES = (1, 2, 4, 8, 32)
CLASSES = 2


def score(run_dir: Path, registry, cfg: float, count: int, seed: int) -> dict[int, dict[str, float]]:
    """{nfe: {"in_class", "sliced_w2"}} averaged over the classes, samples given each class."""
    pipe = flowcore.load(run_dir, registry=registry)
    test = registry.dataset("eight_gaussians_labeled").build("test", classes=CLASSES)
    out = {}
    for nfe in NFES:
        hits, sw = [], []
        for k in range(CLASSES):
            x = pipe.generate("toy2d", {"label": k}, count, steps=nfe, cfg=cfg, seed=seed + 100 * k,
                              decode=False)["toy2d"].values[:, 0]
            hits.append(float(in_class(x, k, CLASSES).double().mean()))
            sw.append(sliced_wasserstein(test.points[test.labels == k], x))
        out[nfe] = {"in_class": round(sum(hits) / CLASSES, 4), "sliced_w2": round(sum(sw) / CLASSES, 4)}
    return out


def run_seed(seed: int, args, registry, work: Path) -> dict:
    teacher_dir = work / f"teacher{seed}"
    config = load_config(CONFIG, [f"seed={seed}", f"out_dir={teacher_dir}", f"train.steps={args.teacher_steps}",
                                  "train.progress_bar=false", "train.checkpoint_every=100000"], registry)
    teacher_cfg = config.sample.cfg
    started = time.perf_counter()
    train(config, registry)
    result = {"teacher_seconds": round(time.perf_counter() - started, 1),
              "teacher": score(teacher_dir, registry, teacher_cfg, args.count, seed), "students": {}}
    for pair_cfg in args.pair_cfgs:
        out = work / f"student{seed}_cfg{pair_cfg:g}"
        student = reflow_config(teacher_dir, registry, overrides=[
            f"reflow.pairs={args.pairs}", f"reflow.cfg={pair_cfg}", f"train.steps={args.student_steps}",
            "train.lr=1e-3", "train.progress_bar=false", "train.checkpoint_every=100000"], out_dir=str(out))
        started = time.perf_counter()
        train(student, registry)
        result["students"][f"pairs_cfg{pair_cfg:g}"] = {
            "seconds": round(time.perf_counter() - started, 1),
            "cfg1": score(out, registry, 1.0, args.count, seed),
            f"cfg{teacher_cfg:g}": score(out, registry, teacher_cfg, args.count, seed)}
    return result


def mean_over_seeds(per_seed: list[dict], pick) -> dict[int, dict[str, float]]:
    rows = [pick(r) for r in per_seed]
    return {nfe: {key: round(sum(r[nfe][key] for r in rows) / len(rows), 4) for key in ("in_class", "sliced_w2")}
            for nfe in NFES}


def write_results_md(payload: dict, path: Path) -> None:
    m, cfg = payload["machine"], payload["teacher_cfg"]
    lines = ["## reflow_conditional", "",
             f"One round of conditional reflow on `{CONFIG.relative_to(ROOT.parent)}` (eight_gaussians_labeled, "
             f"2 classes of 4 gaussians each); `{payload['command']}`; {m['cpu']}, {m['threads']} thread, torch "
             f"{m['torch']}; wall {payload['wall_seconds']} s, CPU {payload['cpu_seconds']} s, load average "
             f"{payload['load_start']} -> {payload['load_end']}. Mean over seeds {payload['config']['seeds']} and both "
             f"classes of {payload['config']['count']} Euler samples per class: in-class fraction / sliced W2 to "
             "the test class.", "",
             "| model | " + " | ".join(f"{n} NFE" for n in NFES) + " |", "|---" * (len(NFES) + 1) + "|"]
    for name, rows in payload["summary"].items():
        lines.append(f"| {name} | " + " | ".join(f"{rows[n]['in_class']:.3f} / {rows[n]['sliced_w2']:.3f}"
                                                 for n in NFES) + " |")
    lines += ["", f"The teacher is sampled at its cfg {cfg:g}; 'pairs at cfg c' is the guidance the pairs were "
              "made with. docs/flow.md (Conditional reflow) draws the conclusions."]
    replace_section(path, "reflow_conditional", "\n".join(lines))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--teacher-steps", type=int, default=1200)
    parser.add_argument("--student-steps", type=int, default=600)
    parser.add_argument("--pairs", type=int, default=4000)
    parser.add_argument("--pair-cfgs", nargs="+", type=float, default=[2.0, 1.0])
    parser.add_argument("--count", type=int, default=1000)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", type=Path, default=ROOT / "results" / "reflow_conditional.json")
    parser.add_argument("--no-markdown", action="store_true", help="do not touch benchmarks/RESULTS.md")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    registry = get_registry()
    load_start, wall, cpu = os.getloadavg(), time.perf_counter(), time.process_time()
    with tempfile.TemporaryDirectory(prefix="reflow_conditional_") as tmp:
        per_seed = [run_seed(seed, args, registry, Path(tmp)) for seed in args.seeds]
    teacher_cfg = load_config(CONFIG, registry=registry).sample.cfg
    summary = {f"teacher, cfg {teacher_cfg:g}": mean_over_seeds(per_seed, lambda r: r["teacher"])}
    for pair_cfg in args.pair_cfgs:
        for cfg in (1.0, teacher_cfg):
            summary[f"student (pairs at cfg {pair_cfg:g}), cfg {cfg:g}"] = mean_over_seeds(
                per_seed, lambda r, p=pair_cfg, c=cfg: r["students"][f"pairs_cfg{p:g}"][f"cfg{c:g}"])
    payload = {
        "benchmark": "reflow_conditional",
        "command": " ".join(["python benchmarks/reflow_conditional.py", *sys.argv[1:]]),
        "machine": {"cpu": platform.processor() or platform.machine(), "threads": args.threads,
                    "python": platform.python_version(), "torch": torch.__version__},
        "wall_seconds": round(time.perf_counter() - wall, 1), "cpu_seconds": round(time.process_time() - cpu, 1),
        "load_start": [round(x, 2) for x in load_start], "load_end": [round(x, 2) for x in os.getloadavg()],
        "config": {k: v for k, v in vars(args).items() if k not in ("out", "no_markdown")},
        "teacher_cfg": teacher_cfg, "summary": summary, "per_seed": per_seed,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(payload, indent=1, default=str) + "\n")
    if not args.no_markdown:
        write_results_md(payload, ROOT / "RESULTS.md")
    print(json.dumps(summary, indent=1))


if __name__ == "__main__":
    main()
