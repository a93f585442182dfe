"""Compile the Triton kernels for an NVIDIA GPU on a machine without one.

Triton's interpreter (how the tests run the kernels on CPU) checks what the kernels compute,
not that they compile: types, layouts and register tiles are only checked by the real
compiler. Triton ships ptxas, so every kernel variant the launchers can request is compiled
here down to a cubin for the given architecture, with no GPU and no CUDA driver.

    python -m flowcore.kernels.aot              # every variant, sm_90 (H100)
    python -m flowcore.kernels.aot --quick      # one variant per kernel (the tests)
    python -m flowcore.kernels.aot --arch 80    # A100

Run it without TRITON_INTERPRET set (the interpreted kernels cannot be compiled).
"""

from __future__ import annotations

import argparse
import itertools
from collections.abc import Iterator

import triton
from triton.backends.compiler import GPUTarget
from triton.compiler import ASTSource

from flowcore.kernels import triton_ops as ops

_POINTERS = {"X", "Y", "SHIFT", "SCALE", "MEAN", "RSTD", "DY", "DX", "DSHIFT", "DSCALE",
             "COS", "SIN", "OUT", "GATE", "DO", "DGATE"}

Variant = tuple[object, dict[str, str], dict[str, object]]


def _bools(n: int) -> Iterator[tuple[bool, ...]]:
    return itertools.product((True, False), repeat=n)


def variants(quick: bool = False) -> Iterator[Variant]:
    """(kernel, pointer dtypes, constexprs) for every launch the ops can make, at typical tiles."""
    for center, has_shift, has_scale in _bools(3):
        for dt in ("*bf16", "*fp32"):
            yield ops._norm_fwd, {"X": dt, "Y": dt}, dict(
                CENTER=center, HAS_SHIFT=has_shift, HAS_SCALE=has_scale, SCALE_OFFSET=1.0 if center else 0.0,
                BLOCK_M=1, BLOCK_D=4096)
            if quick:
                break
        if quick:
            break
    for center, shift_shared, scale_shared, need_dx, need_dshift, need_dscale in _bools(6):
        yield ops._norm_bwd, {"X": "*bf16", "DY": "*bf16", "DX": "*bf16"}, dict(
            CENTER=center, HAS_SCALE=True, SCALE_OFFSET=1.0, SHIFT_SHARED=shift_shared, SCALE_SHARED=scale_shared,
            NEED_DX=need_dx, NEED_DSHIFT=need_dshift, NEED_DSCALE=need_dscale, BLOCK_M=32, BLOCK_D=128)
        if quick:
            break
    for sign in (1.0, -1.0):
        yield ops._rope, {"X": "*bf16", "OUT": "*bf16"}, dict(SIN_SIGN=sign, BLOCK_M=32, BLOCK_D=128)
    yield ops._gated_fwd, {"X": "*bf16", "Y": "*bf16", "OUT": "*bf16"}, dict(BLOCK_M=4, BLOCK_D=1024)
    for shared, need_dy, need_dgate in _bools(3):
        yield ops._gated_bwd, {"DO": "*bf16", "Y": "*bf16", "DY": "*bf16"}, dict(
            GATE_SHARED=shared, NEED_DY=need_dy, NEED_DGATE=need_dgate, BLOCK_M=4, BLOCK_D=1024)
        if quick:
            break


def compile_variant(kernel, pointers: dict[str, str], constexprs: dict[str, object], arch: int) -> int:
    """Compile one variant to a cubin for sm_<arch>; returns the cubin's size in bytes."""
    signature = {}
    for name in kernel.arg_names:
        if name in constexprs:
            signature[name] = "constexpr"
        elif name in _POINTERS:
            signature[name] = pointers.get(name, "*fp32")
        else:
            signature[name] = "fp32" if name == "eps" else "i32"
    compiled = triton.compile(ASTSource(kernel, signature, constexprs=constexprs),
                              target=GPUTarget("cuda", arch, 32), options={"num_warps": 8})
    return len(compiled.asm["cubin"])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--arch", type=int, default=90, help="compute capability, e.g. 90 (H100) or 80 (A100)")
    ap.add_argument("--quick", action="store_true", help="one variant per kernel")
    args = ap.parse_args()
    if triton.knobs.runtime.interpret:
        raise SystemExit("flowcore.kernels.aot: unset TRITON_INTERPRET; interpreted kernels cannot be compiled")
    count = 0
    for kernel, pointers, constexprs in variants(args.quick):
        compile_variant(kernel, pointers, constexprs, args.arch)
        count += 1
    print(f"compiled {count} kernel variants to sm_{args.arch} cubins")


if __name__ == "__main__":
    main()
