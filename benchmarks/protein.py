"""Protein backbones: quality of a trained run and seconds per generated backbone.

    .venv/bin/python benchmarks/protein.py --train examples/configs/protein_chains.yaml   # train, then measure
    .venv/bin/python benchmarks/protein.py --run runs/protein_chains [--quick]          # measure a trained run
    python benchmarks/protein.py --run RUN --speed-only --device cuda --out gpu.json      # seconds per backbone
                                                                                          # on a GPU
    .venv/bin/python benchmarks/protein.py --run RUN --gpu-speed gpu.json                 # ... added to the record

``--train`` trains the config in this process first (resuming if its run exists) and records
the training's wall time, process CPU time and load average in ``<run>/training_time.json``,
which the results then quote; ``--train-only`` stops there (measure later with ``--run``).

Quality: generates backbones of lengths 60-256 (cycling 60, 100, 150, 200, 256) and compares
them with the run's training chains: consecutive CA-CA within 3.8 +/- 0.2 A (goal >= 90%),
clash rate (goal < 2%), helix / strand fractions by P-SEA (goal: within 15 points of the
training set), plus every metric of the modality. Speed: seconds per backbone at lengths
100 / 200 / 300 and 20 / 50 / 100 Euler steps (one backbone per call), next to ReQFlow's
published 0.8 s at 20 steps (length 300, GPU). Samples are written as PDB files.

Writes benchmarks/results/protein.json and the ``## protein`` section of benchmarks/RESULTS.md.
On a shared CPU, times are what this machine gave at that moment: the load average is recorded.
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import json
import os
import platform
import time
from pathlib import Path

import torch
from results_md import replace_section  # noqa: E402  (benchmarks/ is on sys.path when run)

import flowcore

ROOT = Path(__file__).resolve().parents[1]
QUALITY_LENGTHS = [60, 100, 150, 200, 256]
REQFLOW_GPU_S = {"length": 300, "steps": 20, "seconds": 0.8}
TRAINING_TIME = "training_time.json"


def generate_frames(run, lengths: list[int], steps: int, seed: int, solver: str = "euler",
                    shift: float = 1.0, device: str = "cpu", schedule: str | None = None,
                    guidance: dict | None = None, solver_options: dict | None = None) -> list[torch.Tensor]:
    """Backbones (frames [L, 7]) of the given lengths from a loaded run, by the core's sampler.

    schedule: the rotation schedule to sample with ("linear", "exp"; None: the run's own).
    guidance: steric / bond guidance weights for this call ({clash, bond, t_max}; FrameNet's
    ``guidance`` option), None: the run's own (the config's ``model.options.guidance``).
    solver_options: the solver's keyword arguments (``euler_sde``: churn, noise_scale).
    """
    from flowcore.train.sampling import SamplingOptions, generate
    from flowcore_protein.guidance import BackboneGuidance

    bundles = dict(run.bundles)
    bundle = bundles["protein"]
    if schedule is not None:
        modality = copy.copy(bundle.modality)
        modality.rotation_schedule = schedule
        bundle = bundles["protein"] = dataclasses.replace(bundle, modality=modality, path=modality.path)
    bundle.config.size = lengths  # the tokenizer lays out these lengths, in turn
    net = run.net
    own = net.guidance
    if guidance is not None:
        net.guidance = BackboneGuidance.from_options(guidance, "--guidance")
    try:
        options = SamplingOptions(steps=steps, solver=solver, solver_options=dict(solver_options or {}), shift=shift,
                                  seed=seed)
        out = generate(net, bundles, ["protein"], {}, len(lengths), options, device)
    finally:
        net.guidance = own
    return bundle.samples(out["protein"])


def parse_guidance(spec: str) -> dict:
    """``clash:bond:t_max`` -> FrameNet's guidance options; ``0:0:1`` is no guidance."""
    try:
        clash, bond, t_max = (float(x) for x in spec.split(":"))
    except ValueError as exc:
        raise SystemExit(f"--guidance wants clash:bond:t_max (e.g. 10:10:0.3), got {spec!r}") from exc
    return {"clash": clash, "bond": bond, "t_max": t_max}


def quality(run, count: int, steps: int, shift: float, reference: list[torch.Tensor], pdb_dir: Path,
            guidance: dict | None = None, pdb_count: int | None = None, solver: str = "euler",
            solver_options: dict | None = None) -> dict:
    """The quality report of ``count`` backbones; guidance as in ``generate_frames`` (None: off, whatever
    the run's config says, so the model alone is measured); the first ``pdb_count`` (None: all) are written."""
    from flowcore_protein.metrics import backbone_report

    lengths = [QUALITY_LENGTHS[i % len(QUALITY_LENGTHS)] for i in range(count)]
    started = time.perf_counter()
    generated: list[torch.Tensor] = []
    for start in range(0, count, 10):
        generated += generate_frames(run, lengths[start:start + 10], steps, seed=start, shift=shift,
                                     guidance=guidance or {}, solver=solver, solver_options=solver_options)
    gen_s = time.perf_counter() - started
    modality = run.bundles["protein"].modality
    modality.codec.write_all(generated[:pdb_count], pdb_dir, stem="backbone")
    modality.preview(generated[:10], pdb_dir / "preview.pdb")
    gen, real = backbone_report(generated, 16), backbone_report(reference, 16)
    lengths_table = per_length(generated, (real["rg_a"], real["rg_b"]))
    metrics = {name: m(reference, generated) for name, m in modality.metrics().items()}
    goals = {
        "ca_ca_valid >= 0.90": gen["ca_ca_valid"] >= 0.90,
        "clash_rate < 0.02": gen["clash_rate"] < 0.02,
        "helix within 0.15": abs(gen["helix_fraction"] - real["helix_fraction"]) <= 0.15,
        "strand within 0.15": abs(gen["strand_fraction"] - real["strand_fraction"]) <= 0.15,
    }
    return {"count": count, "steps": steps, "shift": shift, "guidance": guidance, "solver": solver,
            "solver_options": solver_options or {}, "schedule": modality.rotation_schedule,
            "rotation_rate": modality.rotation_rate, "lengths": QUALITY_LENGTHS, "generate_s": gen_s,
            "generated": gen, "training_set": real, "per_length": lengths_table, "metrics": metrics, "goals": goals,
            "pdb_dir": str(pdb_dir)}


def per_length(generated: list[torch.Tensor], rg_fit: tuple[float, float]) -> list[dict]:
    """CA-CA validity, clash rate and mean Rg per generated length, beside the training set's Rg fit a L^b."""
    from flowcore_protein.metrics import ca_ca_valid, ca_coords, clash_rate, radius_of_gyration

    rows = []
    for length in sorted({len(g) for g in generated}):
        group = [g for g in generated if len(g) == length]
        rg = [radius_of_gyration(ca) for ca in ca_coords(group)]
        rows.append({"length": length, "count": len(group), "ca_ca_valid": ca_ca_valid(group),
                     "clash_rate": clash_rate(group), "rg_mean": float(sum(rg) / len(rg)),
                     "rg_training_fit": rg_fit[0] * length ** rg_fit[1]})
    return rows


def per_length_from_pdb(record_path: Path, pdb_dir: Path, results_md: Path) -> None:
    """Add the per-length table to a finished record from the PDB files it wrote (no generation)."""
    from flowcore_protein.modality import ProteinCodec

    record = json.loads(record_path.read_text())
    codec = ProteinCodec()
    generated = [codec.read(p) for p in sorted(pdb_dir.glob("backbone_*.pdb"))]
    real = record["quality"]["training_set"]
    record["quality"]["per_length"] = per_length(generated, (real["rg_a"], real["rg_b"]))
    record["quality"]["per_length_source"] = (f" (from the {len(generated)} PDB files written, read back: "
                                              f"`python benchmarks/protein.py --per-length-from {pdb_dir}`)")
    record_path.write_text(json.dumps(record, indent=1) + "\n")
    write_results_md(record, results_md)


def sampler_variants(run, variants: list[tuple[int, float, str]], count: int = 10) -> list[dict]:
    """The backbone report of ``count`` backbones (lengths 60-256 in turn) per (Euler steps, time shift,
    rotation schedule)."""
    from flowcore_protein.metrics import backbone_report

    lengths = [QUALITY_LENGTHS[i % len(QUALITY_LENGTHS)] for i in range(count)]
    rows = []
    for steps, shift, schedule in variants:
        report = backbone_report(generate_frames(run, lengths, steps, seed=0, shift=shift, schedule=schedule), 8)
        rows.append({"steps": steps, "shift": shift, "schedule": schedule, **{k: report[k] for k in (
            "ca_ca_valid", "ca_ca_mean", "ca_ca_std", "clash_rate", "helix_fraction", "strand_fraction")}})
        print(f"variant {steps} steps, shift {shift:g}, {schedule} rotations: CA-CA valid "
              f"{report['ca_ca_valid']:.3f}, clash {report['clash_rate']:.3f}", flush=True)
    return rows


def speed(run, lengths: list[int], steps_list: list[int], shift: float, device: str = "cpu") -> list[dict]:
    sync = torch.cuda.synchronize if device.startswith("cuda") else (lambda: None)
    rows = []
    for length in lengths:
        for steps in steps_list:
            generate_frames(run, [length], 2, seed=0, device=device)  # warm-up: allocations, first-call paths
            sync()
            started = time.perf_counter()
            generate_frames(run, [length], steps, seed=1, shift=shift, device=device)
            sync()
            rows.append({"length": length, "steps": steps, "seconds": time.perf_counter() - started})
            print(f"length {length} steps {steps}: {rows[-1]['seconds']:.2f} s", flush=True)
    return rows


def write_results_md(record: dict, path: Path) -> None:
    m, q = record["machine"], record.get("quality")
    lines = ["## protein", "",
             f"`{record['command']}` on {m['cpu']} ({m['cores']} cores, torch {m['torch']}, "
             f"{m['threads']} thread(s)); load average at start {m['load_start']}, at end {m['load_end']} "
             f"(the CPU was shared with other jobs: times are this moment's, not an idle machine's).", ""]
    if record.get("training"):
        t = record["training"]
        lines += [f"Run `{record['run']}`: {t}", ""]
    if q:
        r = q["training_set"]
        qg = record.get("quality_guided")
        schedule = q.get("schedule", "linear")
        rotations = f"exp rotation schedule, rate {q['rotation_rate']:g}" if schedule == "exp" else "linear rotations"
        solver = q.get("solver", "euler")
        options = ", ".join(f"{k} {v:g}" for k, v in q.get("solver_options", {}).items())
        stepper = "Euler" if solver == "euler" else f"{solver}{f' ({options})' if options else ''}"
        lines += [f"Quality: {q['count']} backbones, lengths {q['lengths']} in turn, {q['steps']} {stepper} steps "
                  f"(time shift {q['shift']:g}, {rotations}), "
                  f"against {int(r['samples'])} training chains."]
        if qg:
            w = qg["guidance"]
            lines += [f"\"Model only\" is the network's own flow; \"with guidance\" adds the opt-in steric / bond "
                      f"guidance of the sampler (clash {w['clash']:g}, bond {w['bond']:g}, t < {w['t_max']:g}; "
                      f"docs/plugins/protein.md) to the same noise. The goals are read on the model-only column; "
                      f"the guided one is a sampling aid beside it."]
        columns = [("generated, model only", q)] + ([("with guidance", qg)] if qg else [])
        lines += ["", "| | " + " | ".join(c for c, _ in columns) + " | training set | goal |",
                  "| --- | " + " | ".join("---:" for _ in columns) + " | ---: | --- |"]

        def row(label, cell, real, goal_key=None, goal=""):
            cells = []
            for _, qq in columns:
                text = cell(qq["generated"])
                if goal_key:
                    text += f" ({'met' if qq['goals'][goal_key] else 'not met'})"
                cells.append(text)
            lines.append(f"| {label} | " + " | ".join(cells) + f" | {real} | {goal} |")

        row("consecutive CA-CA in 3.8 +/- 0.2 A", lambda x: f"{x['ca_ca_valid']:.3f}", f"{r['ca_ca_valid']:.3f}",
            "ca_ca_valid >= 0.90", ">= 0.90")
        row("CA-CA mean +/- std (A)", lambda x: f"{x['ca_ca_mean']:.2f} +/- {x['ca_ca_std']:.2f}",
            f"{r['ca_ca_mean']:.2f} +/- {r['ca_ca_std']:.2f}", goal="3.80")
        row("clash rate (residues)", lambda x: f"{x['clash_rate']:.3f}", f"{r['clash_rate']:.3f}",
            "clash_rate < 0.02", "< 0.02")
        row("helix fraction (P-SEA)", lambda x: f"{x['helix_fraction']:.3f}", f"{r['helix_fraction']:.3f}",
            "helix within 0.15", "within 0.15")
        row("strand fraction (P-SEA)", lambda x: f"{x['strand_fraction']:.3f}", f"{r['strand_fraction']:.3f}",
            "strand within 0.15", "within 0.15")
        row("Rg = a L^b", lambda x: f"{x['rg_a']:.2f} L^{x['rg_b']:.2f}", f"{r['rg_a']:.2f} L^{r['rg_b']:.2f}")
        row("mean pairwise TM-score (16 each)", lambda x: f"{x['pairwise_tm']:.3f}", f"{r['pairwise_tm']:.3f}")
        lines += ["", "Modality metrics (generated, model only, vs training set): " + ", ".join(
            f"{k} {v:.3f}" for k, v in q["metrics"].items()) + "."]
        if qg:
            lines += ["With guidance: " + ", ".join(f"{k} {v:.3f}" for k, v in qg["metrics"].items()) + "."]
        lines.append("")
    if q and q.get("per_length"):
        source = q.get("per_length_source", "")
        guided = {r["length"]: r for r in (record.get("quality_guided") or {}).get("per_length", [])}
        extra = " | CA-CA, guided | clash, guided | mean Rg, guided" if guided else ""
        lines += [f"Per generated length{source} (model only" + (", then with guidance" if guided else "") + "):", "",
                  f"| length | backbones | CA-CA in 3.8 +/- 0.2 | clash rate | mean Rg (A){extra} | "
                  "training-set fit a L^b (A) |",
                  "| ---: | ---: | ---: | ---: | ---: | " + ("---: | ---: | ---: | " if guided else "") + "---: |"]
        for r in q["per_length"]:
            gr = guided.get(r["length"])
            more = f" | {gr['ca_ca_valid']:.3f} | {gr['clash_rate']:.3f} | {gr['rg_mean']:.1f}" if gr else ""
            lines.append(f"| {r['length']} | {r['count']} | {r['ca_ca_valid']:.3f} | {r['clash_rate']:.3f} | "
                         f"{r['rg_mean']:.1f}{more} | {r['rg_training_fit']:.1f} |")
        lines.append("")
    if record.get("variants"):
        lines += ["Sampler settings (10 backbones each, lengths as above, same noise):", "",
                  "| Euler steps | time shift | rotations | CA-CA in 3.8 +/- 0.2 | CA-CA mean +/- std "
                  "| clash rate | helix "
                  "| strand |", "| ---: | ---: | --- | ---: | ---: | ---: | ---: | ---: |"]
        lines += [f"| {v['steps']} | {v['shift']:g} | {v.get('schedule', 'linear')} | {v['ca_ca_valid']:.3f} | "
                  f"{v['ca_ca_mean']:.2f} +/- "
                  f"{v['ca_ca_std']:.2f} | {v['clash_rate']:.3f} | {v['helix_fraction']:.3f} | "
                  f"{v['strand_fraction']:.3f} |" for v in record["variants"]]
        lines.append("")
    if record.get("speed"):
        lines += [f"Seconds per backbone (one backbone per call, Euler, CPU, "
                  f"{record['config']['parameters'] / 1e6:.2f}M-parameter network):", "",
                  "| length | " + " | ".join(f"{s} steps" for s in record["config"]["steps"]) + " |",
                  "| ---: | " + " | ".join("---:" for _ in record["config"]["steps"]) + " |"]
        for length in record["config"]["lengths"]:
            cells = [f"{r['seconds']:.2f}" for r in record["speed"] if r["length"] == length]
            lines.append(f"| {length} | " + " | ".join(cells) + " |")
        lines.append("")
        gpu = record.get("speed_gpu")
        if gpu:
            note = f" {gpu['note']}" if gpu.get("note") else ""
            lines += [f"The same on a GPU ({gpu['device']}, torch {gpu['torch']}; `{gpu['command']}`).{note}", "",
                      "| length | " + " | ".join(f"{s} steps" for s in gpu["steps"]) + " |",
                      "| ---: | " + " | ".join("---:" for _ in gpu["steps"]) + " |"]
            for length in gpu["lengths"]:
                cells = [f"{r['seconds']:.3f}" for r in gpu["speed"] if r["length"] == length]
                lines.append(f"| {length} | " + " | ".join(cells) + " |")
            lines.append("")
        lines += [f"ReQFlow (paper): {REQFLOW_GPU_S['seconds']} s per backbone at {REQFLOW_GPU_S['steps']} steps, "
                  f"length {REQFLOW_GPU_S['length']}, on a GPU, with a much larger network"
                  + ("." if gpu else "; no GPU run here yet."), ""]
    lines += [f"Full numbers in `{record['json']}`.", ""]
    section = "\n".join(lines)
    replace_section(path, "protein", section)


def train_timed(config_path: Path, overrides: list[str], minutes: float | None) -> dict:
    """``flowcore train`` in a child process, stopped after ``minutes`` of wall time if still running.

    The run keeps the weights of its last export (every ``train.checkpoint_every`` steps), so a
    stopped run is measured with what it had learned inside the budget. Records wall and CPU
    seconds (of the child), the load average and the step of those weights.
    """
    import resource
    import signal
    import subprocess
    import sys

    from flowcore.train.config import load_config

    config = load_config(config_path, overrides)
    if (Path(config.out_dir) / "checkpoints").is_dir():  # flowcore train would resume it and time nothing
        sys.exit(f"{config.out_dir} already holds a run, which a timed training would resume instead of training; "
                 "move it away, or score it with --run")
    cmd = [str(Path(sys.executable).with_name("flowcore")), "train", str(config_path),
           *(a for o in overrides for a in ("--set", o))]
    load_start, wall = os.getloadavg(), time.perf_counter()
    child = subprocess.Popen(cmd, start_new_session=True)
    try:
        child.wait(timeout=None if minutes is None else 60 * minutes)
        stopped = False
    except subprocess.TimeoutExpired:
        os.killpg(child.pid, signal.SIGTERM)  # its own session: only the training and its workers
        child.wait()
        stopped = True
    wall = time.perf_counter() - wall
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    last = torch.load(Path(config.out_dir) / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=False)
    record = {"config": str(config_path), "overrides": overrides, "out_dir": str(config.out_dir),
              "minutes_limit": minutes, "stopped_at_limit": stopped, "weights_step": int(last["global_step"]),
              "batch_size": config.train.batch_size, "threads": config.train.cpu_threads,
              "wall_s": round(wall, 1), "cpu_s": round(usage.ru_utime + usage.ru_stime, 1),
              "load_start": [round(x, 2) for x in load_start], "load_end": [round(x, 2) for x in os.getloadavg()]}
    (Path(config.out_dir) / TRAINING_TIME).write_text(json.dumps(record, indent=1) + "\n")
    return record


def describe_training(t: dict) -> str:
    stop = f", stopped at the {t['minutes_limit']:g}-minute limit" if t["stopped_at_limit"] else ""
    return (f"`flowcore train {t['config']}" + "".join(f" --set {o}" for o in t["overrides"]) + "`"
            f"{stop}: weights of step {t['weights_step']} (batch {t['batch_size']}, {t['threads']} thread(s)); "
            f"{t['wall_s'] / 60:.1f} min wall, {t['cpu_s'] / 60:.1f} min of process CPU; load average "
            f"{t['load_start']} at the start, {t['load_end']} at the end.")


def speed_only(args) -> None:
    """The speed table alone on ``args.device`` (a GPU machine needs no dataset or biotite for it)."""
    torch.set_num_threads(args.threads)
    run = flowcore.load(args.run, device=args.device)
    lengths, steps_list = ([100], [20]) if args.quick else ([100, 200, 300], [20, 50, 100])
    device = (torch.cuda.get_device_name() if args.device.startswith("cuda")
              else platform.processor() or platform.machine())
    record = {"command": f"python benchmarks/protein.py --run {args.run} --speed-only --device {args.device}",
              "device": device, "torch": torch.__version__, "lengths": lengths, "steps": steps_list,
              "speed": speed(run, lengths, steps_list, args.shift, args.device)}
    args.out.write_text(json.dumps(record, indent=1) + "\n")
    print(f"wrote {args.out}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--run", type=Path, help="run directory of a trained protein flow (default: --train's out_dir)")
    ap.add_argument("--train", type=Path, help="a config to train first, timed (wall, CPU, load)")
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="overrides for --train's config")
    ap.add_argument("--train-only", action="store_true", help="with --train: stop after training")
    ap.add_argument("--train-minutes", type=float, help="with --train: stop the training after this many minutes")
    ap.add_argument("--shift", type=float, default=0.5,
                    help="time shift of the sampling grid (< 1: steps near the data)")
    ap.add_argument("--count", type=int, default=50, help="backbones generated for the quality check")
    ap.add_argument("--steps", type=int, default=50, help="Euler steps for the quality check")
    ap.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    ap.add_argument("--solver", help="sampler of the quality check (default: the run's sample.solver)")
    ap.add_argument("--solver-options", type=json.loads, metavar="JSON",
                    help='its options, e.g. \'{"churn": 1, "noise_scale": 0.5}\' for euler_sde '
                         "(default: the run's sample.solver_options when --solver is the run's solver)")
    ap.add_argument("--guidance", help="clash:bond:t_max: also measure the quality with steric / bond guidance "
                    "(reported beside the model-only figures, same noise; e.g. 10:10:0.3)")
    ap.add_argument("--variants", default="", help="extra steps:shift[:rotation schedule] sampler settings to "
                    "compare, e.g. 50:1,100:0.5:linear (default schedule: the run's)")
    ap.add_argument("--per-length-from", type=Path, metavar="PDB_DIR",
                    help="only add the per-length table to --out's record from the PDB files of its run")
    ap.add_argument("--quick", action="store_true", help="speed at length 100 and 20 steps only")
    ap.add_argument("--device", default="cpu", help="where the speed table is measured (cpu, cuda)")
    ap.add_argument("--speed-only", action="store_true", help="only the speed table, written to --out (no RESULTS.md)")
    ap.add_argument("--gpu-speed", type=Path, metavar="JSON",
                    help="add the speed table of a --speed-only --device cuda record to --out's record and RESULTS.md")
    ap.add_argument("--no-speed", action="store_true", help="skip the speed table")
    ap.add_argument("--training", default="", help="a sentence on how the run was trained (goes in the report)")
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "protein.json")
    ap.add_argument("--results-md", type=Path, default=ROOT / "benchmarks" / "RESULTS.md",
                    help="the Markdown file whose '## protein' section is replaced")
    args = ap.parse_args()

    from flowcore.registry import get_registry

    if args.per_length_from:
        per_length_from_pdb(args.out, args.per_length_from, args.results_md)
        return
    if args.gpu_speed:
        record = json.loads(args.out.read_text())
        record["speed_gpu"] = json.loads(args.gpu_speed.read_text())
        args.out.write_text(json.dumps(record, indent=1) + "\n")
        write_results_md(record, args.results_md)
        return
    if args.speed_only:
        speed_only(args)
        return
    training = train_timed(args.train, args.set, args.train_minutes) if args.train else None
    if args.train_only:
        return
    run_dir = args.run or (Path(training["out_dir"]) if training else None)
    if run_dir is None:
        ap.error("give --run or --train")
    if training is None and (run_dir / TRAINING_TIME).is_file():
        training = json.loads((run_dir / TRAINING_TIME).read_text())
    torch.set_num_threads(args.threads)
    started = time.perf_counter()
    load_start = os.getloadavg()[0]
    run = flowcore.load(run_dir, device="cpu")
    options = {k: v for k, v in run.config.data.options.items() if k != "crop"}  # whole chains as reference
    reference_ds = get_registry().dataset(run.config.data.dataset).build("train", **options)
    reference = [reference_ds[i]["protein"] for i in range(len(reference_ds))]
    lengths, steps_list = ([100], [20]) if args.quick else ([100, 200, 300], [20, 50, 100])
    record = {
        "command": "python benchmarks/protein.py " + " ".join(
            a for a in [f"--train {args.train}" if args.train else "", *(f"--set {o}" for o in args.set),
                        f"--train-minutes {args.train_minutes:g}" if args.train_minutes else "",
                        f"--run {args.run}" if args.run else "", f"--count {args.count}",
                        f"--steps {args.steps}", f"--shift {args.shift:g}", f"--threads {args.threads}",
                        f"--solver {args.solver}" if args.solver else "",
                        f"--solver-options '{json.dumps(args.solver_options)}'" if args.solver_options else "",
                        f"--guidance {args.guidance}" if args.guidance else "",
                        f"--variants {args.variants}" if args.variants else "",
                        "--quick" if args.quick else "", "--no-speed" if args.no_speed else ""] if a),
        "run": str(run_dir),
        "training": args.training or (describe_training(training) if training else ""),
        "training_measured": training,
        "config": {"lengths": lengths, "steps": steps_list, "model": run.config.to_dict()["model"],
                   "parameters": sum(p.numel() for p in run.net.parameters())},
        "machine": {"cpu": platform.processor() or platform.machine(), "cores": os.cpu_count(),
                    "threads": args.threads, "torch": torch.__version__, "load_start": round(load_start, 2)},
    }
    pdb_dir = args.out.with_name(args.out.stem + "_pdb")  # results/protein.json -> results/protein_pdb/
    solver = args.solver or run.config.sample.solver
    solver_options = run.config.sample.options_for(solver) if args.solver_options is None else args.solver_options
    record["quality"] = quality(run, args.count, args.steps, args.shift, reference, pdb_dir, solver=solver,
                                solver_options=solver_options)
    print("model only:", json.dumps(record["quality"]["goals"]), flush=True)
    if args.guidance:
        guided_dir = args.out.with_name(args.out.stem + "_guided_pdb")
        record["quality_guided"] = quality(run, args.count, args.steps, args.shift, reference, guided_dir,
                                           guidance=parse_guidance(args.guidance), pdb_count=10, solver=solver,
                                           solver_options=solver_options)
        print("with guidance:", json.dumps(record["quality_guided"]["goals"]), flush=True)
    if args.variants:
        default = run.bundles["protein"].modality.rotation_schedule
        parts = [(v.split(":") + [default])[:3] for v in args.variants.split(",")]
        record["variants"] = sampler_variants(run, [(int(a), float(b), c) for a, b, c in parts])
    if not args.no_speed:
        record["speed"] = speed(run, lengths, steps_list, args.shift)
    record["machine"]["load_end"] = round(os.getloadavg()[0], 2)
    record["wall_s"] = time.perf_counter() - started
    record["json"] = (str(args.out.resolve().relative_to(ROOT)) if args.out.resolve().is_relative_to(ROOT)
                      else str(args.out))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(record, indent=1) + "\n")
    write_results_md(record, args.results_md)
    print(f"wrote {args.out} and the protein section of {args.results_md} in {record['wall_s']:.0f} s")


if __name__ == "__main__":
    main()
