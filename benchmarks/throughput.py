"""Training throughput at scale: flowcore's FlowTransformer vs diffusers' SD3Transformer2DModel at an
SD3-medium-like size (hidden 1536 = 24 heads x 64, 24 double-stream blocks, 1024 image + 154 text
tokens, bf16 autocast, fused AdamW), on one GPU.

    python3 benchmarks/throughput.py                  # a CUDA GPU: the comparison, then the memory table
    python3 benchmarks/throughput.py --smoke          # tiny sizes on the CPU in seconds (checks the script)

1. Step time. Both models are built on the GPU, flowcore's converted from the diffusers one
   (``flowcore.nn.convert``: the same weights; their fp32 outputs are compared first). Each run
   names a flowcore variant and a diffusers variant (``--runs flowcore:diffusers``):
   ``eager`` (flowcore with its Triton kernels), ``compile`` (torch.compile, default mode, each
   block compiled: ``flowcore.nn.compile.compile_network``, what ``train.compile: auto`` does on
   CUDA), ``compile-ro`` (mode reduce-overhead: CUDA graphs), ``compile-ma`` (max-autotune without
   CUDA graphs), ``compile-triton`` (flowcore's Triton kernels inside the compiled graphs). Warm-up
   pairs absorb compilation; then ``--pairs`` pairs of steps, the order flipping every pair, as
   benchmarks/backbone.py does. Reported: median step time, tokens/s (image + text tokens of the
   batch), MFU = matmul + attention FLOPs of a step (``flowcore.nn.model_stats``, 3 x forward) /
   step time / the bf16 matmul peak measured in the same run (before and after, the better),
   peak memory, and the per-pair speedup diffusers / flowcore.
2. Memory (``--memory``; ``--smoke`` runs it too): each model alone, capped at ``--memory-cap-gb``
   (80 GB: an H100), with and without activation checkpointing of every block: the largest batch
   at 1024 + 154 tokens and the largest image sequence at batch 1 for which a training step fits.

``--batch auto`` takes the largest of 32, 16, 8, 4, 2, 1 at which one eager step of each model
fits with both models resident. Writes ``--out`` (benchmarks/results/throughput.json) after every
run, and the ``## throughput`` section of RESULTS.md at the end.
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
from typing import Callable

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from backbone import _cpu_name, matmul_peak, ratio_stats, sync  # noqa: E402
from results_md import replace_section  # noqa: E402

from flowcore import kernels  # noqa: E402
from flowcore.nn import model_stats  # noqa: E402
from flowcore.nn.compile import compile_network  # noqa: E402
from flowcore.nn.convert import from_diffusers, sd3_image_tokens, sd3_unpatchify, text_tokens  # noqa: E402

VARIANTS = {"eager": None, "compile": "default", "compile-ro": "reduce-overhead",
            "compile-ma": "max-autotune-no-cudagraphs", "compile-triton": "default"}
DEFAULT_RUNS = ["eager:eager", "compile:compile", "compile-ro:compile"]
SMOKE = {"device": "cpu", "heads": 1, "layers": 2, "latent": 8, "text_tokens": 8, "text_dim": 32, "pooled_dim": 16,
         "batch": "2", "pairs": 2, "warmup": 1, "backend": "aot_eager", "runs": ["eager:eager", "compile:compile"],
         "max_latent": 16, "max_batch": 4}


def largest(fits: Callable[[int], bool], start: int, cap: int) -> int:
    """The largest n in [start, cap] with fits(n), assuming fits is monotone (0 if fits(start) fails):
    doubling from ``start``, then bisecting between the last n that fitted and the first that did not."""
    if not fits(start):
        return 0
    good, bad = start, None
    while bad is None:
        n = min(2 * good, cap)
        if n == good:
            return good
        if fits(n):
            good = n
        else:
            bad = n
    while bad - good > 1:
        mid = (good + bad) // 2
        good, bad = (mid, bad) if fits(mid) else (good, mid)
    return good


def build(args, device: str, latent: int):
    """(diffusers model, flowcore model), the same weights, built on ``device``; ``latent`` is the
    largest latent side either will see (SD3's position table is cropped from it)."""
    import diffusers

    torch.manual_seed(0)
    with torch.device(device):
        theirs = diffusers.SD3Transformer2DModel(
            sample_size=latent, patch_size=2, in_channels=16, num_layers=args.layers, attention_head_dim=64,
            num_attention_heads=args.heads, joint_attention_dim=args.text_dim, caption_projection_dim=64 * args.heads,
            pooled_projection_dim=args.pooled_dim, out_channels=16, pos_embed_max_size=latent // 2,
            qk_norm="rms_norm")
        with torch.no_grad():  # zero-initialised layers would make the output check say nothing
            for p in theirs.parameters():
                if not p.any():
                    p.normal_(0, 0.02)
        ours = from_diffusers(theirs)
    return theirs.train(), ours.to(device).train()


def make_batch(args, batch: int, latent: int, device: str):
    g = torch.Generator(device).manual_seed(1)
    x = torch.randn(batch, 16, latent, latent, generator=g, device=device)
    txt = torch.randn(batch, args.text_tokens, args.text_dim, generator=g, device=device)
    pooled = torch.randn(batch, args.pooled_dim, generator=g, device=device)
    t = torch.rand(batch, generator=g, device=device)
    return x, txt, pooled, t, torch.randn_like(x)


def forwards(theirs, ours, batch):
    """The two models' forward on one batch, returning the velocity as an image [B, 16, H, W]."""
    x, txt, pooled, t, _ = batch
    size = x.shape[-1]
    tokens = {"image": sd3_image_tokens(x, 2), "text": text_tokens(txt)}
    times = {"image": t, "text": t}

    def run_theirs():
        return theirs(hidden_states=x, encoder_hidden_states=txt, pooled_projections=pooled, timestep=1000 * t).sample

    def run_ours():
        return sd3_unpatchify(ours(tokens, times, cond=pooled)["image"], 2, size, size)

    return run_theirs, run_ours


def train_step(run, params, target, device: str, fused: bool):
    """forward + MSE + backward + AdamW (fused on CUDA) + zero_grad, under bf16 autocast."""
    opt = torch.optim.AdamW(params, lr=1e-4, **({"fused": True} if fused else {"foreach": True}))

    def step():
        with torch.autocast(device, dtype=torch.bfloat16):
            loss = (run().float() - target).pow(2).mean()
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
    return step


def compiled(model, variant: str, backend: str):
    mode = VARIANTS[variant]
    if mode is not None:
        compile_network(model, mode, backend, "blocks")
    return model


def is_oom(exc: BaseException) -> bool:
    return isinstance(exc, torch.OutOfMemoryError) or "out of memory" in str(exc)


def fits(step: Callable[[], None], models, device: str) -> bool:
    """Run ``step``: True, or False where it runs out of memory (anything else is raised); the
    gradients are dropped and the allocator's cache emptied either way."""
    try:
        step()
        sync(device)
        return True
    except Exception as exc:  # noqa: BLE001  (an OOM is the answer; anything else is not)
        if not is_oom(exc):
            raise
        return False
    finally:
        for model in models:
            model.zero_grad(set_to_none=True)
        if device == "cuda":
            torch.cuda.empty_cache()


def fits_both(args, device, theirs, ours, batch: int) -> bool:
    """One eager step of each model at ``batch`` fits (both resident)."""
    def steps():
        data = make_batch(args, batch, args.latent, device)
        for run, model in zip(forwards(theirs, ours, data), (theirs, ours)):
            train_step(run, list(model.parameters()), data[-1], device, device == "cuda")()
    return fits(steps, (theirs, ours), device)


def one_run(args, device, theirs, ours, batch: int, spec: str, stats, peak: float) -> dict:
    ours_variant, theirs_variant = spec.split(":")
    kernels.set_backend("triton" if ours_variant == "compile-triton" and device == "cuda" else "auto")
    torch._dynamo.reset()
    theirs_c = compiled(theirs, theirs_variant, args.backend)
    ours_c = compiled(ours, ours_variant, args.backend)
    data = make_batch(args, batch, args.latent, device)
    run_theirs, run_ours = forwards(theirs_c, ours_c, data)
    fused = device == "cuda"
    steps = {"diffusers": train_step(run_theirs, list(theirs.parameters()), data[-1], device, fused),
             "flowcore": train_step(run_ours, list(ours.parameters()), data[-1], device, fused)}
    times: dict[str, list[float]] = {"diffusers": [], "flowcore": []}
    memory: dict[str, int] = {}
    started = time.perf_counter()
    for i in range(args.warmup + args.pairs):
        order = ["diffusers", "flowcore"] if i % 2 == 0 else ["flowcore", "diffusers"]
        for name in order:
            if device == "cuda":
                torch.cuda.reset_peak_memory_stats()
                torch.compiler.cudagraph_mark_step_begin()  # a new step for reduce-overhead's CUDA graphs
            sync(device)
            t0 = time.perf_counter()
            steps[name]()
            sync(device)
            if i >= args.warmup:
                times[name].append(time.perf_counter() - t0)
                if device == "cuda":
                    memory[name] = max(memory.get(name, 0), torch.cuda.max_memory_allocated())
        if i == args.warmup - 1:
            print(f"  {spec}: warm-up (compilation) done after {time.perf_counter() - started:.0f} s", flush=True)
    for model in (theirs, ours):  # uncompiled for the next run
        for m in model.modules():
            m._compiled_call_impl = None
    kernels.set_backend("auto")
    tokens = batch * stats.tokens
    step_flops = stats.train_flops_per_token * tokens
    med = {name: statistics.median(t) for name, t in times.items()}
    run = {"run": spec, "flowcore_variant": ours_variant, "diffusers_variant": theirs_variant, "batch": batch,
           "pairs": args.pairs, "warmup_pairs": args.warmup, "step_s": med,
           "tokens_per_s": {n: tokens / s for n, s in med.items()},
           "mfu": {n: step_flops / s / peak for n, s in med.items()},
           "peak_memory_gb": {n: b / 1e9 for n, b in memory.items()},
           "speedup": ratio_stats(times["diffusers"], times["flowcore"]), "steps": times}
    print(f"  {spec} batch {batch}: diffusers {med['diffusers'] * 1e3:.1f} ms, "
          f"flowcore {med['flowcore'] * 1e3:.1f} ms, "
          f"speedup {run['speedup']['median']:.2f}x; MFU flowcore {100 * run['mfu']['flowcore']:.1f}% diffusers "
          f"{100 * run['mfu']['diffusers']:.1f}%; tokens/s flowcore {run['tokens_per_s']['flowcore']:.0f}", flush=True)
    return run


class AloneStep:
    """``(batch, latent) -> fits``: one training step of one model alone; False where it runs out of memory."""

    def __init__(self, args, device: str, model, library: str):
        self.args, self.device, self.model, self.library = args, device, model, library
        self.params = list(model.parameters())

    def __call__(self, batch: int, latent: int) -> bool:
        def step():
            data = make_batch(self.args, batch, latent, self.device)
            run = forwards(self.model, self.model, data)[0 if self.library == "diffusers" else 1]
            train_step(run, self.params, data[-1], self.device, self.device == "cuda")()
        return fits(step, (self.model,), self.device)


def memory_table(args, device: str, deadline: float) -> list[dict]:
    """Each model alone under the memory cap: the largest batch (at --latent) and image sequence (batch 1)."""
    cuda = device == "cuda"
    if cuda:
        total = torch.cuda.get_device_properties(0).total_memory
        torch.cuda.set_per_process_memory_fraction(min(1.0, args.memory_cap_gb * 1e9 / total))
    step = max(2, args.latent // 4)  # latent sides tried: multiples of this
    rows = []
    for library in ("flowcore", "diffusers"):
        for checkpointing in (False, True):
            if time.perf_counter() > deadline:
                print(f"  memory: out of time before {library} checkpointing={checkpointing}", flush=True)
                return rows
            theirs, ours = build(args, device, args.max_latent)
            model = ours if library == "flowcore" else theirs
            del theirs, ours
            if checkpointing and library == "flowcore":
                model.config = model.config.model_copy(update={"checkpointing": True})
            elif checkpointing:
                model.enable_gradient_checkpointing()
            step_fn = AloneStep(args, device, model, library)
            batch = largest(lambda b: step_fn(b, args.latent), 1, args.max_batch)
            side = step * largest(lambda k: step_fn(1, step * k), args.latent // step, args.max_latent // step)
            row = {"library": library, "checkpointing": checkpointing, "largest_batch": batch,
                   "tokens_per_sample": (args.latent // 2) ** 2 + args.text_tokens,
                   "largest_latent": side, "largest_image_tokens": (side // 2) ** 2,
                   "batch_capped": batch == args.max_batch, "sequence_capped": side == args.max_latent}
            print(f"  memory {library} checkpointing={checkpointing}: batch {batch}, "
                  f"image tokens {(side // 2) ** 2} at batch 1", flush=True)
            rows.append(row)
            model = step_fn = None  # freed before the next build
            if cuda:
                torch.cuda.empty_cache()
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--smoke", action="store_true", help="tiny sizes on the CPU (aot_eager): checks the script")
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--heads", type=int, default=24, help="hidden = 64 x heads")
    ap.add_argument("--layers", type=int, default=24, help="double-stream blocks")
    ap.add_argument("--latent", type=int, default=64, help="latent side: (latent / 2)^2 image tokens")
    ap.add_argument("--text-tokens", type=int, default=154)
    ap.add_argument("--text-dim", type=int, default=4096)
    ap.add_argument("--pooled-dim", type=int, default=2048)
    ap.add_argument("--batch", default="auto", help="a batch size, or auto (see the module docstring)")
    ap.add_argument("--runs", nargs="+", default=DEFAULT_RUNS, help="flowcore:diffusers variants, e.g. compile:eager")
    ap.add_argument("--pairs", type=int, default=8)
    ap.add_argument("--warmup", type=int, default=2, help="untimed pairs (compilation happens here)")
    ap.add_argument("--backend", default="inductor", help="torch.compile backend")
    ap.add_argument("--memory", action="store_true", help="only the memory table (CUDA)")
    ap.add_argument("--memory-cap-gb", type=float, default=80.0)
    ap.add_argument("--max-batch", type=int, default=256)
    ap.add_argument("--max-latent", type=int, default=256, help="largest latent side the sequence search tries")
    ap.add_argument("--time-limit", type=float, default=600, help="seconds; the memory search stops past it")
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "throughput.json")
    ap.add_argument("--results-md", type=Path, default=ROOT / "benchmarks" / "RESULTS.md")
    ap.add_argument("--report-only", action="store_true", help="rewrite the RESULTS.md section from --out")
    ap.add_argument("--merge", type=Path, nargs="+", help="with --report-only: records whose parts to fold into --out")
    args = ap.parse_args()
    if args.smoke:
        for key, value in SMOKE.items():
            setattr(args, key, value)
    if args.report_only:
        record = json.loads(args.out.read_text())
        for path in args.merge or []:
            other = json.loads(path.read_text())
            record.update({k: v for k, v in other.items() if v})
        args.out.write_text(json.dumps(record, indent=2) + "\n")
        write_section(record, args.results_md)
        return
    import diffusers

    device = args.device
    if device == "cuda" and not torch.cuda.is_available():
        raise SystemExit("benchmarks/throughput.py: no CUDA device; use --smoke on a CPU")
    deadline = time.perf_counter() + args.time_limit
    record = json.loads(args.out.read_text()) if args.memory and args.out.is_file() else {}
    record.update({
        "memory_command" if args.memory else "command": " ".join(["python3", *sys.argv]),
        "machine": {"device": torch.cuda.get_device_name() if device == "cuda" else _cpu_name(),
                    "memory_gb": torch.cuda.get_device_properties(0).total_memory / 1e9 if device == "cuda" else None,
                    "python": platform.python_version(), "torch": torch.__version__,
                    "diffusers": diffusers.__version__, "cpu_cores": os.cpu_count()},
        "config": {"hidden": 64 * args.heads, "heads": args.heads, "double_blocks": args.layers,
                   "image_tokens": (args.latent // 2) ** 2, "text_tokens": args.text_tokens,
                   "text_dim": args.text_dim, "pooled_dim": args.pooled_dim, "dtype": "bf16 autocast",
                   "optimizer": "AdamW, fused" if device == "cuda" else "AdamW, foreach"},
    })
    args.out.parent.mkdir(parents=True, exist_ok=True)
    if args.memory:
        record["memory_cap_gb"] = args.memory_cap_gb
        record["memory"] = memory_table(args, device, deadline)
        args.out.write_text(json.dumps(record, indent=2) + "\n")
        write_section(record, args.results_md)
        return
    theirs, ours = build(args, device, args.latent)
    with torch.no_grad():
        check = make_batch(args, 1, args.latent, device)
        a, b = forwards(theirs, ours, check)
        record["max_abs_output_diff_fp32"] = (a() - b()).abs().max().item()
    stats = model_stats(ours, {"image": (args.latent // 2) ** 2, "text": args.text_tokens})
    record["parameters"] = stats.parameters
    record["train_flops_per_token"] = stats.train_flops_per_token
    batch = int(args.batch) if args.batch != "auto" else next(
        (b for b in (32, 16, 8, 4, 2, 1) if fits_both(args, device, theirs, ours, b)), 0)
    if batch == 0:
        raise SystemExit("benchmarks/throughput.py: not even batch 1 of both models fits")
    print(f"{stats.parameters / 1e9:.2f}B parameters, {stats.tokens} tokens per sample, batch {batch}, "
          f"output diff {record['max_abs_output_diff_fp32']:.1e}", flush=True)
    n, reps = (8192, 10) if device == "cuda" else (256, 2)
    peaks = [matmul_peak(device, torch.bfloat16, n, reps)]
    record["runs"] = []
    for spec in args.runs:
        try:
            record["runs"].append(one_run(args, device, theirs, ours, batch, spec, stats, max(peaks)))
        except Exception as exc:  # noqa: BLE001  (one variant out of memory, e.g. CUDA graphs' pools, ends only itself)
            if not is_oom(exc):
                raise
            print(f"  {spec}: out of memory at batch {batch}", flush=True)
            record.setdefault("failed_runs", []).append({"run": spec, "batch": batch, "error": "out of memory"})
            for model in (theirs, ours):
                model.zero_grad(set_to_none=True)
                for m in model.modules():
                    m._compiled_call_impl = None
            torch.cuda.empty_cache()
        args.out.write_text(json.dumps(record, indent=2) + "\n")
    peaks.append(matmul_peak(device, torch.bfloat16, n, reps))
    record["bf16_matmul_peak_flops"], record["bf16_matmul_peak_before_after"] = max(peaks), peaks
    for run in record["runs"]:  # MFU against the better of the two peak measurements
        run["mfu"] = {k: v * peaks[0] / max(peaks) for k, v in run["mfu"].items()}
    if args.smoke:  # the memory search too, where nothing runs out of memory: it stops at its caps
        record["memory_cap_gb"], record["memory"] = args.memory_cap_gb, memory_table(args, device, deadline)
    args.out.write_text(json.dumps(record, indent=2) + "\n")
    write_section(record, args.results_md)
    print(f"wrote {args.out} and the throughput section of {args.results_md}")


def write_section(record: dict, path: Path) -> None:
    m, c = record["machine"], record["config"]
    lines = ["## throughput", "",
             f"One training step (bf16 autocast, {c['optimizer']}) of flowcore's FlowTransformer vs diffusers "
             f"{m['diffusers']} `SD3Transformer2DModel` at an SD3-medium-like size: hidden {c['hidden']} "
             f"({c['heads']} heads x 64), {c['double_blocks']} double-stream blocks, {c['image_tokens']} image + "
             f"{c['text_tokens']} text tokens, QK RMSNorm"
             + (f", {record['parameters'] / 1e9:.2f}B parameters" if "parameters" in record else "")
             + f". Device: {m['device']}, torch {m['torch']}. `benchmarks/throughput.py` (its docstring says how "
             "each figure is measured); `compile` = torch.compile per block, default mode; `-ro` reduce-overhead "
             "(CUDA graphs); `-ma` max-autotune without CUDA graphs; `-triton` flowcore's Triton kernels inside "
             "the compiled graphs. MFU = matmul + attention FLOPs (`model_stats`, 3 x forward) / step time / "
             "measured bf16 matmul peak.", ""]
    if record.get("runs"):
        peak = record.get("bf16_matmul_peak_flops")
        lines += [f"Measured bf16 matmul peak: {peak / 1e12:.3g} TFLOP/s." if peak else "", "",
                  "| flowcore : diffusers | batch | flowcore ms | diffusers ms | speedup [quartiles] | "
                  "flowcore MFU | diffusers MFU | flowcore tokens/s | diffusers tokens/s "
                  "| peak GB flowcore / diffusers |",
                  "|---|---|---|---|---|---|---|---|---|---|"]
        for r in record["runs"]:
            s, sp, mem = r["step_s"], r["speedup"], r.get("peak_memory_gb") or {}
            memory = (f"{mem['flowcore']:.1f} / {mem['diffusers']:.1f}" if mem else "-")
            lines.append(f"| {r['run']} | {r['batch']} | {1e3 * s['flowcore']:.1f} | {1e3 * s['diffusers']:.1f} | "
                         f"**{sp['median']:.2f}x** [{sp['q1']:.2f}-{sp['q3']:.2f}] | "
                         f"{100 * r['mfu']['flowcore']:.1f}% | "
                         f"{100 * r['mfu']['diffusers']:.1f}% | {r['tokens_per_s']['flowcore']:.0f} | "
                         f"{r['tokens_per_s']['diffusers']:.0f} | {memory} |")
    if record.get("memory"):
        lines += ["", f"Largest training step that fits in {record['memory_cap_gb']:.0f} GB (each model alone, "
                  "one AdamW step; batch at the tokens above, sequence at batch 1; `>=` where the search's cap "
                  "was reached):", "",
                  "| library | activation checkpointing | largest batch | largest image tokens (batch 1) |",
                  "|---|---|---|---|"]
        for r in record["memory"]:
            lines.append(f"| {r['library']} | {'every block' if r['checkpointing'] else 'none'} | "
                         f"{'>= ' if r['batch_capped'] else ''}{r['largest_batch']} | "
                         f"{'>= ' if r['sequence_capped'] else ''}{r['largest_image_tokens']} |")
    for r in record.get("failed_runs", []):
        lines += ["", f"{r['run']} at batch {r['batch']}: {r['error']}."]
    lines += ["", *(f"Command: `{record[k]}`" for k in ("command", "memory_command") if k in record), ""]
    replace_section(path, "throughput", "\n".join(lines))


if __name__ == "__main__":
    main()
