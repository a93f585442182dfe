"""LiDAR scans in few steps: 1-RF, reflow (2-RF) and k-step distillation (k = 1, 2, 4), R2Flow's ladder.

Runs, each a `flowcore` child process (timed; a stage whose run directory holds a model is kept):
  1. 1-RF: `flowcore train examples/configs/lidar_street.yaml` (car-count-conditional, simulated
     32 x 256 scans of procedural streets), or --base RUN, a 1-RF trained before (not trained
     again; e.g. a longer run, or one from another machine; its dataset options pick the
     sensor of the scans scored);
  2. 2-RF: `flowcore reflow` of it on --pairs (noise, scan) pairs of --pair-steps Euler steps;
  3. k-step distillation of the 2-RF for k = 1, 2, 4: `flowcore reflow` of the 2-RF with
     `flow.timesteps: grid` (t on the k-step grid), on pairs of the 2-RF (made once, shared).
Then scores every model against --count held-out simulated scans (the test split, whose car
counts are the conditions): BEV-JSD, BEV-MMD, Chamfer, range-histogram TV, ray-drop gap, cars
found vs requested, and the sampling time per scan; a second simulated split gives the
real-vs-real floor. Writes benchmarks/results/lidar.json, the `## lidar` section of
benchmarks/RESULTS.md and previews (real vs generated) in benchmarks/results/.

    .venv/bin/python benchmarks/lidar.py
    .venv/bin/python benchmarks/lidar.py --base runs/lidar_street_long --base-wall-s 1700
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parent
REPO = ROOT.parent
sys.path.insert(0, str(ROOT))
from results_md import replace_section  # noqa: E402

FLOWCORE = str(Path(sys.executable).parent / "flowcore")
ENV = {"OMP_WAIT_POLICY": os.environ.get("OMP_WAIT_POLICY", "PASSIVE")}
CONFIG = "examples/configs/lidar_street.yaml"
BASE_STEPS = (1, 2, 4, 8, 16, 64)
STUDENT_STEPS = (1, 2, 4, 8)
METRICS = ("bev_jsd", "bev_mmd", "chamfer", "range_histogram_tv", "ray_drop_gap")


def timed(argv: list[str]) -> dict:
    """Run ``flowcore ARGV`` as a child; its wall time, CPU time and the load average around it."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    load_start, start = os.getloadavg(), time.perf_counter()
    subprocess.run([FLOWCORE, *argv], check=True, env={**os.environ, **ENV}, cwd=REPO)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return {"command": " ".join(f"{k}={v}" for k, v in ENV.items()) + " flowcore " + " ".join(argv),
            "wall_s": round(time.perf_counter() - start, 1),
            "cpu_s": round((after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime), 1),
            "load": [round(v, 2) for v in load_start]}


def done(run: Path) -> bool:
    return (REPO / run / "model.safetensors").is_file()


def stage(run: Path, argv: list[str], log: dict, key: str, log_path: Path) -> None:
    """Run a stage unless its run directory holds a model from an earlier call (its timing is in ``log_path``)."""
    if done(run) and key in log:
        print(f"{run}: kept", flush=True)
        return
    if (REPO / run / "checkpoints").is_dir():  # a timed stage would resume it and time only the rest
        sys.exit(f"{run} holds a run whose timing is not in {log_path} ({key!r}): move it away to time it again")
    print(f"{run}: {' '.join(argv)}", flush=True)
    log[key] = timed(argv)
    log_path.write_text(json.dumps(log, indent=1) + "\n")


def score(pipe, modality, real: list, labels: list[int], steps: int, batch: int) -> dict:
    from flowcore_lidar.metrics import cars_found

    start = time.perf_counter()
    made = pipe.generate("lidar", {"label": labels}, len(labels), batch_size=batch, steps=steps, seed=0)["lidar"]
    seconds = (time.perf_counter() - start) / len(labels)
    made = [torch.as_tensor(s).clamp(-1, 1) for s in made]
    metrics = modality.metrics()
    out = {name: metrics[name](real, made) for name in METRICS}
    found = np.array(cars_found(modality.sensor, made))
    out.update(cars_exact=float((found == np.array(labels)).mean()),
               cars_mae=float(np.abs(found - np.array(labels)).mean()),
               sample_s=round(seconds, 4))
    return {"scores": out, "samples": made}


def floor(modality, real: list, other: list, labels: list[int]) -> dict:
    from flowcore_lidar.metrics import cars_found

    metrics = modality.metrics()
    out = {name: metrics[name](real, other) for name in METRICS}
    found = np.array(cars_found(modality.sensor, real))
    out.update(cars_exact=float((found == np.array(labels)).mean()),
               cars_mae=float(np.abs(found - np.array(labels)).mean()))
    return out


def recipe(settings: dict) -> str:
    """The 1-RF's training, in words, from the settings the payload records."""
    base = settings.get("base_recipe")
    if not base:
        return f"{settings['train_steps']} steps of batch 16"
    return (f"{base['steps']} steps of batch {base['batch_size']}, lr {base['lr']:g} cosine, EMA {base['ema']}, "
            f"patch {base['patch'][0]} x {base['patch'][1]}, width {base['hidden_size']}, "
            f"{base['depth_double']} double + {base['depth_single']} single blocks, {base['timesteps']} t"
            + (", return-mask tokens (drop_mask)" if base.get("drop_mask") else ""))


def base_recipe(run: Path) -> dict:
    """The training settings of the 1-RF run ``run`` (its config.yaml)."""
    import yaml

    cfg = yaml.safe_load((REPO / run / "config.yaml").read_text())
    net = cfg["model"]["transformer"]
    return {"steps": cfg["train"]["steps"], "batch_size": cfg["train"]["batch_size"], "lr": cfg["train"]["lr"],
            "ema": cfg["train"]["ema"], "patch": list(cfg["modalities"]["lidar"]["patch"]),
            "hidden_size": net["hidden_size"], "depth_double": net["depth_double"],
            "depth_single": net["depth_single"], "timesteps": cfg["flow"]["timesteps"],
            "drop_mask": bool(cfg["modalities"]["lidar"].get("drop_mask", False))}


def scan_options(run: Path) -> dict:
    """The lidar_street options (sensor, max_cars) of the run's dataset, so its held-out scans are scored."""
    import yaml

    data = yaml.safe_load((REPO / run / "config.yaml").read_text())["data"]["options"] or {}
    keys = ("sensor", "rows", "cols", "fov_up", "fov_down", "max_cars", "seed")
    return {k: data[k] for k in keys if data.get(k) is not None}


def students(settings: dict) -> str:
    """How the k-step students were trained, from the settings of lidar.json."""
    steps = settings["distill_steps"]
    steps = steps if isinstance(steps, dict) else {k: steps for k in ("1", "2", "4")}
    steps = {str(k): v for k, v in steps.items()}
    pairs = settings.get("student_pairs", settings["pairs"])
    made = f"on {pairs} pairs of the 2-RF, " if pairs != settings["pairs"] else ""
    if len(set(steps.values())) == 1:
        return f"{made}{steps['1']} steps each"
    return f"{made}{' / '.join(str(steps[k]) for k in ('1', '2', '4'))} steps for k = 1 / 2 / 4"


def markdown(payload: dict) -> str:
    rows = payload["rows"]
    base64 = rows["1-RF, 64 steps"]["scores"]
    reflow_sets = "".join(f", `{kv}`" for kv in payload["settings"].get("reflow_set", []))
    lines = ["## lidar", "",
             "Car-count-conditional scans of simulated streets (flowcore_lidar's simulated sensor "
             f"{payload['settings']['sensor']} beams x columns; procedural streets, not KITTI-360), "
             f"`{payload['command']}`. Models: 1-RF "
             f"({recipe(payload['settings'])}), 2-RF (reflow on "
             f"{payload['settings']['pairs']} pairs of {payload['settings']['pair_steps']} Euler steps, "
             f"{payload['settings']['reflow_steps']} steps{reflow_sets}) and k-step distillation of the 2-RF "
             f"(t on the k-grid, {students(payload['settings'])}), all through the core's reflow stage. "
             f"Scored on {payload['settings']['count']} held-out scans whose car counts are the conditions "
             "(cfg 1); BEV-JSD/MMD as R2Flow (lower is better); cars: exact share / mean absolute error of the "
             "cars found by clustering against the count asked for. Time per scan: Euler sampling on this "
             f"machine's CPU ({payload['machine']['cpu']}, 1 thread), batch {payload['settings']['batch']}.", "",
             "| model | BEV-JSD | BEV-MMD | x 1-RF@64 (JSD / MMD) | Chamfer m | range TV | ray-drop gap | "
             "cars exact / MAE | s / scan |", "| --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    for name, row in rows.items():
        s = row["scores"]
        lines.append(f"| {name} | {s['bev_jsd']:.4f} | {s['bev_mmd']:.2e} | {s['bev_jsd'] / base64['bev_jsd']:.2f} / "
                     f"{s['bev_mmd'] / max(base64['bev_mmd'], 1e-12):.2f} | {s['chamfer']:.3f} | "
                     f"{s['range_histogram_tv']:.3f} | {s['ray_drop_gap']:.3f} | {s['cars_exact']:.2f} / "
                     f"{s['cars_mae']:.2f} | {s['sample_s']:.3f} |")
    f = payload["real_floor"]
    lines.append(f"| real vs real (another simulated split) | {f['bev_jsd']:.4f} | {f['bev_mmd']:.2e} | | "
                 f"{f['chamfer']:.3f} | {f['range_histogram_tv']:.3f} | {f['ray_drop_gap']:.3f} | "
                 f"{f['cars_exact']:.2f} / {f['cars_mae']:.2f} (real scans vs their labels) | |")
    verdicts = []
    for k in (1, 2, 4):
        s = rows[f"{k}-step distilled, {k} step{'s' if k > 1 else ''}"]["scores"]
        jsd, mmd = s["bev_jsd"] / base64["bev_jsd"], s["bev_mmd"] / max(base64["bev_mmd"], 1e-12)
        verdicts.append(f"k = {k}: {jsd:.2f}x / {mmd:.2f}x ({'within' if max(jsd, mmd) <= 1.5 else 'not within'})")
    floor_jsd, floor_mmd = payload["real_floor"]["bev_jsd"], payload["real_floor"]["bev_mmd"]
    lines += ["", "Distilled vs 1-RF at 64 steps, BEV-JSD / BEV-MMD (goal: within 1.5x): " + "; ".join(verdicts) + ".",
              "", f"How far the 1-RF itself is from real scans: at 64 steps its BEV-JSD is {base64['bev_jsd']:.3f} and "
              f"BEV-MMD {base64['bev_mmd']:.2e}, against {floor_jsd:.3f} and {floor_mmd:.2e} between two real splits "
              f"({base64['bev_jsd'] / floor_jsd:.1f}x and {base64['bev_mmd'] / max(floor_mmd, 1e-12):.1f}x the floor); "
              "the 1.5x goal compares the students with this 1-RF, not with real scans.",
              "", f"Car counts: in the 1-RF's scans at 64 steps the clustering finds the count asked for in "
              f"{base64['cars_exact']:.0%} of scans (MAE {base64['cars_mae']:.2f}), in the real scans "
              f"{payload['real_floor']['cars_exact']:.0%} (MAE {payload['real_floor']['cars_mae']:.2f}): the "
              + ("condition is followed about as well as the clustering can tell."
                 if base64["cars_mae"] <= 1.5 * payload["real_floor"]["cars_mae"] else
                 "car-count condition is not yet followed."),
              "", "R2Flow's own time per scan is not among the figures checked offline (its GPU timings are marked "
              "not verified in the project's references), so none is compared here; no GPU was lent for this run."]
    lines += ["", "Training wall times (one thread): " + ", ".join(
        f"{k} {v['wall_s']:.0f} s" for k, v in payload["runs"].items() if v.get("wall_s") is not None)
              + ".", "", "Real (top) and generated scans for the same car counts (range image: depth over reflectance; "
              "bird's-eye view +-40 m, colour = height):", ""]
    lines += [f"![{name}]({Path(p).relative_to('benchmarks')})" for name, p in payload["previews"].items()]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--train-steps", type=int, help="1-RF steps (default: the config's train.steps)")
    parser.add_argument("--pairs", type=int, default=512)
    parser.add_argument("--pair-steps", type=int, default=16)
    parser.add_argument("--reflow-steps", type=int, default=400)
    parser.add_argument("--distill-steps", default="200",
                        help="steps of each k-step student: one number, or three for k = 1, 2, 4 (e.g. 1200,400,400)")
    parser.add_argument("--student-pairs", type=int, help="pairs of the 2-RF the students learn from (default --pairs)")
    parser.add_argument("--count", type=int, default=64, help="held-out scans scored per model")
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--runs", default="runs/lidar_street", help="run directory prefix")
    parser.add_argument("--reflow-set", action="append", default=[], metavar="KEY=VALUE",
                        help="a config override for the 2-RF stage (repeatable), e.g. flow.distance=pseudo_huber")
    parser.add_argument("--base", help="a trained 1-RF run to start from instead of training one (--train-steps "
                        "is then unused; the run's config.yaml gives its recipe)")
    parser.add_argument("--base-wall-s", type=float, help="the --base run's training wall time, for the report")
    parser.add_argument("--markdown-only", action="store_true", help="rewrite the RESULTS section from lidar.json")
    parser.add_argument("--write", action="store_true", help="write lidar.json and the RESULTS section for another "
                        "--runs prefix too (the default prefix always writes them)")
    args = parser.parse_args()
    if args.markdown_only:
        payload = json.loads((ROOT / "results" / "lidar.json").read_text())
        replace_section(ROOT / "RESULTS.md", "lidar", markdown(payload))
        return
    torch.set_num_threads(1)
    out_json = ROOT / "results" / "lidar.json"
    log_path = REPO / f"{args.runs}_stages.json"
    log = json.loads(log_path.read_text()) if log_path.is_file() else {}
    base, rf2 = Path(args.base or args.runs), Path(f"{args.runs}_2rf")
    if args.base:
        if not done(base):
            sys.exit(f"--base {base}: no model.safetensors there (train it first)")
        log["1-RF"] = {"command": f"trained apart: {base}", "wall_s": args.base_wall_s}
        log_path.write_text(json.dumps(log, indent=1) + "\n")
    else:
        steps = ["--set", f"train.steps={args.train_steps}"] if args.train_steps else []
        stage(base, ["train", CONFIG, "--set", f"out_dir={base}", *steps, "--set", "train.progress_bar=false"],
              log, "1-RF", log_path)
    distill_steps = [int(v) for v in str(args.distill_steps).split(",")]
    if len(distill_steps) not in (1, 3):
        sys.exit(f"--distill-steps {args.distill_steps}: give one number or three (k = 1, 2, 4)")
    distill_steps = dict(zip((1, 2, 4), distill_steps * 3 if len(distill_steps) == 1 else distill_steps))
    student_pairs = args.student_pairs or args.pairs

    def pair_sets(pairs: int) -> list[str]:
        return ["--set", f"reflow.pairs={pairs}", "--set", f"reflow.steps={args.pair_steps}",
                "--set", "train.progress_bar=false", "--set", "train.checkpoint_every=100"]

    rf2_sets = [a for kv in args.reflow_set for a in ("--set", kv)]
    stage(rf2, ["reflow", str(base), "--out", str(rf2), *pair_sets(args.pairs),
                "--set", f"train.steps={args.reflow_steps}", *rf2_sets], log, "2-RF", log_path)
    for k in (1, 2, 4):
        run = Path(f"{args.runs}_k{k}")
        first = Path(f"{args.runs}_k1") / "pairs"
        if k > 1 and (REPO / first).is_dir() and not (REPO / run / "pairs").exists():
            shutil.copytree(REPO / first, REPO / run / "pairs")  # the same 2-RF pairs serve every k
        stage(run, ["reflow", str(rf2), "--out", str(run), *pair_sets(student_pairs),
                    "--set", f"train.steps={distill_steps[k]}",
                    "--set", "flow.timesteps=grid", "--set", f"flow.timestep_options={{k: {k}}}",
                    "--set", f"sample.steps={k}"], log, f"{k}-step distilled", log_path)

    import flowcore
    from flowcore_lidar.data import street
    from flowcore_lidar.preview import write_preview

    options = scan_options(base)
    test, other = street("test", **options), street("val", **options)
    n = min(args.count, len(test), len(other))
    real = [test[i]["lidar"] for i in range(n)]
    labels = [test[i]["label"] for i in range(n)]
    rows, made = {}, {}
    models = [("1-RF", base, BASE_STEPS), ("2-RF", rf2, STUDENT_STEPS)]
    models += [(f"{k}-step distilled", Path(f"{args.runs}_k{k}"), (k,)) for k in (1, 2, 4)]
    modality = None
    for name, run, steps in models:
        pipe = flowcore.load(REPO / run, device="cpu")
        modality = pipe.bundles["lidar"].modality
        for s in steps:
            key = f"{name}, {s} step{'s' if s > 1 else ''}"
            print(f"scoring {key}", flush=True)
            result = score(pipe, modality, real, labels, s, args.batch)
            rows[key] = {"run": str(run), "steps": s, "scores": result["scores"]}
            made[key] = result["samples"]
            print(f"  {result['scores']}", flush=True)
    real_floor = floor(modality, real, [other[i]["lidar"] for i in range(n)], labels)
    shown = list(range(4))
    previews = {}
    shows = [("real", real), ("1-RF, 64 steps", made["1-RF, 64 steps"]), ("2-RF, 2 steps", made["2-RF, 2 steps"]),
             ("1-step distilled", made["1-step distilled, 1 step"])]
    for key, samples in shows:
        path = ROOT / "results" / f"lidar_{key.split(',')[0].replace(' ', '_').replace('-', '').lower()}.png"
        write_preview(modality.sensor, [samples[i].numpy() for i in shown], path)
        previews[key] = str(path.relative_to(REPO))
    payload = {
        "benchmark": "lidar", "command": "python benchmarks/lidar.py " + " ".join(sys.argv[1:]),
        "machine": {"cpu": platform.processor() or platform.machine(), "cores": os.cpu_count(),
                    "torch_threads": 1, "device": "cpu"},
        "settings": {"base": str(base), "base_recipe": base_recipe(base), "train_steps": base_recipe(base)["steps"],
                     "pairs": args.pairs, "pair_steps": args.pair_steps,
                     "reflow_steps": args.reflow_steps, "reflow_set": args.reflow_set,
                     "distill_steps": distill_steps, "student_pairs": student_pairs, "count": n,
                     "batch": args.batch, "sensor": f"{options.get('sensor', 'hdl64e')}, {real[0].shape[1]} x "
                     f"{real[0].shape[2]}", "conditions": "car counts of the test scans"},
        "runs": log, "rows": rows, "real_floor": real_floor, "previews": previews,
        "labels_shown": [labels[i] for i in shown],
    }
    if args.runs == "runs/lidar_street" or args.write:
        out_json.write_text(json.dumps(payload, indent=1) + "\n")
        replace_section(ROOT / "RESULTS.md", "lidar", markdown(payload))
    print(markdown(payload))


if __name__ == "__main__":
    main()
