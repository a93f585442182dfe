"""The Triton kernels against their torch references, forward and backward, on CPU.

Run by ``tests/test_kernels.py`` in a child pytest with ``TRITON_INTERPRET=1``: Triton reads
that variable when its own library and our kernels are decorated, i.e. when ``triton`` is
first imported, and torch imports triton early (``torch.utils.flop_counter`` does), so it
cannot be switched on inside a test session without leaking into every other test. Run it
alone with ``TRITON_INTERPRET=1 python -m pytest tests/kernels_interpreted.py``.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence

import pytest
import torch

if os.environ.get("TRITON_INTERPRET") != "1":
    pytest.skip("needs TRITON_INTERPRET=1 before triton is imported; tests/test_kernels.py runs this file",
                allow_module_level=True)

import flowcore.kernels as kernels  # noqa: E402
from flowcore.errors import DataError  # noqa: E402
from flowcore.kernels import reference, triton_ops  # noqa: E402
from flowcore.nn.tiny import tiny_transformer  # noqa: E402

# Tolerances relative to the largest reference value: fp32 differs only in summation order,
# bf16 by a rounding or two of the output.
_TOL = {torch.float32: 2e-5, torch.bfloat16: 2e-2}


@pytest.fixture
def ops():
    return triton_ops


def _close(actual: torch.Tensor, expected: torch.Tensor, dtype: torch.dtype, what: str) -> None:
    """Equal up to the rounding of the case's dtype or the tensor's own, whichever is coarser."""
    assert actual.shape == expected.shape, what
    assert actual.dtype == expected.dtype, what
    rtol = max(_TOL[dtype], _TOL[actual.dtype])
    atol = rtol * max(1.0, expected.float().abs().max().item())
    torch.testing.assert_close(actual.float(), expected.float(), rtol=rtol, atol=atol, msg=lambda m: f"{what}: {m}")


def _check(fn: Callable, ref: Callable, inputs: Sequence[torch.Tensor | None], dtype: torch.dtype) -> None:
    """fn(*inputs) matches ref(*inputs) in value and in the gradient of every tensor input.

    Leaves are made by ``detach`` (not ``clone``, which would make strided views contiguous).
    """
    ours = [t.detach().requires_grad_() if t is not None else None for t in inputs]
    theirs = [t.detach().requires_grad_() if t is not None else None for t in inputs]
    out, expected = fn(*ours), ref(*theirs)
    _close(out, expected, dtype, "output")
    upstream = torch.randn(expected.shape, generator=torch.Generator().manual_seed(1)).to(expected.dtype)
    out.backward(upstream)
    expected.backward(upstream)
    for i, (a, b) in enumerate(zip(ours, theirs)):
        if a is not None:
            _close(a.grad, b.grad, dtype, f"gradient of input {i}")


def _randn(*shape: int, dtype: torch.dtype = torch.float32, seed: int = 0) -> torch.Tensor:
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed)).to(dtype)


def _strided(t: torch.Tensor) -> torch.Tensor:
    """The same values as a non-contiguous view: every other element of a wider buffer."""
    wide = torch.zeros(*t.shape[:-1], 2 * t.shape[-1], dtype=t.dtype)
    wide[..., ::2] = t
    return wide[..., ::2]


DTYPES = [torch.float32, torch.bfloat16]

# x shape, shift shape, scale shape: per-sample [B, 1, D], per-token [B, L, D], mixed, [D],
# 2-D and 4-D x, odd D, and a wide D that takes several row tiles per program (D=1000, L=13).
MODULATION_SHAPES = [
    ((2, 5, 37), (2, 1, 37), (2, 1, 37)),
    ((2, 5, 37), (2, 5, 37), (2, 5, 37)),
    ((2, 5, 37), (2, 5, 37), (2, 1, 37)),
    ((3, 4, 1), (1, 4, 1), (3, 1, 1)),
    ((7, 33), (33,), (1, 33)),
    ((2, 3, 4, 17), (2, 3, 1, 17), (17,)),
    ((1, 13, 1000), (1, 1, 1000), (1, 13, 1000)),
    ((2, 2, 2, 3, 9), (2, 1, 2, 1, 9), (2, 2, 2, 3, 9)),
]


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("x_shape,shift_shape,scale_shape", MODULATION_SHAPES, ids=str)
def test_modulated_layer_norm_matches_reference(ops, dtype, x_shape, shift_shape, scale_shape):
    x = _randn(*x_shape, dtype=dtype) * 3 + 1
    shift, scale = _randn(*shift_shape, dtype=dtype, seed=1), _randn(*scale_shape, dtype=dtype, seed=2)
    _check(ops.modulated_layer_norm, reference.modulated_layer_norm, [x, shift, scale], dtype)


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
def test_modulated_layer_norm_on_strided_inputs(ops, dtype):
    x = _randn(4, 3, 19, dtype=dtype).transpose(0, 1)  # [3, 4, 19], rows not in memory order
    shift = _strided(_randn(3, 1, 19, dtype=dtype, seed=1))
    scale = _randn(19, 3, dtype=dtype, seed=2).t().unsqueeze(1)  # [3, 1, 19], stride 3 along D
    _check(ops.modulated_layer_norm, reference.modulated_layer_norm, [_strided(x), shift, scale], dtype)
    _check(ops.modulated_layer_norm, reference.modulated_layer_norm, [x, shift, scale], dtype)


def test_modulated_layer_norm_bf16_activations_fp32_modulation(ops):
    """Under autocast the residual stream and the modulation can differ in dtype; x's wins."""
    x = _randn(2, 6, 24, dtype=torch.bfloat16)
    shift, scale = _randn(2, 1, 24, seed=1), _randn(2, 1, 24, seed=2)
    _check(ops.modulated_layer_norm, reference.modulated_layer_norm, [x, shift, scale], torch.bfloat16)


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("with_weight", [True, False], ids=["weight", "no-weight"])
@pytest.mark.parametrize("d", [24, 33])
def test_rms_norm_matches_reference(ops, dtype, with_weight, d):
    # q [B, H, L, Dh] as Flux slices it out of a fused QKV projection: a permuted view.
    qkv = _randn(2, 7, 3, 3, d, dtype=dtype)
    q = qkv.permute(2, 0, 3, 1, 4)[0]
    weight = _randn(d, dtype=dtype, seed=1) if with_weight else None
    _check(ops.rms_norm, reference.rms_norm, [q, weight], dtype)
    _check(ops.rms_norm, reference.rms_norm, [_randn(5, d, dtype=dtype), weight], dtype)


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
def test_rms_norm_of_queries_and_keys_together(ops, dtype):
    """The backbone's QK norm: qk [B, L, 2, H, Dh] sliced from a fused QKV projection, one
    scale per q and k stacked as [2, 1, Dh]."""
    qk = _randn(2, 7, 3, 3, 24, dtype=dtype)[:, :, :2]
    _check(ops.rms_norm, reference.rms_norm, [qk, _randn(2, 1, 24, dtype=dtype, seed=1)], dtype)


def test_rms_norm_on_a_non_unit_stride_last_dim(ops):
    x = _strided(_randn(2, 3, 5, 16))
    _check(ops.rms_norm, reference.rms_norm, [x, _randn(16, seed=1)], torch.float32)


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("angle_batch", [2, 1])
def test_apply_rope_matches_reference(ops, dtype, angle_batch):
    qkv = _randn(2, 9, 3, 3, 10, dtype=dtype)
    q = qkv.permute(2, 0, 3, 1, 4)[0]  # [2, 3, 9, 10], strided
    angles = _randn(angle_batch, 9, 5, seed=1)
    cos, sin = angles.cos(), angles.sin()
    _check(ops.apply_rope, reference.apply_rope, [q, cos, sin], dtype)
    _check(ops.apply_rope, reference.apply_rope, [_strided(q.contiguous()), cos, sin], dtype)


def test_apply_rope_is_a_rotation(ops):
    """Rotating by theta and then by -theta gives x back; the norm of each pair is kept."""
    x = _randn(1, 2, 5, 8)
    angles = _randn(1, 5, 4, seed=1)
    y = ops.apply_rope(x, angles.cos(), angles.sin())
    torch.testing.assert_close(ops.apply_rope(y, angles.cos(), -angles.sin()), x)
    torch.testing.assert_close(y.unflatten(-1, (-1, 2)).norm(dim=-1), x.unflatten(-1, (-1, 2)).norm(dim=-1))


def test_apply_rope_rejects_a_malformed_x(ops):
    with pytest.raises(DataError, match="Dh even"):
        ops.apply_rope(_randn(1, 2, 5, 7), torch.ones(1, 5, 3), torch.zeros(1, 5, 3))


GATE_SHAPES = [(2, 1, 37), (2, 5, 37), (37,), (1, 5, 37)]


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("gate_shape", GATE_SHAPES, ids=str)
def test_gated_residual_matches_reference(ops, dtype, gate_shape):
    x, y = _randn(2, 5, 37, dtype=dtype), _randn(2, 5, 37, dtype=dtype, seed=1)
    gate = _randn(*gate_shape, dtype=dtype, seed=2)
    _check(ops.gated_residual, reference.gated_residual, [x, y, gate], dtype)


def test_gated_residual_on_strided_and_mixed_dtype_inputs(ops):
    x = _randn(5, 2, 1100).transpose(0, 1)  # wider than one column block
    y = _strided(_randn(2, 5, 1100, dtype=torch.bfloat16, seed=1))
    gate = _randn(2, 1, 1100, seed=2)
    _check(ops.gated_residual, reference.gated_residual, [x, y, gate], torch.float32)
    x16 = _randn(2, 5, 12, dtype=torch.bfloat16)
    _check(ops.gated_residual, reference.gated_residual, [x16, x16 * 2, _randn(2, 1, 12, seed=3)], torch.bfloat16)


def test_no_tokens_give_empty_outputs_and_zero_parameter_gradients(ops):
    x = torch.randn(2, 0, 8, requires_grad=True)
    shift, scale = torch.randn(2, 1, 8, requires_grad=True), torch.randn(2, 1, 8, requires_grad=True)
    out = ops.modulated_layer_norm(x, shift, scale)
    out = ops.gated_residual(out, out, scale)
    assert out.shape == (2, 0, 8)
    out.sum().backward()
    assert shift.grad.abs().sum() == 0 and scale.grad.abs().sum() == 0


def test_modulation_gradients_without_an_x_gradient(ops):
    x = _randn(2, 5, 8)
    shift, scale = _randn(2, 1, 8, seed=1), _randn(2, 5, 8, seed=2)
    _check(lambda s, c: ops.modulated_layer_norm(x, s, c), lambda s, c: reference.modulated_layer_norm(x, s, c),
           [shift, scale], torch.float32)


def test_a_per_token_shift_gradient_alone(ops):
    x, scale = _randn(2, 5, 8), _randn(2, 1, 8, seed=2)
    _check(lambda s: ops.modulated_layer_norm(x, s, scale), lambda s: reference.modulated_layer_norm(x, s, scale),
           [_randn(2, 5, 8, seed=1)], torch.float32)


def test_only_the_gradients_asked_for_are_computed(ops):
    x = _randn(2, 5, 8).requires_grad_()
    shift, scale = _randn(2, 1, 8, seed=1), _randn(2, 1, 8, seed=2).requires_grad_()
    out = ops.modulated_layer_norm(x, shift, scale)
    out.sum().backward()
    assert shift.grad is None and x.grad is not None and scale.grad is not None
    expected = torch.autograd.grad(reference.modulated_layer_norm(x, shift, scale).sum(), scale)[0]
    torch.testing.assert_close(scale.grad, expected)


# --------------------------------------------------------------------------- dispatch


@pytest.fixture
def backend():
    previous = kernels.get_backend()
    yield kernels.set_backend
    kernels.set_backend(previous)


_CALLS = {
    "modulated_layer_norm": lambda k: k.modulated_layer_norm(_randn(2, 3, 8), _randn(2, 1, 8), _randn(2, 1, 8)),
    "rms_norm": lambda k: k.rms_norm(_randn(2, 3, 8), _randn(8)),
    "apply_rope": lambda k: k.apply_rope(_randn(1, 2, 3, 8), torch.ones(1, 3, 4), torch.zeros(1, 3, 4)),
    "gated_residual": lambda k: k.gated_residual(_randn(2, 3, 8), _randn(2, 3, 8), _randn(2, 1, 8)),
}


@pytest.mark.parametrize("name", sorted(_CALLS))
@pytest.mark.parametrize("choice,expected", [("auto", "reference"), ("reference", "reference"), ("triton", "triton")])
def test_dispatch_picks_the_backend(ops, backend, monkeypatch, name, choice, expected):
    """On CPU tensors "auto" means the reference; "triton" forces the kernels."""
    used = []
    for module, label in ((ops, "triton"), (reference, "reference")):
        real = getattr(module, name)
        monkeypatch.setattr(module, name,
                            lambda *a, _real=real, _label=label, **k: used.append(_label) or _real(*a, **k))
    backend(choice)
    _CALLS[name](kernels)
    assert used == [expected]


@pytest.mark.parametrize("checkpointing", [False, True], ids=["stored", "recomputed"])
def test_backbone_with_the_triton_kernels_matches_the_reference_path(ops, backend, checkpointing):
    """Loss and every parameter gradient of a tiny FlowTransformer, Triton ops vs reference ops
    (also with activation checkpointing, which recomputes the kernels' saved tensors)."""
    model, tokens, t = tiny_transformer(checkpointing)

    def loss_and_grads(choice):
        backend(choice)
        model.zero_grad()
        loss = sum(v.square().mean() for v in model(tokens, t).values())
        loss.backward()
        return loss.detach(), [p.grad.clone() for p in model.parameters()]

    ref_loss, ref_grads = loss_and_grads("reference")
    loss, grads = loss_and_grads("triton")
    torch.testing.assert_close(loss, ref_loss)
    for got, want in zip(grads, ref_grads):
        torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-4 * want.abs().max().item())


@pytest.mark.parametrize("settings", [
    {"tile": 64, "warps": 4, "programs_per_sm": 4},
    {"tile": 64, "warps": 8, "programs_per_sm": 16},
    {"tile": 8192, "warps": 16, "programs_per_sm": 16},
])
def test_every_launch_setting_gives_the_reference(ops, settings, monkeypatch):
    """Rows per program and warps change how the work is split, never the result.
    A 64-element tile makes each reducing backward program loop over ten row tiles."""
    launch = {name: {k: v for k, v in settings.items() if k in current} for name, current in ops.LAUNCH.items()}
    monkeypatch.setattr(ops, "LAUNCH", launch)
    g = torch.Generator().manual_seed(3)
    x = torch.randn(1, 37, 32, generator=g)
    _check(ops.modulated_layer_norm, reference.modulated_layer_norm,
           [x, torch.randn(1, 1, 32, generator=g), torch.randn(1, 1, 32, generator=g)], torch.float32)
    _check(ops.rms_norm, reference.rms_norm, [x, torch.randn(32, generator=g)], torch.float32)
    _check(ops.gated_residual, reference.gated_residual,
           [x, torch.randn(1, 37, 32, generator=g), torch.randn(1, 1, 32, generator=g)], torch.float32)
