"""One training step (forward, backward, AdamW) of flowcore's FlowTransformer vs diffusers'
SD3Transformer2DModel at an equal config, in the same run, fp32 and bf16 autocast.

    .venv/bin/python benchmarks/backbone.py                 # this machine's CPU (and CUDA if present)
    .venv/bin/python benchmarks/backbone.py --iters 5 --device cuda

The flowcore model is converted from the diffusers one (``flowcore.nn.convert``), so both
hold the same weights; the run checks their outputs agree before timing. The two models'
steps alternate (A B A B ...) so that load from other processes hits both alike; the median
step time of each is reported, their ratio, and achieved FLOP/s (flowcore's matmul FLOP count,
``model_stats``, which is the same for both) against a large-matmul peak measured in the run.
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
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from flowcore.nn import model_stats  # noqa: E402
from flowcore.nn.convert import from_diffusers, sd3_image_tokens, sd3_unpatchify, text_tokens  # noqa: E402
from results_md import replace_section  # noqa: E402  (benchmarks/ is on sys.path when run)


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


def make_batch(args, device):
    g = torch.Generator().manual_seed(1)
    b = args.batch
    x = torch.randn(b, 16, args.latent, args.latent, generator=g)
    txt = torch.randn(b, args.text_tokens, args.text_dim, generator=g)
    pooled = torch.randn(b, args.pooled_dim, generator=g)
    t = torch.rand(b, generator=g)
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
        out = theirs(hidden_states=x, encoder_hidden_states=txt, pooled_projections=pooled, timestep=1000 * t).sample
        return out

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


def time_pair(step_a, step_b, device, warmup, iters, autocast):
    times_a, times_b = [], []
    for i in range(warmup + iters):
        for step, out in ((step_a, times_a), (step_b, times_b)):
            with autocast():
                sync(device)
                t0 = time.perf_counter()
                step()
                sync(device)
            if i >= warmup:
                out.append(time.perf_counter() - t0)
    return times_a, times_b


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", choices=["cpu", "cuda", "all"], default="all")
    ap.add_argument("--layers", type=int, default=6)
    ap.add_argument("--heads", type=int, default=6)
    ap.add_argument("--latent", type=int, default=32, help="latent H = W (tokens = (H/2)^2)")
    ap.add_argument("--text-tokens", type=int, default=77)
    ap.add_argument("--text-dim", type=int, default=4096)
    ap.add_argument("--pooled-dim", type=int, default=2048)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--warmup", type=int, default=1)
    ap.add_argument("--iters", type=int, default=3, help="timed steps per model and dtype (median)")
    ap.add_argument("--dtypes", default="fp32,bf16")
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "backbone.json")
    ap.add_argument("--results-md", type=Path, default=ROOT / "benchmarks" / "RESULTS.md")
    ap.add_argument("--report-only", action="store_true", help="rewrite the RESULTS.md section from --out")
    ap.add_argument("--note", action="append", default=[], help="a line for the section's notes (repeatable)")
    args = ap.parse_args()
    if args.report_only:
        record = json.loads(args.out.read_text())
        record["notes"] = _auto_notes(record) + args.note
        args.out.write_text(json.dumps(record, indent=2) + "\n")
        write_section(record, args.results_md)
        return
    import diffusers

    devices = ["cpu", "cuda"] if args.device == "all" else [args.device]
    devices = [d for d in devices if d == "cpu" or torch.cuda.is_available()]
    record = {
        "command": " ".join([Path(sys.executable).name, *sys.argv]),
        "machine": {
            "cpu": _cpu_name(), "cpu_threads": torch.get_num_threads(), "amx": _has_amx(),
            "gpu": torch.cuda.get_device_name() if torch.cuda.is_available() else None,
            "load_average_at_start": os.getloadavg(), "python": platform.python_version(),
            "torch": torch.__version__, "diffusers": diffusers.__version__,
        },
        "config": {k: v for k, v in vars(args).items() if k not in ("out", "device", "results_md", "note", "report_only")},
        "runs": [],
    }
    for device in devices:
        theirs, ours = build(args, device)
        batch = make_batch(args, device)
        run_theirs, run_ours, step_theirs, step_ours = step_fns(theirs, ours, batch)
        with torch.no_grad():
            diff = (run_theirs() - run_ours()).abs().max().item()
        stats = model_stats(ours, {"image": (args.latent // 2) ** 2, "text": args.text_tokens})
        step_flops = stats.train_flops_per_token * stats.tokens * args.batch
        for name in args.dtypes.split(","):
            dtype = {"fp32": torch.float32, "bf16": torch.bfloat16}[name]

            def autocast():
                return torch.autocast(device, dtype=torch.bfloat16, enabled=name == "bf16")

            peak = matmul_peak(device, dtype, 4096 if device == "cuda" else 1024, 10 if device == "cuda" else 3)
            t_theirs, t_ours = time_pair(step_theirs, step_ours, device, args.warmup, args.iters, autocast)
            med_theirs, med_ours = statistics.median(t_theirs), statistics.median(t_ours)
            run = {
                "device": device, "dtype": name, "max_abs_output_diff_fp32": diff,
                "parameters": stats.parameters, "train_flops_per_step": step_flops,
                "matmul_peak_flops": peak,
                "diffusers_step_s": med_theirs, "flowcore_step_s": med_ours,
                "diffusers_steps_s_all": t_theirs, "flowcore_steps_s_all": t_ours,
                "speedup": med_theirs / med_ours,
                "flowcore_flops": step_flops / med_ours, "diffusers_flops": step_flops / med_theirs,
                "flowcore_fraction_of_peak": step_flops / med_ours / peak,
                "diffusers_fraction_of_peak": step_flops / med_theirs / peak,
            }
            record["runs"].append(run)
            print(f"{device} {name}: diffusers {med_theirs:.3f} s  flowcore {med_ours:.3f} s  speedup "
                  f"{run['speedup']:.2f}x  flowcore {run['flowcore_flops'] / 1e9:.1f} GFLOP/s "
                  f"({100 * run['flowcore_fraction_of_peak']:.0f}% of matmul peak {peak / 1e9:.1f}); "
                  f"output diff {diff:.1e}", flush=True)
    record["machine"]["load_average_at_end"] = os.getloadavg()
    record["notes"] = _auto_notes(record) + args.note
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(record, indent=2) + "\n")
    write_section(record, args.results_md)
    print(f"wrote {args.out} and the backbone section of {args.results_md}")


def write_section(record: dict, path: Path) -> None:
    """Replace (or append) the ``## backbone`` section of RESULTS.md, leaving the others alone."""
    m, c = record["machine"], record["config"]
    lines = [
        "## backbone",
        "",
        f"One training step (forward, backward, fused AdamW) of flowcore's FlowTransformer vs diffusers "
        f"{m['diffusers']} `SD3Transformer2DModel` at the same config: {c['layers']} layers, {c['heads']} heads x 64, "
        f"{(c['latent'] // 2) ** 2} image tokens + {c['text_tokens']} text tokens, batch {c['batch']}, QK RMSNorm, "
        f"text dim {c['text_dim']}, pooled dim {c['pooled_dim']}. flowcore's model is converted from the diffusers one "
        "(same weights); their outputs agree (column `out diff`, fp32). Median of the timed steps, the two "
        "models alternating step by step. FLOP/s = matmul FLOPs of a step (`flowcore.nn.model_stats`, 3 x forward) "
        "/ step time; peak = best large-matmul FLOP/s of the same dtype in the same run.",
        "",
        f"Machine: {m['cpu']} ({m['cpu_threads']} threads, AMX: {'yes' if m['amx'] else 'no'}), GPU: {m['gpu'] or 'none'}; "
        f"torch {m['torch']}. Load average at start / end: {_load(m['load_average_at_start'])} / "
        f"{_load(m.get('load_average_at_end'))}.",
        "",
        "| device | dtype | diffusers s/step | flowcore s/step | speedup | flowcore GFLOP/s | diffusers GFLOP/s "
        "| matmul peak GFLOP/s | flowcore % of peak | out diff |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in record["runs"]:
        lines.append(
            f"| {r['device']} | {r['dtype']} | {r['diffusers_step_s']:.3f} | {r['flowcore_step_s']:.3f} | "
            f"{r['speedup']:.2f}x | {r['flowcore_flops'] / 1e9:.1f} | {r['diffusers_flops'] / 1e9:.1f} | "
            f"{r['matmul_peak_flops'] / 1e9:.1f} | {100 * r['flowcore_fraction_of_peak']:.0f}% | "
            f"{r['max_abs_output_diff_fp32']:.1e} |"
        )
    lines += ["", f"Command: `{record['command']}`", ""]
    notes = record.get("notes", [])
    lines += [f"- {n}" for n in notes] + ([""] if notes else [])
    replace_section(path, "backbone", "\n".join(lines))


def _auto_notes(record: dict) -> list[str]:
    m, notes = record["machine"], []
    peaks = {r["dtype"]: r["matmul_peak_flops"] for r in record["runs"] if r["device"] == "cpu"}
    if "fp32" in peaks and "bf16" in peaks and not m["amx"]:
        notes.append(
            f"This CPU has no AMX: its bf16 matmul peak is {peaks['fp32'] / peaks['bf16']:.1f}x below fp32, so bf16 "
            "autocast is slower than fp32 here for both libraries (autocast is the caller's choice; FlowTransformer never enables it)."
        )
    if max(m["load_average_at_start"][0], (m.get("load_average_at_end") or [0])[0]) > (os.cpu_count() or 1):
        notes.append(
            "The machine was shared with other jobs (load average above its core count): absolute times are "
            "inflated and noisy, few steps were timed; only the side-by-side ratio means much."
        )
    return notes


def _load(values) -> str:
    return "n/a" if not values else "/".join(f"{v:.1f}" for v in values)


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
