"""flowcore's Triton kernels on one GPU: correctness, then time and bandwidth vs torch eager and
torch.compile, and the backbone training step with and without them.

    .venv/bin/python benchmarks/kernels.py                 # a CUDA GPU; about 3-6 minutes
    .venv/bin/python benchmarks/kernels.py --cpu-smoke     # no GPU: the correctness part only,
                                                           # small shapes, Triton's interpreter, and
                                                           # every kernel variant compiled for sm_90

1. Correctness: every kernel against its reference (``flowcore.kernels.reference``), forward
   and every gradient, fp32 and bf16, odd shapes, broadcast and strided inputs; then the
   backbone's loss and gradients with the kernels against the reference path.
2. Kernels: forward and forward+backward time (``triton.testing.do_bench``, median, L2
   flushed) of the Triton kernel, the eager reference and ``torch.compile`` of the
   reference, at Flux-like sizes. GB/s counts the bytes each op must move at least (every
   input read once, every output written once), so the three are compared on the same
   work; the fraction is of the device-to-device copy bandwidth measured in the same run.
3. Backbone: one training step (forward, backward, fused AdamW, bf16 autocast) of a
   FlowTransformer with the reference ops (eager), the Triton kernels (eager), and the
   reference under torch.compile, interleaved so that drift hits all alike; median times.
   Then a torch.profiler view of one Triton step: GPU time by kernel, the evidence for or
   against fusing more (e.g. gated residual + the next modulated LayerNorm, RMSNorm + RoPE).

Writes benchmarks/results/kernels.json and the ``## kernels`` section of benchmarks/RESULTS.md
(not with --cpu-smoke). Goal on an H100: every kernel >= 70% of copy bandwidth, the training
step >= 1.3x faster than eager torch.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

if "--cpu-smoke" in sys.argv:
    os.environ["TRITON_INTERPRET"] = "1"  # read when the kernels are decorated, i.e. on import

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from results_md import replace_section  # noqa: E402  (benchmarks/ is on sys.path when run)

import flowcore.kernels as kernels  # noqa: E402
from flowcore.kernels import reference, triton_ops  # noqa: E402

OPS = ("modulated_layer_norm", "rms_norm", "apply_rope", "gated_residual")
DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16}
TOL = {torch.float32: 2e-5, torch.bfloat16: 2e-2}


# --------------------------------------------------------------------------- inputs


def _strided_q(b: int, h: int, l: int, dh: int, device, dtype) -> torch.Tensor:
    """q [B, H, L, Dh] as RoPE sees it: a permuted view of the QK-normed qk [B, L, 2, H, Dh]."""
    return torch.randn(b, l, 2, h, dh, device=device, dtype=dtype).permute(2, 0, 3, 1, 4)[0]


def _strided_qk(b: int, h: int, l: int, dh: int, device, dtype) -> torch.Tensor:
    """qk [B, L, 2, H, Dh] as QK norm sees it: a slice of a fused QKV projection [B, L, 3, H, Dh]."""
    return torch.randn(b, l, 3, h, dh, device=device, dtype=dtype)[:, :, :2]


def make_inputs(op: str, size: dict, device, dtype) -> list[torch.Tensor | None]:
    b, l, d, h, dh = size["B"], size["L"], size["D"], size["H"], size["Dh"]

    def randn(*shape, dt=dtype):
        return torch.randn(*shape, device=device, dtype=dt)

    if op == "modulated_layer_norm":
        return [randn(b, l, d), randn(b, 1, d), randn(b, 1, d)]
    if op == "rms_norm":
        return [_strided_qk(b, h, l, dh, device, dtype), randn(2, 1, dh)]
    if op == "apply_rope":
        angles = randn(b, l, dh // 2, dt=torch.float32)
        return [_strided_q(b, h, l, dh, device, dtype), angles.cos(), angles.sin()]
    return [randn(b, l, d), randn(b, l, d), randn(b, 1, d)]


def min_bytes(op: str, inputs: list[torch.Tensor | None], backward: bool) -> int:
    """Bytes an op must move at least: inputs read once, outputs (and gradients) written once.

    n: one activation (x; for gated_residual x and y are two); params: the broadcast or
    per-position operands (shift, scale, weight, cos/sin, gate).
    """
    x = inputs[0]
    n = x.numel() * x.element_size()
    activations = 2 if op == "gated_residual" else 1
    params = sum(t.numel() * t.element_size() for t in inputs[activations:] if t is not None)
    forward = activations * n + params + n
    if not backward:
        return forward
    # backward: read dy (+ x or y where the gradient needs it), write each gradient;
    # rope needs only dy (its cos/sin carry no gradient), gated_residual's dx is dy itself.
    back = {"modulated_layer_norm": 3 * n, "rms_norm": 3 * n, "apply_rope": 2 * n, "gated_residual": 3 * n}[op]
    return forward + back + (params if op != "apply_rope" else 0)


def needs_grad(op: str, inputs: list[torch.Tensor | None]) -> list[torch.Tensor | None]:
    """Fresh leaves: what a training step differentiates (rope's angles come from positions)."""
    out = []
    for i, t in enumerate(inputs):
        if t is None:
            out.append(None)
        else:
            out.append(t.detach().requires_grad_(not (op == "apply_rope" and i > 0)))
    return out


# --------------------------------------------------------------------------- correctness


CHECK_CASES = {
    "modulated_layer_norm": [
        lambda dev, dt: [torch.randn(3, 37, 129, device=dev, dtype=dt), torch.randn(3, 1, 129, device=dev, dtype=dt),
                         torch.randn(3, 37, 129, device=dev, dtype=dt)],
        lambda dev, dt: [torch.randn(37, 3, 1000, device=dev, dtype=dt).transpose(0, 1),
                         torch.randn(1000, device=dev, dtype=dt), torch.randn(3, 1, 1000, device=dev, dtype=dt)],
    ],
    "rms_norm": [
        lambda dev, dt: [_strided_qk(2, 3, 33, 64, dev, dt), torch.randn(2, 1, 64, device=dev, dtype=dt)],
        lambda dev, dt: [_strided_q(2, 3, 33, 64, dev, dt), torch.randn(64, device=dev, dtype=dt)],
        lambda dev, dt: [torch.randn(17, 96, device=dev, dtype=dt), None],
    ],
    "apply_rope": [
        lambda dev, dt: [_strided_q(2, 3, 33, 64, dev, dt), *_angles(2, 33, 32, dev)],
        lambda dev, dt: [torch.randn(2, 3, 33, 10, device=dev, dtype=dt), *_angles(1, 33, 5, dev)],
    ],
    "gated_residual": [
        lambda dev, dt: [torch.randn(3, 37, 129, device=dev, dtype=dt), torch.randn(3, 37, 129, device=dev, dtype=dt),
                         torch.randn(3, 1, 129, device=dev, dtype=dt)],
        lambda dev, dt: [torch.randn(37, 3, 1100, device=dev, dtype=dt).transpose(0, 1),
                         torch.randn(3, 37, 1100, device=dev, dtype=dt),
                         torch.randn(3, 37, 1100, device=dev, dtype=dt)],
    ],
}


# Cases checked on a GPU only: in the CPU interpreter their many programs take minutes.
GPU_ONLY_CASES = {
    # More row groups than a grid's axis 1 holds (65535): [B * L, 2, H, Dh] with B * L * 2 > 65535.
    "rms_norm": [
        lambda dev, dt: [torch.randn(40000, 3, 2, 64, device=dev, dtype=dt)[:, :2],
                         torch.randn(2, 1, 64, device=dev, dtype=dt)],
    ],
}


def _angles(b: int, l: int, p: int, device) -> list[torch.Tensor]:
    a = torch.randn(b, l, p, device=device)
    return [a.cos(), a.sin()]


def max_rel_error(actual: torch.Tensor, expected: torch.Tensor) -> float:
    return ((actual.float() - expected.float()).abs().max() / expected.float().abs().max().clamp_min(1.0)).item()


def check_op(op: str, inputs: list[torch.Tensor | None], dtype: torch.dtype) -> float:
    """Largest relative error of the output and every gradient, Triton vs reference."""
    ours = [t.detach().requires_grad_() if t is not None else None for t in inputs]
    theirs = [t.detach().requires_grad_() if t is not None else None for t in inputs]
    out, expected = getattr(triton_ops, op)(*ours), getattr(reference, op)(*theirs)
    upstream = torch.randn_like(expected)
    out.backward(upstream)
    expected.backward(upstream)
    errors = [max_rel_error(out, expected)]
    errors += [max_rel_error(a.grad, b.grad) for a, b in zip(ours, theirs) if a is not None]
    return max(errors)


def correctness(device: str) -> list[dict]:
    rows = []
    for op, cases in CHECK_CASES.items():
        if device != "cpu":
            cases = cases + GPU_ONLY_CASES.get(op, [])
        for dtype_name, dtype in DTYPES.items():
            for i, case in enumerate(cases):
                torch.manual_seed(i)
                err = check_op(op, case(device, dtype), dtype)
                rows.append({"op": op, "dtype": dtype_name, "case": i, "max_rel_error": err, "ok": err <= TOL[dtype]})
                print(f"check {op:22s} {dtype_name} case {i}: max rel error {err:.1e} "
                      f"{'ok' if err <= TOL[dtype] else 'FAILED'}", flush=True)
    return rows


# --------------------------------------------------------------------------- launch settings


def _grid(**axes) -> list[dict]:
    """Every combination of the given settings, e.g. _grid(tile=(4096, 8192), warps=(4, 8))."""
    combos = [{}]
    for key, values in axes.items():
        combos = [{**c, key: v} for c in combos for v in values]
    return combos


# Per kernel (a key of triton_ops.LAUNCH): the ops and passes it serves, and the settings tried.
# The forward kernels are chosen first, so the backward ones are timed behind the chosen forward.
SWEEP = {
    "norm_fwd": ([("modulated_layer_norm", False), ("rms_norm", False)], _grid(tile=(4096, 8192), warps=(2, 4, 8))),
    "rope": ([("apply_rope", False), ("apply_rope", True)], _grid(tile=(1024, 2048, 4096), warps=(4, 8))),
    "gated_fwd": ([("gated_residual", False)], _grid(tile=(4096, 8192), warps=(4, 8))),
    "norm_bwd": ([("modulated_layer_norm", True), ("rms_norm", True)],
                 _grid(tile=(4096, 8192), warps=(4, 8, 16), programs_per_sm=(4, 16))),
    "gated_bwd": ([("gated_residual", True)], _grid(tile=(4096, 8192), warps=(4, 8), programs_per_sm=(4, 16))),
}


def _time_passes(passes, dtypes: list[str], cases: dict, do_bench) -> float:
    total = 0.0
    for op, backward in passes:
        for dtype_name in dtypes:
            inputs, upstream = cases[op, dtype_name]
            grads_of = [t for t in inputs if t is not None and t.requires_grad]
            fn = getattr(triton_ops, op)

            def run():
                out = fn(*inputs)
                if backward:
                    torch.autograd.grad(out, grads_of, upstream)

            total += do_bench(run, warmup=10, rep=25, return_mode="median") * 1e-3
    return total


def sweep_launch_settings(device: str, size: dict, dtypes: list[str]) -> dict:
    """Time each kernel's launch settings at the benchmark size (summed over its ops and the
    dtypes) and keep the fastest in triton_ops.LAUNCH, so the timings below use them."""
    from triton.testing import do_bench

    cases = {}
    for dtype_name in dtypes:
        for op in OPS:
            torch.manual_seed(0)
            inputs = needs_grad(op, make_inputs(op, size, device, DTYPES[dtype_name]))
            with torch.no_grad():
                upstream = torch.randn_like(getattr(reference, op)(*inputs))
            cases[op, dtype_name] = inputs, upstream
    report = {}
    for kernel, (passes, candidates) in SWEEP.items():
        default = dict(triton_ops.LAUNCH[kernel])
        timed = []
        for settings in candidates:
            triton_ops.LAUNCH[kernel] = {**default, **settings}
            try:
                total = _time_passes(passes, dtypes, cases, do_bench)
            except Exception as exc:  # noqa: BLE001 (a setting the compiler refuses, e.g. out of registers)
                print(f"sweep {kernel}: {settings} failed: {exc!r}"[:300], flush=True)
                continue
            timed.append((total, settings))
        best_total, best = min(timed, key=lambda pair: pair[0])

        default_total = next((t for t, c in timed if all(default.get(k) == v for k, v in c.items())), None)
        triton_ops.LAUNCH[kernel] = {**default, **best}
        report[kernel] = {"chosen": triton_ops.LAUNCH[kernel], "default": default, "chosen_s": best_total,
                          "default_s": default_total, "tried": [{**c, "s": t} for t, c in timed]}
        print(f"sweep {kernel:10s}: chosen {best} ({best_total * 1e6:.0f} us summed over its ops and dtypes"
              + (f"; default {default_total * 1e6:.0f} us" if default_total else "") + ")", flush=True)
    del cases
    return report


# --------------------------------------------------------------------------- kernel timings


def copy_bandwidth(device: str) -> float:
    """Bytes/s of a 1 GiB device-to-device copy (read + write): the practical memory peak."""
    from triton.testing import do_bench

    src = torch.empty(2**28, device=device, dtype=torch.float32)
    dst = torch.empty_like(src)
    ms = do_bench(lambda: dst.copy_(src), warmup=50, rep=200, return_mode="median")
    return 2 * src.numel() * src.element_size() / (ms * 1e-3)


def time_op(fn, inputs, upstream, backward: bool) -> float:
    from triton.testing import do_bench

    grads_of = [t for t in inputs if t is not None and t.requires_grad]

    def run():
        out = fn(*inputs)
        if backward:
            torch.autograd.grad(out, grads_of, upstream)

    return do_bench(run, warmup=25, rep=100, return_mode="median") * 1e-3


def kernel_timings(device: str, size: dict, dtypes: list[str], peak: float) -> list[dict]:
    rows = []
    for dtype_name in dtypes:
        dtype = DTYPES[dtype_name]
        for op in OPS:
            torch.manual_seed(0)
            inputs = needs_grad(op, make_inputs(op, size, device, dtype))
            with torch.no_grad():
                upstream = torch.randn_like(getattr(reference, op)(*inputs))
            impls = {
                "triton": getattr(triton_ops, op),
                "eager": getattr(reference, op),
                "compile": torch.compile(getattr(reference, op), dynamic=False),
            }
            for backward in (False, True):
                nbytes = min_bytes(op, inputs, backward)
                row = {"op": op, "dtype": dtype_name, "pass": "fwd+bwd" if backward else "fwd", "min_bytes": nbytes}
                for name, fn in impls.items():
                    seconds = time_op(fn, inputs, upstream, backward)
                    row[f"{name}_s"] = seconds
                    row[f"{name}_gbps"] = nbytes / seconds / 1e9
                    row[f"{name}_fraction_of_copy"] = nbytes / seconds / peak
                row["speedup_vs_eager"] = row["eager_s"] / row["triton_s"]
                row["speedup_vs_compile"] = row["compile_s"] / row["triton_s"]
                rows.append(row)
                print(f"{op:22s} {dtype_name} {row['pass']:8s} triton {row['triton_s'] * 1e6:8.1f} us "
                      f"({100 * row['triton_fraction_of_copy']:3.0f}%)  eager {row['eager_s'] * 1e6:8.1f} us "
                      f"({100 * row['eager_fraction_of_copy']:3.0f}%)  compile {row['compile_s'] * 1e6:8.1f} us "
                      f"({100 * row['compile_fraction_of_copy']:3.0f}%)", flush=True)
            torch.compiler.reset()
    return rows


# --------------------------------------------------------------------------- backbone step


def build_backbone(cfg_kwargs: dict, batch: int, image_tokens: int, text_tokens: int, device: str):
    from flowcore.modality import Tokens
    from flowcore.nn import FlowTransformer, FlowTransformerConfig, StreamConfig

    torch.manual_seed(0)
    cfg = FlowTransformerConfig(
        streams={"image": StreamConfig(in_channels=64, position_axes=2),
                 "text": StreamConfig(in_channels=256, position_axes=1, out_channels=0)},
        **cfg_kwargs,
    )
    model = FlowTransformer(cfg).to(device)
    with torch.no_grad():  # a fresh model is exactly zero at its heads and modulation
        for p in model.parameters():
            p.add_(0.02 * torch.randn_like(p))
    side = int(image_tokens**0.5)
    rows, cols = torch.meshgrid(torch.arange(side), torch.arange(side), indexing="ij")
    grid = torch.stack([rows, cols], -1).reshape(1, -1, 2).expand(batch, -1, -1).float()
    tokens = {
        "image": Tokens(torch.randn(batch, side * side, 64), grid, torch.ones(batch, side * side, dtype=torch.bool)),
        "text": Tokens(torch.randn(batch, text_tokens, 256), torch.arange(text_tokens).float()[None, :, None]
                       .expand(batch, -1, -1), torch.ones(batch, text_tokens, dtype=torch.bool)),
    }
    tokens = {k: Tokens(v.values.to(device), v.positions.to(device), v.mask.to(device)) for k, v in tokens.items()}
    t = {"image": torch.rand(batch, device=device), "text": torch.zeros(batch, device=device)}
    target = torch.randn(batch, side * side, 64, device=device)
    return model, tokens, t, target


def backbone_loss_and_grads(model, tokens, t, target, backend: str, autocast: bool):
    kernels.set_backend(backend)
    model.zero_grad(set_to_none=True)
    with torch.autocast(target.device.type, dtype=torch.bfloat16, enabled=autocast):
        loss = (model(tokens, t)["image"].float() - target).pow(2).mean()
    loss.backward()
    return loss.detach(), [p.grad.detach().clone() for p in model.parameters()]


def check_backbone(model, tokens, t, target, autocast: bool) -> dict:
    """The backbone's loss and gradients with the Triton kernels vs the reference ops."""
    ref_loss, ref_grads = backbone_loss_and_grads(model, tokens, t, target, "reference", autocast)
    loss, grads = backbone_loss_and_grads(model, tokens, t, target, "triton", autocast)
    # relative to each gradient's own scale: a backbone's gradients can be far below 1
    grad_err = max(((g - r).abs().max() / r.abs().max().clamp_min(1e-12)).item() for g, r in zip(grads, ref_grads))
    tol = 5e-2 if autocast else 1e-3
    row = {"loss_reference": ref_loss.item(), "loss_triton": loss.item(), "max_rel_grad_error": grad_err,
           "ok": abs(loss.item() - ref_loss.item()) <= tol * abs(ref_loss.item()) and grad_err <= tol}
    print(f"check backbone (autocast {autocast}): loss {ref_loss.item():.5f} (reference) vs {loss.item():.5f} "
          f"(triton), max rel grad error {grad_err:.1e} {'ok' if row['ok'] else 'FAILED'}", flush=True)
    return row


def profile_step(run, top: int = 20) -> list[dict]:
    """GPU time by kernel over one training step: where a further fusion would pay."""
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CUDA]) as prof:
        run()
        torch.cuda.synchronize()
    events = [e for e in prof.key_averages() if e.self_device_time_total > 0]
    total = sum(e.self_device_time_total for e in events)
    events.sort(key=lambda e: e.self_device_time_total, reverse=True)
    rows = [{"kernel": e.key[:120], "calls": e.count, "gpu_us": e.self_device_time_total,
             "share": e.self_device_time_total / total} for e in events[:top]]
    print("profile of one eager Triton step (GPU time by kernel):")
    for r in rows[:10]:
        print(f"  {100 * r['share']:5.1f}%  {r['calls']:4d} x  {r['kernel'][:90]}")
    return rows


def backbone_timings(model, tokens, t, target, warmup: int, iters: int) -> dict:
    opt = torch.optim.AdamW(model.parameters(), lr=1e-5, fused=True)
    compiled = torch.compile(model)

    def step(fn, backend):
        def run():
            kernels.set_backend(backend)
            with torch.autocast("cuda", dtype=torch.bfloat16):
                loss = (fn(tokens, t)["image"].float() - target).pow(2).mean()
            loss.backward()
            opt.step()
            opt.zero_grad(set_to_none=True)
        return run

    variants = {"eager_reference": step(model, "reference"), "eager_triton": step(model, "triton"),
                "compile_reference": step(compiled, "auto")}
    times = {name: [] for name in variants}
    for i in range(warmup + iters):
        for name, run in variants.items():
            torch.cuda.synchronize()
            t0 = time.perf_counter()
            run()
            torch.cuda.synchronize()
            if i >= warmup:
                times[name].append(time.perf_counter() - t0)
    profile = profile_step(variants["eager_triton"])
    kernels.set_backend("auto")
    med = {name: statistics.median(v) for name, v in times.items()}
    row = {f"{name}_step_s": s for name, s in med.items()}
    row["all_steps_s"] = times
    row["profile_eager_triton_top_kernels"] = profile
    row["speedup_triton_vs_eager"] = med["eager_reference"] / med["eager_triton"]
    row["speedup_compile_vs_eager"] = med["eager_reference"] / med["compile_reference"]
    print(f"backbone step: eager reference {med['eager_reference'] * 1e3:.1f} ms, eager triton "
          f"{med['eager_triton'] * 1e3:.1f} ms ({row['speedup_triton_vs_eager']:.2f}x), torch.compile "
          f"{med['compile_reference'] * 1e3:.1f} ms ({row['speedup_compile_vs_eager']:.2f}x)", flush=True)
    return row


# --------------------------------------------------------------------------- report


def recount_bytes(record: dict) -> None:
    """Redo each row's byte count (``min_bytes`` as it now stands, inputs built on the meta
    device) and the GB/s and fractions from it; the measured times are kept as they are."""
    size, peak = record["config"]["size"], record["copy_bandwidth_gbps"] * 1e9
    for row in record["kernels"]:
        inputs = make_inputs(row["op"], size, "meta", DTYPES[row["dtype"]])
        row["min_bytes"] = min_bytes(row["op"], inputs, row["pass"] == "fwd+bwd")
        for impl in ("triton", "eager", "compile"):
            row[f"{impl}_gbps"] = row["min_bytes"] / row[f"{impl}_s"] / 1e9
            row[f"{impl}_fraction_of_copy"] = row["min_bytes"] / row[f"{impl}_s"] / peak


def write_results_md(record: dict, path: Path) -> None:
    m = record["machine"]
    lines = ["## kernels", "",
             f"flowcore's Triton kernels vs torch eager and torch.compile of the reference; `{record['command']}`; "
             f"{m['gpu']}, torch {m['torch']}, triton {m['triton']}. Copy bandwidth measured in the run: "
             f"{record['copy_bandwidth_gbps']:.0f} GB/s. GB/s counts the minimum bytes of each op; % is of the copy "
             f"bandwidth. Sizes {record['config']['size']}. Correctness: "
             f"{'all checks passed' if all(r['ok'] for r in record['correctness']) else 'SOME CHECKS FAILED'}.", "",
             "| op | dtype | pass | triton us | triton % | eager us | eager % | compile us | compile % "
             "| vs eager | vs compile |",
             "| --- | --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for r in record["kernels"]:
        lines.append(f"| {r['op']} | {r['dtype']} | {r['pass']} | {r['triton_s'] * 1e6:.1f} | "
                     f"{100 * r['triton_fraction_of_copy']:.0f} | {r['eager_s'] * 1e6:.1f} | "
                     f"{100 * r['eager_fraction_of_copy']:.0f} | {r['compile_s'] * 1e6:.1f} | "
                     f"{100 * r['compile_fraction_of_copy']:.0f} | {r['speedup_vs_eager']:.2f}x | "
                     f"{r['speedup_vs_compile']:.2f}x |")
    sweep = record.get("launch_sweep")
    if sweep:
        lines += ["", "Launch settings (`triton_ops.LAUNCH`), chosen by the sweep in this run from the alternatives "
                  "timed at these sizes (time summed over each kernel's ops, passes and dtypes): " + "; ".join(
                      f"{k} {v['chosen']} ({v['chosen_s'] * 1e6:.0f} us"
                      + (f" vs {v['default_s'] * 1e6:.0f} us as committed)" if v["default_s"] else ")")
                      for k, v in sweep.items()) + "."]
    b = record.get("backbone")
    if b:
        lines += ["", f"Backbone training step (bf16 autocast, fused AdamW; {record['config']['backbone']}): "
                  f"eager reference {b['eager_reference_step_s'] * 1e3:.1f} ms, eager Triton "
                  f"{b['eager_triton_step_s'] * 1e3:.1f} ms ({b['speedup_triton_vs_eager']:.2f}x), torch.compile "
                  f"{b['compile_reference_step_s'] * 1e3:.1f} ms ({b['speedup_compile_vs_eager']:.2f}x)."]
        lines += ["", "Largest GPU-time shares in one eager Triton step: " + ", ".join(
            f"{r['kernel'][:48]} {100 * r['share']:.0f}%" for r in b["profile_eager_triton_top_kernels"][:6]) + "."]
    lines += ["", "Full numbers in `benchmarks/results/kernels.json`.", ""]
    lines += [f"- {note}" for note in record.get("notes", [])] + ([""] if record.get("notes") else [])
    section = "\n".join(lines)
    replace_section(path, "kernels", section)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cpu-smoke", action="store_true",
                    help="no GPU: run the correctness checks on CPU in Triton's interpreter, time nothing")
    ap.add_argument("--dtypes", default="bf16,fp32", help="dtypes of the kernel timings")
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--tokens", type=int, default=4096, help="L of the kernel timings")
    ap.add_argument("--hidden", type=int, default=3072, help="D of the kernel timings (Flux: 3072, 24 heads of 128)")
    ap.add_argument("--head-dim", type=int, default=128)
    ap.add_argument("--iters", type=int, default=10, help="timed backbone steps per variant (median)")
    ap.add_argument("--no-backbone", action="store_true")
    ap.add_argument("--no-sweep", action="store_true", help="time the kernels at triton_ops.LAUNCH as committed")
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "kernels.json")
    ap.add_argument("--results-md", type=Path, default=ROOT / "benchmarks" / "RESULTS.md")
    ap.add_argument("--report-only", action="store_true", help="rewrite the RESULTS.md section from --out")
    ap.add_argument("--note", action="append", default=[], help="with --report-only: a line for the notes (repeatable)")
    args = ap.parse_args()
    if args.report_only:
        record = json.loads(args.out.read_text())
        recount_bytes(record)
        record["notes"] = record.get("notes", []) + args.note
        args.out.write_text(json.dumps(record, indent=1) + "\n")
        write_results_md(record, args.results_md)
        return
    import triton

    if args.cpu_smoke:
        device = "cpu"
    elif torch.cuda.is_available():
        device = "cuda"
    else:
        sys.exit("benchmarks/kernels.py: no CUDA GPU here; run with --cpu-smoke to check the kernels on CPU")

    started = time.perf_counter()
    record = {
        "command": " ".join([Path(sys.executable).name, *sys.argv]),
        "machine": {"gpu": torch.cuda.get_device_name() if device == "cuda" else None,
                    "python": platform.python_version(), "torch": torch.__version__, "triton": triton.__version__},
        "config": {},
    }
    record["correctness"] = correctness(device)
    if args.cpu_smoke:
        # Every kernel variant through the real compiler to an sm_90 cubin (no GPU needed);
        # in a fresh process, since this one holds interpreted kernels.
        env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
        aot = subprocess.run([sys.executable, "-m", "flowcore.kernels.aot", "--arch", "90"], env=env, cwd=ROOT,
                             capture_output=True, text=True)
        print(aot.stdout.strip() or aot.stderr[-3000:], flush=True)
        record["aot_compile_ok"] = aot.returncode == 0
        model, tokens, t, target = build_backbone(
            {"hidden_size": 32, "num_heads": 2, "depth_double": 1, "depth_single": 1, "frequency_dim": 16},
            batch=2, image_tokens=4, text_tokens=3, device=device)
        record["backbone_check"] = check_backbone(model, tokens, t, target, autocast=False)
        ok = all(r["ok"] for r in record["correctness"]) and record["backbone_check"]["ok"] and record["aot_compile_ok"]
        print(f"cpu smoke: {'all checks passed' if ok else 'CHECKS FAILED'} in {time.perf_counter() - started:.0f} s")
        sys.exit(0 if ok else 1)

    def save() -> None:
        """After every phase, so a run stopped by a time limit keeps what it measured."""
        record["wall_s"] = time.perf_counter() - started
        args.out.parent.mkdir(parents=True, exist_ok=True)
        partial = args.out.with_suffix(".json.partial")
        partial.write_text(json.dumps(record, indent=1) + "\n")
        partial.replace(args.out)

    save()
    heads = args.hidden // args.head_dim
    size = {"B": args.batch, "L": args.tokens, "D": args.hidden, "H": heads, "Dh": args.head_dim}
    record["config"]["size"] = size
    peak = copy_bandwidth(device)
    record["copy_bandwidth_gbps"] = peak / 1e9
    print(f"copy bandwidth {peak / 1e9:.0f} GB/s on {record['machine']['gpu']}", flush=True)
    if not args.no_sweep:
        record["launch_sweep"] = sweep_launch_settings(device, size, args.dtypes.split(","))
        save()
    record["launch_settings"] = {k: dict(v) for k, v in triton_ops.LAUNCH.items()}
    record["kernels"] = kernel_timings(device, size, args.dtypes.split(","), peak)
    save()

    if not args.no_backbone:
        backbone = {"hidden_size": 1024, "num_heads": 16, "depth_double": 4, "depth_single": 8}
        record["config"]["backbone"] = {**backbone, "batch": args.batch, "image_tokens": 1024, "text_tokens": 128}
        model, tokens, t, target = build_backbone(backbone, args.batch, 1024, 128, device)
        record["backbone_check"] = check_backbone(model, tokens, t, target, autocast=True)
        save()
        record["backbone"] = backbone_timings(model, tokens, t, target, warmup=3, iters=args.iters)

    save()
    write_results_md(record, args.results_md)
    print(f"wrote {args.out} and the kernels section of {args.results_md} in {record['wall_s']:.0f} s")


if __name__ == "__main__":
    main()
