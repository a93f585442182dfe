"""Triton kernels for the backbone's fused elementwise ops, forward and backward.

Same names, signatures and semantics as ``flowcore.kernels.reference`` (which defines them);
``flowcore.kernels`` dispatches here for CUDA tensors. Statistics and arithmetic run in fp32
whatever the storage dtype (fp32 or bf16); outputs keep the input dtype.

Layout. Every op sees its input ``x [..., D]`` as rows ``[n0, n1, n2, D]`` (leading dims
padded with 1 or merged), read through its strides, so permuted views such as Flux's
``q [B, H, L, Dh]`` sliced out of a fused QKV projection are read in place. Only a
non-unit stride along D forces a copy. A program handles ``BLOCK_M`` rows of one group
``(i0, i1)``; outputs are contiguous. Groups and row tiles share grid axis 0 (program
``g * n_tiles + tile``), whose limit is 2^31 - 1: axes 1 and 2 stop at 65535, which a
``[B * L, 2, H, Dh]`` QK-norm input would pass.

Launch settings (rows per program, warps, programs per SM for the reducing backwards) live in
``LAUNCH``; ``benchmarks/kernels.py`` times the alternatives on a GPU before its timings.

Broadcast parameters (shift, scale, gate, weight) are read through their broadcast strides.
Their gradients are reduced inside the backward kernel over the rows of a group when the
parameter is shared by those rows (``[B, 1, D]`` against ``x [B, L, D]``): each program
writes one fp32 partial sum and torch adds the few partials. A per-row parameter
(``[B, L, D]``) gets its per-row gradient written directly. Any further broadcast (over
batch, say) is summed by ``Tensor.sum_to_size``.

On a CPU these kernels run only under ``TRITON_INTERPRET=1`` (set before triton is
imported); that is how the tests check them against the reference.
"""

from __future__ import annotations

import functools

import torch
import triton
import triton.language as tl

from flowcore.errors import DataError

_MAX_BLOCK_D = 65536

#: Per kernel: ``tile`` elements per program (rows per program = tile // BLOCK_D, at least 1),
#: ``warps``, ``programs_per_sm`` for the backwards that reduce
#: a shared parameter's gradient over rows (more programs, more partial sums).
LAUNCH: dict[str, dict[str, int]] = {  # chosen by benchmarks/kernels.py's sweep on an H200 (RESULTS.md)
    "norm_fwd": {"tile": 4096, "warps": 4},
    "norm_bwd": {"tile": 4096, "warps": 8, "programs_per_sm": 16},
    "rope": {"tile": 2048, "warps": 8},
    "gated_fwd": {"tile": 4096, "warps": 8},
    "gated_bwd": {"tile": 8192, "warps": 8, "programs_per_sm": 4},
}


# --------------------------------------------------------------------------- kernels


@triton.jit
def _norm_fwd(X, SHIFT, SCALE, Y, MEAN, RSTD,
              n1, n2, n_tiles, D,
              sx0, sx1, sx2, sh0, sh1, sh2, sc0, sc1, sc2,
              eps,
              CENTER: tl.constexpr, HAS_SHIFT: tl.constexpr, HAS_SCALE: tl.constexpr,
              SCALE_OFFSET: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_D: tl.constexpr):
    """y = x_hat * (SCALE_OFFSET + scale) + shift, x_hat = LayerNorm (CENTER) or RMSNorm of x."""
    pid = tl.program_id(0).to(tl.int64)
    g = pid // n_tiles
    i0 = g // n1
    i1 = g % n1
    rows = (pid % n_tiles) * BLOCK_M + tl.arange(0, BLOCK_M)
    cols = tl.arange(0, BLOCK_D)
    row_ok = rows < n2
    mask = row_ok[:, None] & (cols < D)[None, :]

    x = tl.load(X + (i0 * sx0 + i1 * sx1 + rows * sx2)[:, None] + cols[None, :], mask=mask, other=0.0).to(tl.float32)
    if CENTER:
        mean = tl.sum(x, 1) / D
        x = tl.where(mask, x - mean[:, None], 0.0)
        tl.store(MEAN + g * n2 + rows, mean, mask=row_ok)
    rstd = tl.rsqrt(tl.sum(x * x, 1) / D + eps)
    tl.store(RSTD + g * n2 + rows, rstd, mask=row_ok)
    y = x * rstd[:, None]
    if HAS_SCALE:
        scale = tl.load(SCALE + (i0 * sc0 + i1 * sc1 + rows * sc2)[:, None] + cols[None, :], mask=mask, other=0.0)
        y = y * (SCALE_OFFSET + scale.to(tl.float32))
    if HAS_SHIFT:
        shift = tl.load(SHIFT + (i0 * sh0 + i1 * sh1 + rows * sh2)[:, None] + cols[None, :], mask=mask, other=0.0)
        y = y + shift.to(tl.float32)
    tl.store(Y + (g * n2 + rows)[:, None] * D + cols[None, :], y.to(Y.dtype.element_ty), mask=mask)


@triton.jit
def _norm_bwd(X, SCALE, DY, MEAN, RSTD, DX, DSHIFT, DSCALE,
              n1, n2, D, n_chunks,
              sx0, sx1, sx2, sc0, sc1, sc2, sd0, sd1, sd2,
              CENTER: tl.constexpr, HAS_SCALE: tl.constexpr, SCALE_OFFSET: tl.constexpr,
              SHIFT_SHARED: tl.constexpr, SCALE_SHARED: tl.constexpr,
              NEED_DX: tl.constexpr, NEED_DSHIFT: tl.constexpr, NEED_DSCALE: tl.constexpr,
              BLOCK_M: tl.constexpr, BLOCK_D: tl.constexpr):
    """dx of the norm; dshift summed over the group's rows when shared; dscale summed or per row.

    Program g * n_chunks + c walks row tiles c, c + n_chunks, ... of group g and writes its
    partial sums to DSHIFT/DSCALE[g, c, :].
    """
    pid = tl.program_id(0).to(tl.int64)
    c = pid % n_chunks
    g = pid // n_chunks
    i0 = g // n1
    i1 = g % n1
    cols = tl.arange(0, BLOCK_D)
    col_ok = cols < D
    acc_shift = tl.zeros([BLOCK_D], dtype=tl.float32)
    acc_scale = tl.zeros([BLOCK_D], dtype=tl.float32)
    for start in range(c * BLOCK_M, n2, n_chunks * BLOCK_M):
        rows = start + tl.arange(0, BLOCK_M)
        row_ok = rows < n2
        mask = row_ok[:, None] & col_ok[None, :]
        x = tl.load(X + (i0 * sx0 + i1 * sx1 + rows * sx2)[:, None] + cols[None, :], mask=mask,
                    other=0.0).to(tl.float32)
        dy = tl.load(DY + (i0 * sd0 + i1 * sd1 + rows * sd2)[:, None] + cols[None, :], mask=mask,
                     other=0.0).to(tl.float32)
        rstd = tl.load(RSTD + g * n2 + rows, mask=row_ok, other=0.0)
        if CENTER:
            mean = tl.load(MEAN + g * n2 + rows, mask=row_ok, other=0.0)
            x = x - mean[:, None]
        x_hat = tl.where(mask, x * rstd[:, None], 0.0)
        if HAS_SCALE:
            scale = tl.load(SCALE + (i0 * sc0 + i1 * sc1 + rows * sc2)[:, None] + cols[None, :], mask=mask, other=0.0)
            dx_hat = dy * (SCALE_OFFSET + scale.to(tl.float32))
        else:
            dx_hat = dy
        if NEED_DX:
            dx = dx_hat - x_hat * (tl.sum(dx_hat * x_hat, 1) / D)[:, None]
            if CENTER:
                dx = dx - (tl.sum(dx_hat, 1) / D)[:, None]
            dx = dx * rstd[:, None]
            tl.store(DX + (g * n2 + rows)[:, None] * D + cols[None, :], dx.to(DX.dtype.element_ty), mask=mask)
        if NEED_DSHIFT:
            acc_shift += tl.sum(dy, 0)
        if NEED_DSCALE:
            if SCALE_SHARED:
                acc_scale += tl.sum(dy * x_hat, 0)
            else:
                tl.store(DSCALE + (g * n2 + rows)[:, None] * D + cols[None, :],
                         (dy * x_hat).to(DSCALE.dtype.element_ty), mask=mask)
    if NEED_DSHIFT:
        if SHIFT_SHARED:
            tl.store(DSHIFT + (g * n_chunks + c) * D + cols, acc_shift, mask=col_ok)
    if NEED_DSCALE:
        if SCALE_SHARED:
            tl.store(DSCALE + (g * n_chunks + c) * D + cols, acc_scale, mask=col_ok)


@triton.jit
def _rope(X, COS, SIN, OUT,
          n1, n2, n_tiles, D,
          sx0, sx1, sx2, sc0, sc1, ss0, ss1,
          SIN_SIGN: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_D: tl.constexpr):
    """Rotate interleaved pairs (x[2i], x[2i+1]) of x [B, H, L, D] by cos/sin [B, L, D/2].

    Rows are loaded and stored whole (vectorised) and split into the pairs in registers
    (reshape to [.., D/2, 2] + split; the pair sits in one thread, so this costs no shuffles).
    SIN_SIGN = -1 rotates by the opposite angle: the backward pass.
    """
    pid = tl.program_id(0).to(tl.int64)
    g = pid // n_tiles
    b = g // n1
    h = g % n1
    rows = (pid % n_tiles) * BLOCK_M + tl.arange(0, BLOCK_M)
    row_ok = rows < n2
    cols = tl.arange(0, BLOCK_D)
    pairs = tl.arange(0, BLOCK_D // 2)
    mask = row_ok[:, None] & (cols < D)[None, :]
    pair_mask = row_ok[:, None] & (pairs < D // 2)[None, :]
    x = tl.load(X + (b * sx0 + h * sx1 + rows * sx2)[:, None] + cols[None, :], mask=mask, other=0.0)
    x0, x1 = tl.split(tl.reshape(x.to(tl.float32), [BLOCK_M, BLOCK_D // 2, 2]))
    cos = tl.load(COS + (b * sc0 + rows * sc1)[:, None] + pairs[None, :], mask=pair_mask, other=0.0).to(tl.float32)
    sin = tl.load(SIN + (b * ss0 + rows * ss1)[:, None] + pairs[None, :], mask=pair_mask, other=0.0).to(tl.float32)
    sin = SIN_SIGN * sin
    out = tl.reshape(tl.join(x0 * cos - x1 * sin, x0 * sin + x1 * cos), [BLOCK_M, BLOCK_D])
    tl.store(OUT + (g * n2 + rows)[:, None] * D + cols[None, :], out.to(OUT.dtype.element_ty), mask=mask)


@triton.jit
def _gated_fwd(X, Y, GATE, OUT,
               n1, n2, n_tiles, D,
               sx0, sx1, sx2, sy0, sy1, sy2, sg0, sg1, sg2,
               BLOCK_M: tl.constexpr, BLOCK_D: tl.constexpr):
    """out = x + gate * y."""
    pid = tl.program_id(0).to(tl.int64)
    g = pid // n_tiles
    i0 = g // n1
    i1 = g % n1
    rows = (pid % n_tiles) * BLOCK_M + tl.arange(0, BLOCK_M)
    cols = tl.program_id(1) * BLOCK_D + tl.arange(0, BLOCK_D)
    mask = (rows < n2)[:, None] & (cols < D)[None, :]
    x = tl.load(X + (i0 * sx0 + i1 * sx1 + rows * sx2)[:, None] + cols[None, :], mask=mask, other=0.0)
    y = tl.load(Y + (i0 * sy0 + i1 * sy1 + rows * sy2)[:, None] + cols[None, :], mask=mask, other=0.0)
    gate = tl.load(GATE + (i0 * sg0 + i1 * sg1 + rows * sg2)[:, None] + cols[None, :], mask=mask, other=0.0)
    out = x.to(tl.float32) + gate.to(tl.float32) * y.to(tl.float32)
    tl.store(OUT + (g * n2 + rows)[:, None] * D + cols[None, :], out.to(OUT.dtype.element_ty), mask=mask)


@triton.jit
def _gated_bwd(DO, Y, GATE, DY, DGATE,
               n1, n2, D, n_chunks,
               so0, so1, so2, sy0, sy1, sy2, sg0, sg1, sg2,
               GATE_SHARED: tl.constexpr, NEED_DY: tl.constexpr, NEED_DGATE: tl.constexpr,
               BLOCK_M: tl.constexpr, BLOCK_D: tl.constexpr):
    """dy = dout * gate; dgate = dout * y, summed over the group's rows when the gate is shared."""
    pid = tl.program_id(0).to(tl.int64)
    c = pid % n_chunks
    g = pid // n_chunks
    i0 = g // n1
    i1 = g % n1
    cols = tl.program_id(1) * BLOCK_D + tl.arange(0, BLOCK_D)
    col_ok = cols < D
    acc = tl.zeros([BLOCK_D], dtype=tl.float32)
    for start in range(c * BLOCK_M, n2, n_chunks * BLOCK_M):
        rows = start + tl.arange(0, BLOCK_M)
        mask = (rows < n2)[:, None] & col_ok[None, :]
        do = tl.load(DO + (i0 * so0 + i1 * so1 + rows * so2)[:, None] + cols[None, :], mask=mask,
                     other=0.0).to(tl.float32)
        if NEED_DY:
            gate = tl.load(GATE + (i0 * sg0 + i1 * sg1 + rows * sg2)[:, None] + cols[None, :], mask=mask, other=0.0)
            tl.store(DY + (g * n2 + rows)[:, None] * D + cols[None, :],
                     (do * gate.to(tl.float32)).to(DY.dtype.element_ty), mask=mask)
        if NEED_DGATE:
            y = tl.load(Y + (i0 * sy0 + i1 * sy1 + rows * sy2)[:, None] + cols[None, :], mask=mask, other=0.0)
            dgate = do * y.to(tl.float32)
            if GATE_SHARED:
                acc += tl.sum(dgate, 0)
            else:
                tl.store(DGATE + (g * n2 + rows)[:, None] * D + cols[None, :], dgate.to(DGATE.dtype.element_ty),
                         mask=mask)
    if NEED_DGATE:
        if GATE_SHARED:
            tl.store(DGATE + (g * n_chunks + c) * D + cols, acc, mask=col_ok)


# --------------------------------------------------------------------------- launch helpers


def _check_device(x: torch.Tensor, op: str) -> None:
    if not x.is_cuda and not triton.knobs.runtime.interpret:
        raise DataError(
            f"flowcore.kernels.{op}: the Triton backend needs CUDA tensors, got a {x.device} tensor. "
            "Use flowcore.kernels.set_backend('auto') (or FLOWCORE_KERNELS=auto) to get the torch "
            "reference on CPU, or set TRITON_INTERPRET=1 before importing triton to run the kernels "
            "in Triton's interpreter."
        )


def _rows(t: torch.Tensor) -> torch.Tensor:
    """View t [..., D] as [n0, n1, n2, D] with unit stride along D; copies only when it must."""
    if t.dim() > 4:
        t = t.reshape(-1, *t.shape[-3:])
    while t.dim() < 4:
        t = t.unsqueeze(0)
    if t.stride(-1) != 1:
        t = t.contiguous()
    return t


class _Param:
    """How a parameter p broadcast against x [..., D] is read and how its gradient folds back.

    Holds no tensor, so it can ride on the autograd ctx; the rows view (``rows_of``) goes
    through ``save_for_backward``. ``shared``: one value per group (i0, i1), reused by all n2
    rows (p [B, 1, D] vs x [B, L, D]); its gradient is summed over the rows inside the kernel.
    """

    def __init__(self, p: torch.Tensor, x_shape: torch.Size) -> None:
        self.shape = p.shape
        self.dtype = p.dtype
        self.x_shape = x_shape
        n2 = x_shape[-2] if len(x_shape) > 1 else 1
        self.shared = n2 > 1 and (p.dim() < 2 or p.shape[-2] == 1)

    def rows_of(self, p: torch.Tensor) -> torch.Tensor:
        """p as rows [n0, n1, n2, D] matching x's, stride 0 where broadcast (nothing materialised)."""
        return _rows(p.expand(self.x_shape))

    def grad_buffer(self, n_groups: int, n_chunks: int, device: torch.device) -> torch.Tensor:
        """Partial sums [groups, chunks, D] (fp32) when shared; otherwise one gradient row per x row."""
        if self.shared:
            return torch.empty(n_groups, n_chunks, self.x_shape[-1], device=device, dtype=torch.float32)
        # Per-row gradients land in p's dtype when nothing is left to sum, else in fp32 for the sum.
        dtype = self.dtype if self.shape == self.x_shape else torch.float32
        return torch.empty(self.x_shape, device=device, dtype=dtype)

    def fold(self, grad: torch.Tensor) -> torch.Tensor:
        """The buffer written by a backward kernel -> the gradient of p, shape and dtype of p."""
        if self.shared:
            grad = grad.sum(1).reshape(*self.x_shape[:-2], 1, self.x_shape[-1])
        else:
            grad = grad.reshape(self.x_shape)
        return grad.sum_to_size(self.shape).to(self.dtype)


def _block_d(d: int, op: str) -> int:
    block = triton.next_power_of_2(d)
    if block > _MAX_BLOCK_D:
        raise DataError(f"flowcore.kernels.{op}: last dim {d} is over the {_MAX_BLOCK_D} a Triton row kernel holds")
    return block


def _block_m(n2: int, block_d: int, kernel: str) -> int:
    return max(1, min(triton.next_power_of_2(n2), LAUNCH[kernel]["tile"] // block_d))


@functools.cache
def _sm_count(device: torch.device) -> int:
    return torch.cuda.get_device_properties(device).multi_processor_count


def _n_chunks(device: torch.device, n_groups: int, n_tiles: int, kernel: str) -> int:
    """Programs per group for a reducing backward: enough to fill the GPU, few enough to keep partials small.

    In the CPU interpreter, where each program costs, two programs in all.
    """
    target = LAUNCH[kernel]["programs_per_sm"] * _sm_count(device) if device.type == "cuda" else 2
    return max(1, min(n_tiles, triton.cdiv(target, n_groups)))


def _strides3(t: torch.Tensor) -> tuple[int, int, int]:
    return t.stride(0), t.stride(1), t.stride(2)


# --------------------------------------------------------------------------- norms


class _Norm(torch.autograd.Function):
    """x_hat * (scale_offset + scale) + shift with x_hat the LayerNorm (centered) or RMSNorm of x."""

    @staticmethod
    def forward(ctx, x, shift, scale, eps: float, centered: bool, scale_offset: float, op: str):
        _check_device(x, op)
        x4 = _rows(x)
        n0, n1, n2, d = x4.shape
        p_shift = _Param(shift, x.shape) if shift is not None else None
        p_scale = _Param(scale, x.shape) if scale is not None else None
        shift4 = p_shift.rows_of(shift) if p_shift else x4
        scale4 = p_scale.rows_of(scale) if p_scale else x4
        block_d = _block_d(d, op)
        block_m = _block_m(n2, block_d, "norm_fwd")
        n_tiles = triton.cdiv(n2, block_m)
        y = torch.empty(x.shape, device=x.device, dtype=x.dtype)
        mean = torch.empty(n0 * n1 * n2, device=x.device, dtype=torch.float32) if centered else None
        rstd = torch.empty(n0 * n1 * n2, device=x.device, dtype=torch.float32)
        _norm_fwd[(n_tiles * n0 * n1,)](
            x4, shift4, scale4, y, mean if centered else rstd, rstd,
            n1, n2, n_tiles, d, *_strides3(x4), *_strides3(shift4), *_strides3(scale4),
            eps,
            CENTER=centered, HAS_SHIFT=p_shift is not None, HAS_SCALE=p_scale is not None,
            SCALE_OFFSET=scale_offset, BLOCK_M=block_m, BLOCK_D=block_d,
            num_warps=LAUNCH["norm_fwd"]["warps"],
        )
        ctx.save_for_backward(x4, scale4 if p_scale else None, mean, rstd)
        ctx.p_shift, ctx.p_scale = p_shift, p_scale
        ctx.centered, ctx.scale_offset, ctx.op = centered, scale_offset, op
        return y

    @staticmethod
    def backward(ctx, dy):
        x4, scale4, mean, rstd = ctx.saved_tensors
        p_shift, p_scale = ctx.p_shift, ctx.p_scale
        need_dx, need_dshift, need_dscale = ctx.needs_input_grad[:3]
        dy4 = _rows(dy)
        n0, n1, n2, d = x4.shape
        n_groups = n0 * n1
        block_d = _block_d(d, ctx.op)
        block_m = _block_m(n2, block_d, "norm_bwd")
        # A per-row shift gradient is dy itself: only a shared one needs the kernel's sums.
        kernel_dshift = need_dshift and p_shift.shared
        n_tiles = triton.cdiv(n2, block_m)
        reducing = kernel_dshift or (need_dscale and p_scale.shared)
        n_chunks = _n_chunks(x4.device, n_groups, n_tiles, "norm_bwd") if reducing else n_tiles
        dx = torch.empty(dy.shape, device=dy.device, dtype=x4.dtype) if need_dx else None
        dshift = p_shift.grad_buffer(n_groups, n_chunks, dy.device) if kernel_dshift else None
        dscale = p_scale.grad_buffer(n_groups, n_chunks, dy.device) if need_dscale else None
        if need_dx or kernel_dshift or need_dscale:
            _norm_bwd[(n_chunks * n_groups,)](
                x4, scale4 if scale4 is not None else x4, dy4, mean if mean is not None else rstd, rstd,
                dx if need_dx else x4, dshift if kernel_dshift else x4, dscale if need_dscale else x4,
                n1, n2, d, n_chunks,
                *_strides3(x4), *_strides3(scale4 if scale4 is not None else x4), *_strides3(dy4),
                CENTER=ctx.centered, HAS_SCALE=p_scale is not None, SCALE_OFFSET=ctx.scale_offset,
                SHIFT_SHARED=kernel_dshift, SCALE_SHARED=bool(p_scale and p_scale.shared),
                NEED_DX=need_dx, NEED_DSHIFT=kernel_dshift, NEED_DSCALE=need_dscale,
                BLOCK_M=block_m, BLOCK_D=block_d, num_warps=LAUNCH["norm_bwd"]["warps"],
            )
        if need_dshift:
            dshift = p_shift.fold(dshift if kernel_dshift else dy)
        if need_dscale:
            dscale = p_scale.fold(dscale)
        return dx, dshift, dscale, None, None, None, None


def modulated_layer_norm(x: torch.Tensor, shift: torch.Tensor, scale: torch.Tensor, eps: float = 1e-6) -> torch.Tensor:
    """adaLN: LayerNorm(x) without affine, then ``x_hat * (1 + scale) + shift``.

    x [..., D]; shift, scale broadcast against x ([B, 1, D] or [B, L, D] for x [B, L, D]).
    """
    return _Norm.apply(x, shift, scale, eps, True, 1.0, "modulated_layer_norm")


def rms_norm(x: torch.Tensor, weight: torch.Tensor | None = None, eps: float = 1e-6) -> torch.Tensor:
    """RMSNorm over the last dim (QK norm): ``x / rms(x) * weight``. x [..., D], weight [D]."""
    return _Norm.apply(x, None, weight, eps, False, 0.0, "rms_norm")


# --------------------------------------------------------------------------- rope


def _launch_rope(x4: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor, sin_sign: float) -> torch.Tensor:
    b, h, l, dh = x4.shape
    out = torch.empty(x4.shape, device=x4.device, dtype=x4.dtype)
    block_d = _block_d(dh, "apply_rope")
    block_m = _block_m(l, block_d, "rope")
    n_tiles = triton.cdiv(l, block_m)
    _rope[(n_tiles * b * h,)](
        x4, cos, sin, out, h, l, n_tiles, dh, *_strides3(x4), cos.stride(0), cos.stride(1), sin.stride(0),
        sin.stride(1), SIN_SIGN=sin_sign, BLOCK_M=block_m, BLOCK_D=block_d,
        num_warps=LAUNCH["rope"]["warps"],
    )
    return out


def _angles(t: torch.Tensor, x: torch.Tensor, name: str) -> torch.Tensor:
    """cos or sin [B or 1, L or 1, Dh/2] -> a [B, L, Dh/2] view with unit stride in the last dim."""
    b, _, l, dh = x.shape
    if t.dim() != 3:
        raise DataError(f"flowcore.kernels.apply_rope: {name} must be [B, L, Dh/2] = [{b}, {l}, {dh // 2}], "
                        f"got {list(t.shape)}")
    t = t.expand(b, l, dh // 2)
    return t if t.stride(-1) == 1 else t.contiguous()


class _Rope(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, cos, sin):
        _check_device(x, "apply_rope")
        if x.dim() != 4 or x.shape[-1] % 2:
            raise DataError(f"flowcore.kernels.apply_rope: x must be [B, H, L, Dh] with Dh even, got {list(x.shape)}")
        x4 = x if x.stride(-1) == 1 else x.contiguous()
        cos3, sin3 = _angles(cos, x, "cos"), _angles(sin, x, "sin")
        ctx.save_for_backward(x4, cos3, sin3)
        ctx.cos_shape, ctx.sin_shape = cos.shape, sin.shape
        return _launch_rope(x4, cos3, sin3, 1.0)

    @staticmethod
    def backward(ctx, dy):
        x4, cos3, sin3 = ctx.saved_tensors
        need_dx, need_dcos, need_dsin = ctx.needs_input_grad
        dy4 = dy if dy.stride(-1) == 1 else dy.contiguous()
        # The rotation is orthogonal: its transpose rotates by the opposite angle.
        dx = _launch_rope(dy4, cos3, sin3, -1.0) if need_dx else None
        dcos = dsin = None
        if need_dcos or need_dsin:
            # Angles come from positions and rarely carry gradients: plain torch is enough here.
            x0, x1 = x4.float().unflatten(-1, (-1, 2)).unbind(-1)
            d0, d1 = dy4.float().unflatten(-1, (-1, 2)).unbind(-1)
            if need_dcos:
                dcos = (d0 * x0 + d1 * x1).sum(1).sum_to_size(ctx.cos_shape).to(cos3.dtype)
            if need_dsin:
                dsin = (d1 * x0 - d0 * x1).sum(1).sum_to_size(ctx.sin_shape).to(sin3.dtype)
        return dx, dcos, dsin


def apply_rope(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotary embedding on interleaved pairs (Flux convention). x [B, H, L, Dh]; cos, sin [B, L, Dh/2]."""
    return _Rope.apply(x, cos, sin)


# --------------------------------------------------------------------------- gated residual


def _elementwise_blocks(n2: int, d: int, kernel: str) -> tuple[int, int]:
    block_d = min(triton.next_power_of_2(d), 1024)
    return _block_m(n2, block_d, kernel), block_d


class _GatedResidual(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, y, gate):
        _check_device(x, "gated_residual")
        x4, y4 = _rows(x), _rows(y)
        p_gate = _Param(gate, x.shape)
        gate4 = p_gate.rows_of(gate)
        n0, n1, n2, d = x4.shape
        out_dtype = torch.promote_types(x.dtype, torch.promote_types(y.dtype, gate.dtype))
        out = torch.empty(x.shape, device=x.device, dtype=out_dtype)
        block_m, block_d = _elementwise_blocks(n2, d, "gated_fwd")
        n_tiles = triton.cdiv(n2, block_m)
        _gated_fwd[(n_tiles * n0 * n1, triton.cdiv(d, block_d))](
            x4, y4, gate4, out, n1, n2, n_tiles, d, *_strides3(x4), *_strides3(y4), *_strides3(gate4),
            BLOCK_M=block_m, BLOCK_D=block_d, num_warps=LAUNCH["gated_fwd"]["warps"],
        )
        ctx.save_for_backward(y4, gate4)
        ctx.p_gate, ctx.x_dtype = p_gate, x.dtype
        return out

    @staticmethod
    def backward(ctx, dout):
        y4, gate4 = ctx.saved_tensors
        p_gate = ctx.p_gate
        need_dx, need_dy, need_dgate = ctx.needs_input_grad
        do4 = _rows(dout)
        n0, n1, n2, d = y4.shape
        block_m, block_d = _elementwise_blocks(n2, d, "gated_bwd")
        n_tiles = triton.cdiv(n2, block_m)
        n_chunks = _n_chunks(y4.device, n0 * n1, n_tiles, "gated_bwd") if need_dgate and p_gate.shared else n_tiles
        dy = torch.empty(dout.shape, device=dout.device, dtype=y4.dtype) if need_dy else None
        dgate = p_gate.grad_buffer(n0 * n1, n_chunks, dout.device) if need_dgate else None
        if need_dy or need_dgate:
            _gated_bwd[(n_chunks * n0 * n1, triton.cdiv(d, block_d))](
                do4, y4, gate4, dy if need_dy else do4, dgate if need_dgate else do4,
                n1, n2, d, n_chunks, *_strides3(do4), *_strides3(y4), *_strides3(gate4),
                GATE_SHARED=p_gate.shared, NEED_DY=need_dy, NEED_DGATE=need_dgate,
                BLOCK_M=block_m, BLOCK_D=block_d, num_warps=LAUNCH["gated_bwd"]["warps"],
            )
        dx = dout.to(ctx.x_dtype) if need_dx else None
        return dx, dy, p_gate.fold(dgate) if need_dgate else None


def gated_residual(x: torch.Tensor, y: torch.Tensor, gate: torch.Tensor) -> torch.Tensor:
    """adaLN-Zero residual ``x + gate * y``. x, y [..., D] (same shape); gate broadcasts against x."""
    if y.shape != x.shape:
        raise DataError(f"flowcore.kernels.gated_residual: y {list(y.shape)} must have the shape of x {list(x.shape)}")
    return _GatedResidual.apply(x, y, gate)
