"""Any-to-any on digits world: every direction of one model, scored by the plugins' own classifiers.

    python benchmarks/any2any.py                      # the shipped run, examples/runs/digits_world
    python benchmarks/any2any.py --run runs/digits_world --count 500
    python benchmarks/any2any.py --shapes-run runs/shapes_world --count 80   # shapes world

The run (examples/configs/digits_world.yaml) is one FlowTransformer over an MNIST-5k image, the
same digit spoken by espeak-ng and its label. For each direction ("made|given") it generates the
made modalities for --count held-out items (MNIST-5k's test digits, each paired with a clip of
the same digit from the spoken-digit test voices) and scores them with `flowcore eval`:

    class accuracy    the MNIST-5k classifier (images) or the spoken-digit classifier (audio) reads
                      the class of the item the sample was made for; the label is read directly
    ceiling           the same classifier on the real held-out samples
    agreement         for joint image+audio, both made samples get the same class (real pairs: ceiling)
    classifier FD     Fréchet distance of each classifier's features, made against real

The goal: every direction at least 0.9 of its ceiling. It writes benchmarks/results/any2any.json,
the "## any2any" section of benchmarks/RESULTS.md, and the gallery (benchmarks/results/any2any_gallery/,
4 held-out items, every direction) with its screenshot taken in headless Chromium
(benchmarks/results/any2any_gallery.png).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import sys
import time
from pathlib import Path

import torch
from results_md import replace_section  # noqa: E402  (benchmarks/ is on sys.path when run)

import flowcore
from flowcore.io import dumps_json, write_text_atomic
from flowcore.train.config import parse_direction
from flowcore.train.gallery import check_page, find_browser, gallery
from flowcore.train.pipeline import evaluate

ROOT = Path(__file__).resolve().parent
GOAL = 0.9


def directions(report: dict) -> list[dict]:
    """One row per direction: what was made from what, its score, the ceiling and their ratio."""
    ceilings, via = report.get("ceilings", {}), report.get("via", [])
    own_cfg = report.get("cfg_by_direction", {})
    rows = []
    for key, scores in report["metrics"].items():
        made, given = parse_direction(key)
        if len(made) > 1:
            score, ceiling = scores.get("class_agreement"), ceilings.get(f"{','.join(made)}.class_agreement")
            kind = "agreement"
        elif made == ["label"]:
            score, ceiling, kind = scores.get("accuracy"), 1.0, "accuracy"
        else:
            score, ceiling = scores.get("class_accuracy"), ceilings.get(f"{made[0]}.class_accuracy")
            kind = "class accuracy"
        per = {m: scores.get(m, {}) for m in made} if len(made) > 1 else {made[0]: scores}
        fd = {m: round(s["classifier_fd"], 2) for m, s in per.items() if s.get("classifier_fd") is not None}
        ratio = round(score / ceiling, 4) if score is not None and ceiling else None
        rows.append({"direction": key, "made": made, "given": given, "score_kind": kind,
                     "score": None if score is None else round(score, 4),
                     "ceiling": None if ceiling is None else round(ceiling, 4), "ratio": ratio,
                     "goal_met": None if ratio is None else ratio >= GOAL, "classifier_fd": fd,
                     "via": via, "cfg": own_cfg.get(key),
                     "command": f"flowcore eval RUN --direction '{key}'" + "".join(f" --via {v}" for v in via)})
    return rows


def cells(row: dict) -> tuple[str, str, str, str, str]:
    """A direction row's table cells: made ← given, score, real data, ratio, classifier FD."""
    shown = f"{' + '.join(row['made'])} ← {' + '.join(row['given']) or 'nothing'}"
    if row.get("via"):
        shown += f" (via {' + '.join(row['via'])})"
    own = row.get("cfg")  # the run's sample.cfg_by_direction for it, if any
    if own is not None:
        shown += " (cfg " + (", ".join(f"{m} {w:g}" for m, w in own.items()) if isinstance(own, dict)
                             else f"{own:g}") + ")"
    fd = ", ".join(f"{m} {v:.1f}" for m, v in row["classifier_fd"].items()) or "-"
    score = "-" if row["score"] is None else f"{row['score_kind']} {row['score']:.3f}"
    ceiling = "-" if row["ceiling"] is None else f"{row['ceiling']:.3f}"
    ratio = "-" if row["ratio"] is None else f"{row['ratio']:.3f}"
    return shown, score, ceiling, ratio, fd


def write_results_md(record: dict, path: Path) -> None:
    lines = [
        "## any2any",
        "",
        f"Digits world (`{record['config']}`): one FlowTransformer over an MNIST-5k image, the same digit spoken "
        "by espeak-ng, and its label; in each training item every modality is generated, given or absent. "
        f"{record['count']} held-out items (MNIST-5k test digits paired with clips of the test voices), "
        f"{record['steps']} {record['solver']} steps, cfg {record['cfg']}. Class accuracy is read by the image "
        "plugin's MNIST-5k classifier and the audio plugin's spoken-digit classifier; the ceiling is the same "
        f"classifier on the real held-out samples; the goal is a ratio of at least {GOAL}."
        + (" A row marked (via label) is the same direction chained: the label is made first from what is given, "
           "then given with it (`flowcore eval --via label`)." if any(r.get("via") for r in record["directions"])
           else "")
        + (" A row with its own cfg is guided as the run's `sample.cfg_by_direction` sets for it."
           if any(r.get("cfg") is not None for r in record["directions"]) else ""),
        "",
        "| made ← given | score | real data | ratio | classifier FD |",
        "| --- | --- | --- | --- | --- |",
    ]
    for row in record["directions"]:
        shown, score, ceiling, ratio, fd = cells(row)
        below = " (below goal)" if row["goal_met"] is False else ""
        lines.append(f"| {shown} | {score} | {ceiling} | {ratio}{below} | {fd} |")
    page = record.get("page_check")
    lines += [
        "",
        f"Model: {record['parameters'] / 1e6:.2f} M parameters. Eval took {record['eval_seconds']:.0f} s "
        f"on {record['machine'].get('threads', record['machine']['cores'])} thread(s) of a "
        f"{record['machine']['cores']}-core CPU. The gallery (`flowcore gallery`, "
        f"benchmarks/results/any2any_gallery/index.html) shows {record['gallery_count']} held-out items in every "
        "direction"
        + (f"; in headless Chromium {page['images'][0]}/{page['images'][1]} images loaded and "
           f"{page['audio'][0]}/{page['audio'][1]} clips were playable (screenshot: "
           "benchmarks/results/any2any_gallery.png)." if page else "."),
        "",
        f"Command: `{record['command']}`",
    ]
    replace_section(path, "any2any", "\n".join(lines))


def shape_rows(report: dict) -> list[dict]:
    """Shapes world: the class-accuracy rows, plus each made mesh's paired Chamfer / IoU and 1-NNA."""
    rows = directions(report)
    for row in rows:
        scores = report["metrics"][row["direction"]]
        mesh = scores.get("shape", scores) if "shape" in row["made"] else {}
        row["mesh"] = {k: round(mesh[k], 4) for k in ("paired_chamfer", "paired_iou", "nna_cd", "mmd_cd")
                       if mesh.get(k) is not None}
    return rows


def write_shapes_md(record: dict, path: Path) -> None:
    lines = [
        "## any2any shapes world",
        "",
        f"Shapes world (`{record['config']}`): one FlowTransformer over a procedural mesh (the latent set of "
        "the shape autoencoder), a 32 x 32 depth image of it from a random view, and its class; each modality of "
        f"a training item independently generated, given or absent. {record['count']} held-out shapes, "
        f"{record['steps']} {record['solver']} steps, cfg {record['cfg']}. Class accuracy is read by the "
        "shape plugin's PointNet (meshes) and by a small CNN the image plugin trains on the real shapes_world "
        "depth images; the ceiling is the same classifier on the real held-out item. For a mesh made from the "
        "item's own depth image, paired Chamfer and IoU compare it with that item's mesh (for other directions "
        "they are given for scale: a mesh of the right class but another size and pose).",
        "",
        "| made ← given | score | real data | ratio | mesh: paired Chamfer / IoU, 1-NNA | classifier FD |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for row in record["directions"]:
        shown, score, ceiling, ratio, fd = cells(row)
        m = row.get("mesh") or {}
        mesh = (f"{m['paired_chamfer']:.3f} / {m['paired_iou']:.2f}, {m['nna_cd']:.2f}"
                if {"paired_chamfer", "paired_iou", "nna_cd"} <= set(m) else "-")
        lines.append(f"| {shown} | {score} | {ceiling} | {ratio} | {mesh} | {fd} |")
    lines += ["", f"Model: {record['parameters'] / 1e6:.2f} M parameters. Eval took {record['eval_seconds']:.0f} s "
              f"on one thread. Command: `{record['command']}`"]
    replace_section(path, "any2any shapes world", "\n".join(lines))


def shapes_world(args) -> None:
    """Every direction of a shapes-world run: any2any.json's "shapes_world" and its RESULTS.md section."""
    from flowcore.train.inference import load

    results = ROOT / "results"
    overrides = {k: v for k, v in {"steps": args.steps, "cfg": args.cfg}.items() if v is not None}
    began = time.perf_counter()
    report = evaluate(args.shapes_run, results / "any2any_shapes_eval.json", count=args.count, progress=True,
                      **overrides)
    pipe = load(args.shapes_run)
    record = {
        "run": args.shapes_run, "config": str(Path(pipe.directory) / "config.yaml"),
        "count": report["count"], "steps": report["steps"], "solver": report["solver"], "cfg": report["cfg"],
        "parameters": sum(p.numel() for p in pipe.net.parameters()),
        "directions": shape_rows(report), "ceilings": report.get("ceilings", {}),
        "eval_seconds": round(time.perf_counter() - began, 1),
        "command": "python benchmarks/any2any.py " + " ".join(sys.argv[1:]),
    }
    path = results / "any2any.json"
    whole = json.loads(path.read_text()) if path.is_file() else {"benchmark": "any2any"}
    whole["shapes_world"] = record
    write_text_atomic(path, dumps_json(whole, indent=1) + "\n")
    write_shapes_md(record, ROOT / "RESULTS.md")
    for row in record["directions"]:
        print(f"{row['direction']:<22} {row['score_kind']:<15} {row['score']} / {row['ceiling']} = {row['ratio']}"
              f"  {row['mesh']}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", default="examples/runs/digits_world", help="run directory")
    parser.add_argument("--shapes-run", help="a shapes-world run (examples/configs/shapes_world.yaml): score it "
                                             "alone, into any2any.json's shapes_world and its own section")
    parser.add_argument("--count", type=int, default=500, help="held-out items per direction")
    parser.add_argument("--steps", type=int, help="solver steps (default: the run's sample.steps)")
    parser.add_argument("--cfg", type=float, help="guidance weight (default: the run's sample.cfg)")
    parser.add_argument("--gallery-count", type=int, default=4)
    parser.add_argument("--via", help="also measure each direction that neither makes nor gives this modality "
                                      "through it: made first, then given (flowcore eval --via)")
    args = parser.parse_args()
    if args.shapes_run:
        return shapes_world(args)
    overrides = {k: v for k, v in {"steps": args.steps, "cfg": args.cfg}.items() if v is not None}
    results = ROOT / "results"
    began = time.perf_counter()
    report = evaluate(args.run, results / "any2any_eval.json", count=args.count, progress=True, **overrides)
    rows = directions(report)
    if args.via:
        chained = [r["direction"] for r in rows if args.via not in r["made"] + r["given"]]
        rows += directions(evaluate(args.run, results / "any2any_eval_via.json", count=args.count, progress=True,
                                    directions=chained, via=[args.via], **overrides))
    eval_seconds = time.perf_counter() - began
    shown = results / "any2any_gallery"
    shutil.rmtree(shown, ignore_errors=True)
    page = gallery(args.run, shown, count=args.gallery_count, scores=results / "any2any_eval.json",
                   via=[args.via] if args.via else [],
                   via_scores=results / "any2any_eval_via.json" if args.via else None, **overrides)
    page_check = None
    if find_browser() is not None:
        found = check_page(page, screenshot=results / "any2any_gallery.png")
        page_check = {k: list(v) for k, v in found.items()}
    from flowcore.train.inference import load  # lazy: only to count the parameters

    pipe = load(args.run)
    record = {
        "benchmark": "any2any", "run": args.run, "config": str(Path(pipe.directory) / "config.yaml"),
        "count": report["count"], "steps": report["steps"], "solver": report["solver"], "cfg": report["cfg"],
        "parameters": sum(p.numel() for p in pipe.net.parameters()),
        "directions": rows, "ceilings": report.get("ceilings", {}),
        "eval_seconds": round(eval_seconds, 1), "gallery_count": args.gallery_count, "page_check": page_check,
        "flowcore": flowcore.__version__,
        "machine": {"cpu": platform.processor() or platform.machine(), "cores": os.cpu_count(),
                    "threads": torch.get_num_threads(), "python": sys.version.split()[0]},
        "command": "python benchmarks/any2any.py " + " ".join(sys.argv[1:]),
    }
    previous = results / "any2any.json"
    if previous.is_file() and "shapes_world" in json.loads(previous.read_text()):
        record["shapes_world"] = json.loads(previous.read_text())["shapes_world"]
    write_text_atomic(results / "any2any.json", dumps_json(record, indent=1) + "\n")
    write_results_md(record, ROOT / "RESULTS.md")
    for row in record["directions"]:
        print(f"{row['direction']:<22} {' '.join(row['via']):<6} {row['score_kind']:<15} {row['score']} / "
              f"{row['ceiling']} = {row['ratio']}")


if __name__ == "__main__":
    main()
