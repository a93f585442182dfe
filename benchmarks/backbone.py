"""One training step (forward, backward, AdamW) of flowcore's FlowTransformer vs diffusers'
SD3Transformer2DModel at an equal config, in the same run: fp32 and bf16 autocast.

    .venv/bin/python benchmarks/backbone.py                     # this machine's CPU (and CUDA if present)
    .venv/bin/python benchmarks/backbone.py --device cpu --runs fp32/2/8/12 fp32/1/8/6 bf16/2/2/2
    .venv/bin/python benchmarks/backbone.py --device cuda --runs fp32/0/8/20 bf16/0/8/20

Each run is ``dtype/threads/batch/pairs`` (threads 0 = leave torch's setting). Both models are
built afresh for every run: flowcore's is converted from the diffusers one (``flowcore.nn.convert``),
so both hold the same weights, and the run checks their outputs agree before timing. Then
``--warmup`` + ``pairs`` pairs of steps, alternating the order inside each pair (A B, B A, ...)
so that drifting load from other processes hits both alike. Reported per run: the median of the
per-pair ratios (diffusers / flowcore step time) with its quartiles and range, the same for
process CPU time, the median step times, and achieved FLOP/s (flowcore's matmul FLOP count,
``model_stats``, which is the same for both) against the best large-matmul FLOP/s of the run's
dtype and thread count, measured before and after the steps. ``--profile`` adds torch.profiler's
split of one step of each model (matmul / attention / optimizer / the rest).
Writes benchmarks/results/backbone.json and the ``## backbone`` section of benchmarks/RESULTS.md.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from results_md import replace_section  # noqa: E402  (benchmarks/ is on sys.path when run)

from flowcore.nn import model_stats  # noqa: E402
from flowcore.nn.convert import from_diffusers, sd3_image_tokens, sd3_unpatchify, text_tokens  # noqa: E402

DEFAULT_RUNS = {"cpu": ["fp32/2/8/12", "bf16/2/2/2"], "cuda": ["fp32/0/8/20", "bf16/0/8/20"]}


@dataclass(frozen=True)
class RunSpec:
    """One timed comparison: autocast dtype, torch threads (0 = as is), batch size, timed pairs,
    and whether both models run under torch.compile (a fifth field ``compile``)."""

    dtype: str
    threads: int
    batch: int
    pairs: int
    compile: bool = False

    @classmethod
    def parse(cls, text: str) -> RunSpec:
        try:
            dtype, threads, batch, pairs, *rest = text.split("/")
            if rest not in ([], ["compile"]):
                raise ValueError
            spec = cls(dtype, int(threads), int(batch), int(pairs), bool(rest))
        except ValueError:
            raise SystemExit(f"--runs {text!r}: expected dtype/threads/batch/pairs[/compile], "
                             "e.g. fp32/2/8/12") from None
        if spec.dtype not in ("fp32", "bf16") or spec.threads < 0 or spec.batch < 1 or spec.pairs < 1:
            raise SystemExit(f"--runs {text!r}: dtype fp32 or bf16, threads >= 0, batch >= 1, pairs >= 1")
        return spec


def sync(device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()


def matmul_peak(device: str, dtype: torch.dtype, n: int, reps: int) -> float:
    """Best FLOP/s of an n x n x n product: the ceiling the model steps are measured against.

    Tried both as a plain matmul in ``dtype`` and as ``F.linear`` on fp32 inputs under
    autocast to ``dtype`` (what the model's layers run; on CPUs without native bf16 the two
    take different kernels), keeping the faster.
    """
    a = torch.randn(n, n, device=device)
    b = torch.randn(n, n, device=device)
    ab, bb = a.to(dtype), b.to(dtype)

    def matmul():
        return ab @ bb

    def linear():
        with torch.autocast(device, dtype=dtype, enabled=dtype != torch.float32):
            return torch.nn.functional.linear(a, b)

    best = float("inf")
    for fn in (matmul, linear):
        fn()
        for _ in range(reps):
            sync(device)
            t0 = time.perf_counter()
            fn()
            sync(device)
            best = min(best, time.perf_counter() - t0)
    return 2 * n**3 / best


def build(args, device):
    import diffusers

    torch.manual_seed(0)
    theirs = diffusers.SD3Transformer2DModel(
        sample_size=args.latent, patch_size=2, in_channels=16, num_layers=args.layers, attention_head_dim=64,
        num_attention_heads=args.heads, joint_attention_dim=args.text_dim, caption_projection_dim=64 * args.heads,
        pooled_projection_dim=args.pooled_dim, out_channels=16, pos_embed_max_size=args.latent // 2,
        qk_norm="rms_norm",
    )
    # diffusers zero-initialises its output; random weights make the equality check meaningful
    with torch.no_grad():
        for p in theirs.parameters():
            p.copy_(0.02 * torch.randn_like(p))
    ours = from_diffusers(theirs)
    return theirs.to(device).train(), ours.to(device).train()


def make_batch(args, batch: int, device: str):
    g = torch.Generator().manual_seed(1)
    x = torch.randn(batch, 16, args.latent, args.latent, generator=g)
    txt = torch.randn(batch, args.text_tokens, args.text_dim, generator=g)
    pooled = torch.randn(batch, args.pooled_dim, generator=g)
    t = torch.rand(batch, generator=g)
    target = torch.randn_like(x)
    return [z.to(device) for z in (x, txt, pooled, t, target)]


def step_fns(theirs, ours, batch):
    x, txt, pooled, t, target = batch
    size = x.shape[-1]
    tokens = {"image": sd3_image_tokens(x, 2), "text": text_tokens(txt)}
    times = {"image": t, "text": t}
    # the same optimizer for both; fused AdamW keeps its share of the step small on both
    opt_theirs = torch.optim.AdamW(theirs.parameters(), lr=1e-4, fused=True)
    opt_ours = torch.optim.AdamW(ours.parameters(), lr=1e-4, fused=True)

    def run_theirs():
        return theirs(hidden_states=x, encoder_hidden_states=txt, pooled_projections=pooled, timestep=1000 * t).sample

    def run_ours():
        return sd3_unpatchify(ours(tokens, times, cond=pooled)["image"], 2, size, size)

    def train(run, opt):
        def step():
            loss = (run().float() - target).pow(2).mean()
            loss.backward()
            opt.step()
            opt.zero_grad(set_to_none=True)
        return step

    return run_theirs, run_ours, train(run_theirs, opt_theirs), train(run_ours, opt_ours)


def time_pairs(step_theirs, step_ours, device, warmup, pairs, autocast):
    """Wall and process CPU seconds per step of each model; the order flips every pair."""
    times = {"diffusers": {"wall": [], "cpu": []}, "flowcore": {"wall": [], "cpu": []}}
    for i in range(warmup + pairs):
        order = [("diffusers", step_theirs), ("flowcore", step_ours)]
        for name, step in order if i % 2 == 0 else order[::-1]:
            with autocast():
                sync(device)
                w0, c0 = time.perf_counter(), time.process_time()
                step()
                sync(device)
                wall, cpu = time.perf_counter() - w0, time.process_time() - c0
            if i >= warmup:
                times[name]["wall"].append(wall)
                times[name]["cpu"].append(cpu)
    return times


def ratio_stats(theirs: list[float], ours: list[float]) -> dict:
    """Per-pair ratios theirs/ours: median, quartiles, range (the pairs share their moment's load)."""
    ratios = [a / b for a, b in zip(theirs, ours)]
    quartiles = statistics.quantiles(ratios, n=4) if len(ratios) > 1 else [ratios[0]] * 3
    return {"median": statistics.median(ratios), "q1": quartiles[0], "q3": quartiles[2],
            "min": min(ratios), "max": max(ratios), "pairs": ratios}


def profile_cuda(step, autocast) -> dict:
    """One GPU step under torch.profiler: wall time, GPU-busy time (sum of kernel times), kernel
    launches and aten ops. GPU-busy far below wall means the step is bound by launching work."""
    from torch.profiler import ProfilerActivity, profile

    with autocast(), profile(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA]) as prof:
        torch.cuda.synchronize()
        t0 = time.perf_counter()
        step()
        torch.cuda.synchronize()
        wall = time.perf_counter() - t0
    events = prof.key_averages()
    return {"wall_s": wall, "gpu_busy_s": sum(e.self_device_time_total for e in events) / 1e6,
            "kernel_launches": sum(e.count for e in events if "LaunchKernel" in e.key or "cuLaunch" in e.key),
            "aten_ops": sum(e.count for e in events if e.key.startswith("aten::")),
            "syncs": sum(e.count for e in events if "Synchronize" in e.key or "_local_scalar_dense" in e.key)}


def profile_split(step, autocast, tries: int = 2) -> dict:
    """Fractions of one step's self CPU time by kind of op (torch.profiler); of ``tries``
    profiled steps the fastest is kept (on a shared machine, the least disturbed one)."""
    from torch.profiler import profile

    splits = []
    for _ in range(tries):
        with autocast(), profile() as prof:
            step()
        splits.append(_split(prof))
    return {**min(splits, key=lambda split: split["total_s"]), "profiled_steps": tries}


def _split(prof) -> dict:
    kinds = {"matmul": ("aten::mm", "aten::addmm", "aten::bmm", "aten::baddbmm", "aten::addmv",
                        "aten::mkldnn_convolution", "aten::convolution_backward"),
             "attention": ("aten::_scaled_dot_product",), "optimizer": ("aten::_fused_adamw",)}
    split = dict.fromkeys([*kinds, "other"], 0.0)
    for event in prof.key_averages():
        kind = next((k for k, names in kinds.items() if event.key.startswith(names)), "other")
        split[kind] += event.self_cpu_time_total
    total = sum(split.values())
    return {"total_s": total / 1e6, **{k: v / total for k, v in split.items()}}


def one_run(args, device: str, spec: RunSpec) -> dict:
    if device == "cpu" and spec.threads:
        torch.set_num_threads(spec.threads)
    dtype = {"fp32": torch.float32, "bf16": torch.bfloat16}[spec.dtype]

    def autocast():
        return torch.autocast(device, dtype=torch.bfloat16, enabled=spec.dtype == "bf16")

    theirs, ours = build(args, device)
    batch = make_batch(args, spec.batch, device)
    run_theirs, run_ours, _, _ = step_fns(theirs, ours, batch)
    with torch.no_grad():
        diff = (run_theirs() - run_ours()).abs().max().item()
    stats = model_stats(ours, {"image": (args.latent // 2) ** 2, "text": args.text_tokens})
    if spec.compile:  # each library's own modules, compiled the same way (warm-up pairs absorb the compile)
        theirs, ours = torch.compile(theirs), torch.compile(ours)
    _, _, step_theirs, step_ours = step_fns(theirs, ours, batch)
    step_flops = stats.train_flops_per_token * stats.tokens * spec.batch
    peak_size, peak_reps = (4096, 10) if device == "cuda" else (1024, 3)
    load_start = os.getloadavg()
    peak_before = matmul_peak(device, dtype, peak_size, peak_reps)
    times = time_pairs(step_theirs, step_ours, device, args.warmup, spec.pairs, autocast)
    peak_after = matmul_peak(device, dtype, peak_size, peak_reps)
    load_end = os.getloadavg()
    peak = max(peak_before, peak_after)
    med = {name: statistics.median(t["wall"]) for name, t in times.items()}
    run = {
        "device": device, "dtype": spec.dtype, "threads": torch.get_num_threads() if device == "cpu" else None,
        "compiled": spec.compile, "model": f"{args.layers} layers, {args.heads} heads, {stats.tokens} tokens",
        "batch": spec.batch, "pairs": spec.pairs, "warmup_pairs": args.warmup,
        "max_abs_output_diff_fp32": diff, "parameters": stats.parameters, "train_flops_per_step": step_flops,
        "matmul_peak_flops": peak, "matmul_peak_flops_before_after": [peak_before, peak_after],
        "load_average_start": load_start, "load_average_end": load_end,
        "diffusers_step_s": med["diffusers"], "flowcore_step_s": med["flowcore"],
        "speedup": ratio_stats(times["diffusers"]["wall"], times["flowcore"]["wall"]),
        "cpu_time_speedup": ratio_stats(times["diffusers"]["cpu"], times["flowcore"]["cpu"]),
        "flowcore_flops": step_flops / med["flowcore"], "diffusers_flops": step_flops / med["diffusers"],
        "flowcore_fraction_of_peak": step_flops / med["flowcore"] / peak,
        "diffusers_fraction_of_peak": step_flops / med["diffusers"] / peak,
        "steps": times,
    }
    if args.profile and device == "cuda":
        run["profile_cuda"] = {"diffusers": profile_cuda(step_theirs, autocast),
                               "flowcore": profile_cuda(step_ours, autocast)}
        for name, p in run["profile_cuda"].items():
            print(f"  {name}: profiled step {p['wall_s'] * 1e3:.1f} ms, GPU busy {p['gpu_busy_s'] * 1e3:.1f} ms, "
                  f"{p['kernel_launches']} kernel launches, {p['aten_ops']} aten ops, {p['syncs']} syncs", flush=True)
    elif args.profile:
        run["profile"] = {"diffusers": profile_split(step_theirs, autocast),
                          "flowcore": profile_split(step_ours, autocast)}
    sp = run["speedup"]
    print(f"{device} {spec.dtype}{' compiled' if spec.compile else ''} threads {run['threads']} batch {spec.batch}: "
          f"diffusers {med['diffusers']:.3f} s  "
          f"flowcore {med['flowcore']:.3f} s  speedup median {sp['median']:.2f}x "
          f"(quartiles {sp['q1']:.2f}-{sp['q3']:.2f}, "
          f"range {sp['min']:.2f}-{sp['max']:.2f}; CPU time {run['cpu_time_speedup']['median']:.2f}x)  "
          f"flowcore {run['flowcore_flops'] / 1e9:.1f} GFLOP/s ({100 * run['flowcore_fraction_of_peak']:.0f}% of "
          f"matmul peak {peak / 1e9:.1f}); output diff {diff:.1e}; load {load_start[0]:.1f} -> {load_end[0]:.1f}",
          flush=True)
    return run


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", choices=["cpu", "cuda", "all"], default="all")
    ap.add_argument("--runs", nargs="+", type=RunSpec.parse,
                    help="dtype/threads/batch/pairs per run (default cpu: %s; cuda: %s)"
                    % (" ".join(DEFAULT_RUNS["cpu"]), " ".join(DEFAULT_RUNS["cuda"])))
    ap.add_argument("--layers", type=int, default=6)
    ap.add_argument("--heads", type=int, default=6)
    ap.add_argument("--latent", type=int, default=32, help="latent H = W (tokens = (H/2)^2)")
    ap.add_argument("--text-tokens", type=int, default=77)
    ap.add_argument("--text-dim", type=int, default=4096)
    ap.add_argument("--pooled-dim", type=int, default=2048)
    ap.add_argument("--warmup", type=int, default=1, help="untimed pairs before each run's timed ones")
    ap.add_argument("--profile", action="store_true", help="also profile one step of each model per run")
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "backbone.json")
    ap.add_argument("--results-md", type=Path, default=ROOT / "benchmarks" / "RESULTS.md")
    ap.add_argument("--report-only", action="store_true", help="rewrite the RESULTS.md section from --out")
    ap.add_argument("--note", action="append", default=[], help="a line for the section's notes (repeatable)")
    ap.add_argument("--merge", type=Path, nargs="+", help="with --report-only: take these records' runs (e.g. a GPU "
                    "machine's) in place of --out's runs on the same devices")
    args = ap.parse_args()
    if args.report_only:
        record = json.loads(args.out.read_text())
        kept = [n for n in record.get("notes", []) if n not in _auto_notes(record)]
        if args.merge:
            _merge(record, [json.loads(path.read_text()) for path in args.merge])
        record["notes"] = _auto_notes(record) + kept + args.note
        args.out.write_text(json.dumps(record, indent=2) + "\n")
        write_section(record, args.results_md)
        return
    import diffusers

    devices = ["cpu", "cuda"] if args.device == "all" else [args.device]
    devices = [d for d in devices if d == "cpu" or torch.cuda.is_available()]
    record = {
        "command": " ".join([Path(sys.executable).name, *sys.argv]),
        "machine": {
            "cpu": _cpu_name(), "cpu_cores": os.cpu_count(), "amx": _has_amx(),
            "gpu": torch.cuda.get_device_name() if torch.cuda.is_available() else None,
            "load_average_at_start": os.getloadavg(), "python": platform.python_version(),
            "torch": torch.__version__, "diffusers": diffusers.__version__,
        },
        "config": {k: v for k, v in vars(args).items()
                   if k in ("layers", "heads", "latent", "text_tokens", "text_dim", "pooled_dim", "warmup")},
        "runs": [],
    }
    for device in devices:
        for spec in args.runs or [RunSpec.parse(r) for r in DEFAULT_RUNS[device]]:
            record["runs"].append(one_run(args, device, spec))
    record["machine"]["load_average_at_end"] = os.getloadavg()
    record["notes"] = _auto_notes(record) + args.note
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(record, indent=2) + "\n")
    write_section(record, args.results_md)
    print(f"wrote {args.out} and the backbone section of {args.results_md}")


def _merge(record: dict, others: list[dict]) -> None:
    """Fold other records (e.g. a GPU machine's) into ``record``: their runs replace its runs on
    the same devices."""
    devices = {r["device"] for other in others for r in other["runs"]}
    record["runs"] = [r for r in record["runs"] if r["device"] not in devices]
    record["other_machines"] = [m for m in record.get("other_machines", []) if m["device"] not in devices]
    for other in others:
        record["runs"] += other["runs"]
        for device in sorted({r["device"] for r in other["runs"]}):
            record["other_machines"].append({"device": device, "machine": other["machine"],
                                             "command": other["command"]})
        record["machine"]["gpu"] = other["machine"].get("gpu") or record["machine"]["gpu"]


def write_section(record: dict, path: Path) -> None:
    """Replace (or append) the ``## backbone`` section of RESULTS.md, leaving the others alone."""
    m, c = record["machine"], record["config"]
    lines = [
        "## backbone",
        "",
        f"One training step (forward, backward, fused AdamW, `zero_grad(set_to_none=True)`; the same optimizer "
        f"for both) of flowcore's FlowTransformer vs diffusers {m['diffusers']} `SD3Transformer2DModel` at the same "
        f"config: {c['layers']} layers, {c['heads']} heads x 64, {(c['latent'] // 2) ** 2} image tokens + "
        f"{c['text_tokens']} text tokens, QK RMSNorm, text dim {c['text_dim']}, pooled dim {c['pooled_dim']}. "
        "flowcore's model is converted from the diffusers one (same weights, rebuilt for every run); their outputs "
        "agree (column `out diff`, fp32). Each run times `pairs` pairs of steps after "
        f"{c['warmup']} warm-up pair(s), the order flipping every pair; `speedup` is the median of the per-pair "
        "ratios diffusers/flowcore of wall time [quartiles] (range), `CPU-time speedup` the same for process CPU "
        "time. FLOP/s = matmul FLOPs of a step (`flowcore.nn.model_stats`, 3 x forward) / median step time; "
        "peak = the better of two large-matmul timings (before and after the steps) in the run's dtype and threads.",
        "",
        f"Machine: {m['cpu']} ({m['cpu_cores']} cores, AMX: {'yes' if m['amx'] else 'no'}), GPU: {m['gpu'] or 'none'}; "
        f"torch {m['torch']}.",
        "",
        "| device | model | dtype | threads | batch | pairs | diffusers s/step | flowcore s/step | speedup "
        "| CPU-time speedup "
        "| flowcore GFLOP/s | diffusers GFLOP/s | matmul peak GFLOP/s | flowcore / diffusers % of peak "
        "| load start/end "
        "| out diff |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in record["runs"]:
        sp, cp = r["speedup"], r["cpu_time_speedup"]
        lines.append(
            f"| {r['device']} | {r.get('model', 'as above')} | "
            f"{r['dtype']}{' compiled' if r.get('compiled') else ''} | "
            f"{r['threads'] or '-'} | {r['batch']} | {r['pairs']} | "
            f"{r['diffusers_step_s']:.3f} | {r['flowcore_step_s']:.3f} | "
            f"**{sp['median']:.2f}x** [{sp['q1']:.2f}-{sp['q3']:.2f}] ({sp['min']:.2f}-{sp['max']:.2f}) | "
            f"{cp['median']:.2f}x [{cp['q1']:.2f}-{cp['q3']:.2f}] | "
            f"{r['flowcore_flops'] / 1e9:.1f} | {r['diffusers_flops'] / 1e9:.1f} | "
            f"{r['matmul_peak_flops'] / 1e9:.1f} | "
            f"{100 * r['flowcore_fraction_of_peak']:.0f}% / {100 * r['diffusers_fraction_of_peak']:.0f}% | "
            f"{r['load_average_start'][0]:.1f} / {r['load_average_end'][0]:.1f} | {r['max_abs_output_diff_fp32']:.1e} |"
        )
    profiled = [r for r in record["runs"] if "profile" in r]
    if profiled:
        tries = profiled[0]["profile"]["flowcore"].get("profiled_steps", 1)
        which = "one profiled step" if tries == 1 else f"the faster of {tries} profiled steps"
        lines += ["", f"Where a step's time goes (torch.profiler: self CPU time by kind of op, {which} per model; "
                  "the profiler itself adds some time):", ""]
        lines += _table(["device", "dtype", "threads", "model", "step s (profiled)", "matmul", "attention",
                         "optimizer", "other"],
                        [[r["device"], r["dtype"], r["threads"] or "-", name, f"{p['total_s']:.2f}",
                          *(f"{100 * p[k]:.0f}%" for k in ("matmul", "attention", "optimizer", "other"))]
                         for r in profiled for name, p in r["profile"].items()])
    gpu_profiled = [r for r in record["runs"] if "profile_cuda" in r]
    if gpu_profiled:
        lines += ["", "GPU steps under torch.profiler (one step each; the profiler adds time): wall, GPU-busy time "
                  "(the profiler's device times summed: an upper bound, some kernels count twice), "
                  "kernel launches, aten "
                  "ops, host syncs. Busy far below wall: the step is bound by launching work from Python, not by the "
                  "GPU.", ""]
        lines += _table(["model", "dtype", "batch", "library", "wall ms", "GPU busy ms", "busy %", "launches",
                         "aten ops", "syncs"],
                        [[r["model"], r["dtype"] + (" compiled" if r["compiled"] else ""), r["batch"], name,
                          f"{p['wall_s'] * 1e3:.1f}", f"{p['gpu_busy_s'] * 1e3:.1f}",
                          f"{100 * p['gpu_busy_s'] / p['wall_s']:.0f}%", p["kernel_launches"], p["aten_ops"],
                          p["syncs"]]
                         for r in gpu_profiled for name, p in r["profile_cuda"].items()])
    lines += ["", f"Command: `{record['command']}`"]
    for other in record.get("other_machines", []):
        om = other["machine"]
        lines += [f"{other['device']} rows: `{other['command']}` on {om['gpu'] or om['cpu']}, torch {om['torch']}, "
                  f"diffusers {om['diffusers']}."]
    lines += [""]
    notes = record.get("notes", [])
    lines += [f"- {n}" for n in notes] + ([""] if notes else [])
    replace_section(path, "backbone", "\n".join(lines))


def _table(columns: list[str], rows: list[list]) -> list[str]:
    """A markdown table's lines."""
    return ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns),
            *("| " + " | ".join(str(v) for v in row) + " |" for row in rows)]


def _auto_notes(record: dict) -> list[str]:
    m, notes = record["machine"], []
    peaks = {(r["dtype"], r["threads"]): r["matmul_peak_flops"] for r in record["runs"] if r["device"] == "cpu"}
    same = [t for (dtype, t) in peaks if dtype == "bf16" and ("fp32", t) in peaks]
    if same and not m["amx"]:
        t = same[0]
        notes.append(
            f"This CPU has no AMX: its bf16 matmul peak ({t} threads) is "
            f"{peaks[('fp32', t)] / peaks[('bf16', t)]:.1f}x "
            "below fp32, so bf16 autocast is slower than fp32 here for both libraries, and the bf16 rows say "
            "nothing about bf16 on hardware built for it (autocast is the caller's choice; FlowTransformer never "
            "enables it)."
        )
    loads = [r["load_average_start"][0] for r in record["runs"]] + [r["load_average_end"][0] for r in record["runs"]]
    if loads and max(loads) > (m.get("cpu_cores") or 1):
        notes.append(
            "The machine was shared with other jobs (load average above its core count): absolute times are "
            "inflated and noisy; read the per-pair ratios, whose two steps ran at nearly the same moment."
        )
    if not m["gpu"]:
        notes.append("No GPU was available to this run, so there are no GPU rows; the script runs there unchanged "
                     "(`.venv/bin/python benchmarks/backbone.py --device cuda`) and then uses the Triton kernels.")
    return notes


def _cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor()


def _has_amx() -> bool:
    try:
        return "amx_bf16" in Path("/proc/cpuinfo").read_text()
    except OSError:
        return False


if __name__ == "__main__":
    main()
