"""image: class-conditional MNIST / Fashion-MNIST with flowcore-image, scored by its own classifier.

For one config (examples/configs/image_mnist.yaml or image_fashion.yaml) it
  1. trains the run (`flowcore train CONFIG`), timing wall clock and process CPU time
     (skip with --skip-train to score an existing run directory);
  2. loads the metric classifier of the dataset (trained on the real train split and cached;
     its accuracy on the real test split is reported beside every number);
  3. generates --count images, classes 0..K-1 in turn, with Euler at 1, 2, 4, 8 and 32 steps
     and classifier-free guidance --cfg, all from the same noise (seed 0), and reports per step
     count: conditional accuracy (classifier's class == requested class), the Fréchet distance
     in the classifier's 128-feature space to --count real test images (classifier_fd), the
     class-histogram TV and the pixel statistics (flowcore_image.metrics);
  4. writes a 10 x 10 grid (row = class) of the 8-step samples to benchmarks/results/,
     benchmarks/results/image.json (one entry per dataset, merged) and the "## image" section
     of benchmarks/RESULTS.md.

Reflow (before/after one round at 1/2/4/8/32 steps) is reported as not run when the
pipeline refuses to reflow runs with condition modalities (flowcore.train.pipeline.prepare_reflow).

Run:  .venv/bin/python benchmarks/image.py --config examples/configs/image_mnist.yaml
      .venv/bin/python benchmarks/image.py --config examples/configs/image_mnist.yaml \
          --set train.steps=2000 --set out_dir=runs/image_mnist_short --label "MNIST-5k, 2000 steps"
"""

from __future__ import annotations

import argparse
import json
import platform
import resource
import sys
import time
from pathlib import Path

import torch
from results_md import replace_section  # noqa: E402  (benchmarks/ is on sys.path when run)

ROOT = Path(__file__).resolve().parent
STEPS = (1, 2, 4, 8, 32)
GOALS = {"mnist5k": 0.90, "fashion_mnist": 0.80}


def cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def train_run(config, registry) -> dict:
    from flowcore.train.pipeline import train

    wall, cpu = time.perf_counter(), cpu_seconds()
    train(config, registry, resume=True)
    return {"wall_s": round(time.perf_counter() - wall, 1), "cpu_s": round(cpu_seconds() - cpu, 1)}


def score(run_dir: Path, dataset: str, count: int, cfg: float, registry, grid_path: Path) -> dict:
    from flowcore.train.checkpoint import load_run
    from flowcore.train.sampling import generate, tokens_of
    from flowcore_image import metrics as M
    from flowcore_image.classifier import _stack_split, load_classifier
    from flowcore_image.modality import make_grid

    run = load_run(run_dir, registry, "cpu")
    image = run.bundles["image"]
    clf = load_classifier(dataset)
    real, _, classes = _stack_split(dataset, "test")
    real = real[:count]
    labels = [i % classes for i in range(count)]
    rows = {}
    for steps in STEPS:
        start = time.perf_counter()
        made = []
        for lo in range(0, count, 500):
            part = labels[lo:lo + 500]
            given = {"label": tokens_of(run.bundles["label"], part, "cpu")}
            out = generate(run.net, run.bundles, ["image"], given, len(part), steps=steps, solver="euler",
                           cfg=cfg, seed=lo)
            made += image.samples(out["image"])
        x = torch.stack(made).clamp(-1, 1)
        rows[str(steps)] = {
            "accuracy": round(M.conditional_accuracy(clf, x, labels), 4),
            "classifier_fd": round(M.classifier_fd(clf, real, x), 3),
            "class_histogram_tv": round(M.class_histogram_tv(clf, real, x), 4),
            "pixel_moments": round(M.pixel_moments(real, x), 4),
            "pixel_histogram_tv": round(M.pixel_histogram_tv(real, x), 4),
            "sample_s": round(time.perf_counter() - start, 1),
        }
        print(f"{dataset} {steps:2d} steps: {rows[str(steps)]}", flush=True)
        if steps == 8:
            per_class = min(10, count // classes)  # sample k + classes j has class k
            order = [k + classes * j for k in range(classes) for j in range(per_class)]
            grid = make_grid(x[order], columns=per_class)
            from flowcore.io import atomic_path
            from flowcore_image.codec import ImageCodec

            with atomic_path(grid_path) as tmp:
                ImageCodec().write(grid, tmp)
    reference = M.classifier_fd(clf, real[: count // 2], _stack_split(dataset, "val")[0][: count // 2]) \
        if dataset != "fashion_mnist" else None
    return {"classifier_test_accuracy": round(clf.test_accuracy, 4), "classifier_test_count": clf.test_count,
            "classifier_file": str(clf.path), "count": count, "cfg": cfg, "steps": rows,
            "real_vs_real_fd_half_count": None if reference is None else round(reference, 3)}


def write_markdown(payload: dict, path: Path) -> None:
    lines = ["## image", "",
             "Class-conditional generation with flowcore-image (pixel space; the velocity net is named in each "
             "run's label: the residual MLP or the conv U-Net `flowcore_image.network:ConvUNet`; label "
             "as a `condition` with dropout 0.1), Euler sampling with classifier-free guidance. Scored by the "
             "plugin's own classifier (docs/plugins/image.md#metrics): *accuracy* = fraction of samples the "
             "classifier assigns the requested class; *FD* = Fréchet distance in its 128-feature space to "
             "real test images (same count). Numbers in `benchmarks/results/image.json`.", ""]
    if payload.get("note"):
        lines += [payload["note"], ""]
    for name, entry in payload["runs"].items():
        s = entry["score"]
        train = entry.get("train") or {}
        lines += [f"**{entry['label']}** — `{entry['command']}`; {entry['machine']}; "
                  f"train {train.get('wall_s', '?')} s wall / {train.get('cpu_s', '?')} s CPU "
                  f"({entry['train_steps']} steps); classifier test accuracy {s['classifier_test_accuracy']:.4f} "
                  f"on {s['classifier_test_count']} real test images; {s['count']} samples, cfg {s['cfg']}.", "",
                  "| Euler steps | " + " | ".join(str(k) for k in s["steps"]) + " |",
                  "| --- |" + " ---: |" * len(s["steps"])]
        for key in ("accuracy", "classifier_fd", "class_histogram_tv", "pixel_moments", "pixel_histogram_tv"):
            lines.append(f"| {key} | " + " | ".join(f"{row[key]:g}" for row in s["steps"].values()) + " |")
        if s.get("real_vs_real_fd_half_count") is not None:
            lines += ["", f"Reference: FD between {s['count'] // 2} real test and {s['count'] // 2} real val "
                      f"images = {s['real_vs_real_fd_half_count']:g} (the floor at that sample count)."]
        lines += ["", f"Samples at 8 steps (row = class): `{entry['grid']}`", "", f"![{name}]({entry['grid_rel']})", ""]
        goal = GOALS.get(entry["dataset"])
        if goal is not None:
            acc = s["steps"]["8"]["accuracy"]
            lines.append(f"Goal >= {goal:.0%} accuracy at 8 steps: {'met' if acc >= goal else 'missed'} ({acc:.1%}).")
        lines += ["", f"Reflow: {entry['reflow']}", ""]
    section = "\n".join(lines)
    replace_section(path, "image", section)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--config", required=True)
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="config override")
    parser.add_argument("--skip-train", action="store_true", help="score the existing run directory")
    parser.add_argument("--count", type=int, default=1000)
    parser.add_argument("--cfg", type=float, default=None, help="guidance weight (default: the config's sample.cfg)")
    parser.add_argument("--label", default=None, help="a name for this run in RESULTS.md")
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--note", default=None, help="a status paragraph for the RESULTS.md section")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    from flowcore.registry import get_registry
    from flowcore.train.config import load_config

    registry = get_registry()
    config = load_config(args.config, args.set, registry)
    dataset = config.data.dataset
    trained = None if args.skip_train else train_run(config, registry)
    run_dir = Path(config.out_dir)
    name = run_dir.name
    grid = ROOT / "results" / f"{name}_grid.png"
    grid.parent.mkdir(parents=True, exist_ok=True)
    cfg = config.sample.cfg if args.cfg is None else args.cfg
    scored = score(run_dir, dataset, args.count, cfg, registry, grid)
    entry = {
        "dataset": dataset, "label": args.label or name, "train": trained, "train_steps": config.train.steps,
        "command": "python benchmarks/image.py " + " ".join(sys.argv[1:]),
        "machine": f"{platform.machine()} CPU, {torch.get_num_threads()} torch threads, torch {torch.__version__}",
        "score": scored, "grid": str(grid.relative_to(ROOT.parent)), "grid_rel": f"results/{grid.name}",
        "reflow": "not run: flowcore.train.pipeline.prepare_reflow refuses runs with `condition` modalities "
                  "(pairs are drawn unconditionally), and these runs are class-conditional.",
    }
    out = ROOT / "results" / "image.json"
    payload = json.loads(out.read_text()) if out.exists() else {"benchmark": "image", "runs": {}}
    payload["runs"][name] = entry
    if args.note:
        payload["note"] = args.note
    out.write_text(json.dumps(payload, indent=1) + "\n")
    write_markdown(payload, ROOT / "RESULTS.md")
    print(json.dumps(entry["score"]["steps"], indent=1))


if __name__ == "__main__":
    main()
