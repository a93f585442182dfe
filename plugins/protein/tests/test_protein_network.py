"""FrameNet, the auxiliary backbone losses and cropped windows, against what they promise."""

import math

import pytest
import torch

from flowcore.errors import ConfigError, DataError
from flowcore.flow import so3
from flowcore.modality import Tokens
from flowcore_protein.data import ideal
from flowcore_protein.modality import Protein
from flowcore_protein.network import FrameNet


def _tokens(samples, modality=None):
    modality = modality or Protein()
    return modality.tokenizer.encode(modality.collate(samples))


def _busy_net(seed=0, **options):
    """A FrameNet whose zero-initialised gates and head are given random weights, so it computes something."""
    torch.manual_seed(seed)
    net = FrameNet({"protein": (50, 7)}, hidden=32, depth=2, heads=2, **options)
    for name, p in net.named_parameters():
        if "modulation" in name or name.startswith(("head", "updates")):
            torch.nn.init.normal_(p, std=0.1)
    return net


def _noisy(tokens, seed=0):
    path = Protein().path
    g = torch.Generator().manual_seed(seed)
    eps = path.masked_prior(tokens.values.shape, tokens.mask, generator=g)
    t = torch.rand(tokens.batch_size, generator=g)
    return tokens.with_values(path.interpolate(tokens.values, eps, t).x_t), t


@torch.no_grad()
@pytest.mark.parametrize("options", [{}, {"attention_sink": True}, {"position_updates": True}])
def test_turning_the_input_turns_the_velocity(ideal_samples, options):
    """Rotating every frame and CA by g: the CA velocity turns by g, the quaternion velocity is g v."""
    net = _busy_net(**options)
    x_t, t = _noisy(_tokens(ideal_samples[:4]))
    out = net({"protein": x_t}, {"protein": t})["protein"]
    g = so3.uniform((1,), generator=torch.Generator().manual_seed(3)).expand(*x_t.values.shape[:2], 4)
    turned_q = so3.multiply(g, x_t.values[..., :4])
    sign = torch.where(turned_q[..., :1] < 0, -1.0, 1.0)  # states are canonical (w >= 0)
    r = so3.to_matrix(g[0, 0])
    turned = x_t.with_values(torch.cat([sign * turned_q, x_t.values[..., 4:] @ r.T], -1))
    out2 = net({"protein": turned}, {"protein": t})["protein"]
    assert out.abs().max() > 0.01
    assert torch.allclose(out2[..., 4:], out[..., 4:] @ r.T, atol=1e-4)
    assert torch.allclose(out2[..., :4], sign * so3.multiply(g, out[..., :4]), atol=1e-4)


@torch.no_grad()
def test_velocity_is_tangent_padding_free_and_zero_at_init(ideal_samples):
    net = _busy_net()
    short, long_ = sorted(ideal_samples, key=len)[::len(ideal_samples) - 1]
    assert len(short) < len(long_)
    x_t, t = _noisy(_tokens([short, long_]))
    out = net({"protein": x_t}, {"protein": t})["protein"]
    q = x_t.values[..., :4]
    assert float((out[..., :4] * q).sum(-1).abs().max()) < 1e-5  # tangent to S^3 at the state
    assert float(out[~x_t.mask].abs().max()) == 0.0
    n = len(short)
    alone = Tokens(x_t.values[:1, :n], x_t.positions[:1, :n], x_t.mask[:1, :n])
    assert torch.allclose(net({"protein": alone}, {"protein": t[:1]})["protein"][0], out[0, :n], atol=1e-5)
    fresh = FrameNet({"protein": (50, 7)}, hidden=32, depth=1, heads=2)
    assert float(fresh({"protein": x_t}, {"protein": t})["protein"].abs().max()) == 0.0


@torch.no_grad()
def test_attention_sink_sums_over_the_close_residues_only():
    """With a sink of logit b, a head that sees one residue j at logit z (all others at -inf) gives
    weight sigmoid(z - b) to j: the point output is sigmoid(z - b) (x_j - x_i), not x_j - x_i; a
    sink at -inf is the plain softmax (same output as a net without one)."""
    from flowcore_protein.network import GeometricAttention

    torch.manual_seed(0)
    attn = GeometricAttention(hidden=8, heads=1, max_offset=4, sink=True)
    torch.nn.init.zeros_(attn.qkv.weight)  # query-key logits 0: the biases alone decide
    torch.nn.init.zeros_(attn.qkv.bias)
    length = 3
    x = torch.tensor([[[0.0, 0.0, 0.0], [1.0, 0.0, 0.0], [0.0, 5.0, 0.0]]])
    rotation = torch.eye(3).expand(1, length, 3, 3)
    d2 = torch.cdist(x, x) ** 2
    key_bias = torch.zeros(1, 1, 1, length)
    with torch.no_grad():
        attn.offset_bias.zero_()
        attn.distance_weight.fill_(math.log(math.expm1(2.0)))  # softplus 2: residue 2 (d2 >= 25) is out of reach
        attn.sink.fill_(1.0)
    captured = {}
    attn.out.register_forward_hook(lambda m, args, out: captured.update(inp=args[0]))
    attn(torch.zeros(1, length, 8), x, rotation, d2, key_bias)
    points = captured["inp"][0, :, 8:11]  # residue i's point output (one head)
    # residue 0: logits 0 (itself), -2 (residue 1), -50 (residue 2), sink 1: e^-2 / (1 + e^-2 + e) = 0.035
    w_one = math.exp(-2) / (1 + math.exp(-2) + math.exp(-50) + math.exp(1))
    assert torch.allclose(points[0], torch.tensor([w_one, 0.0, 0.0]), atol=1e-6)
    # residue 2 alone: itself at 0 against the sink: zero offset either way
    assert torch.allclose(points[2], torch.zeros(3), atol=1e-6)
    # with the sink far below every residue the head is the plain softmax
    with torch.no_grad():
        attn.sink.fill_(-1e4)
    attn(torch.zeros(1, length, 8), x, rotation, d2, key_bias)
    plain = GeometricAttention(hidden=8, heads=1, max_offset=4)
    plain.load_state_dict({k: v for k, v in attn.state_dict().items() if k != "sink"})
    with_sink = captured["inp"].clone()
    plain.out.register_forward_hook(lambda m, args, out: captured.update(inp=args[0]))
    plain(torch.zeros(1, length, 8), x, rotation, d2, key_bias)
    assert torch.allclose(with_sink, captured["inp"], atol=1e-6)


@torch.no_grad()
def test_position_updates_move_the_distances_the_next_block_sees(ideal_samples):
    """Zero-initialised updates give exactly the plain network; a block-1 update of u = e_1 in every
    residue's frame moves each CA by its frame's first axis, and block 2 gets those distances."""
    x_t, t = _noisy(_tokens(ideal_samples[:2]))
    plain, updated = _busy_net(), _busy_net(position_updates=True)
    fresh = FrameNet({"protein": (50, 7)}, hidden=32, depth=3, heads=2, position_updates=True)
    assert len(fresh.updates) == 2 and all(float(p.abs().max()) == 0.0 for p in fresh.updates.parameters())
    updated.load_state_dict(plain.state_dict(), strict=False)
    for p in updated.updates.parameters():
        p.zero_()
    assert torch.equal(plain({"protein": x_t}, {"protein": t})["protein"],
                       updated({"protein": x_t}, {"protein": t})["protein"])
    updated.updates[0][1].bias.copy_(torch.tensor([1.0, 0.0, 0.0]))
    seen = {}
    updated.blocks[1].register_forward_hook(lambda m, args, out: seen.update(x=args[2], d2=args[4]))
    updated({"protein": x_t}, {"protein": t})
    mask = x_t.mask
    q = so3.canonical(x_t.values[..., :4])
    moved = x_t.values[..., 4:] * updated.scale + so3.to_matrix(q)[..., :, 0] * mask.unsqueeze(-1)
    assert torch.allclose(seen["x"], moved, atol=1e-5)
    assert torch.allclose(seen["d2"], torch.cdist(moved, moved) ** 2, atol=1e-3)


def test_framenet_refuses_other_modalities():
    with pytest.raises(ConfigError, match="model.options.modality"):
        FrameNet({"image": (16, 4)})
    net = FrameNet({"protein": (10, 7)}, hidden=16, depth=1, heads=2)
    with pytest.raises(DataError, match="only"):
        net({"label": None}, {})


def test_auxiliary_loss_is_the_atom_error_of_a_shift_near_the_data(ideal_samples):
    """A clean estimate moved rigidly by d (token units) has atom error |d|^2 and no distance error;
    a chain stretched by 10% has distance errors; nothing counts at t >= aux_t_max or with weight 0."""
    modality = Protein(aux_weight=2.0, aux_t_max=0.25)
    target = _tokens(ideal_samples[:3], modality)
    d = torch.tensor([0.3, -0.1, 0.2])
    moved = target.with_values(torch.cat([target.values[..., :4], target.values[..., 4:] + d], -1))
    t = torch.tensor([0.0, 0.1, 0.5])
    loss = modality.auxiliary_loss(moved, target, t)
    assert torch.allclose(loss, torch.tensor([2.0, 2.0, 0.0]) * float((d ** 2).sum()), atol=1e-5)
    assert torch.allclose(modality.auxiliary_loss(target, target, t), torch.zeros(3), atol=1e-6)
    stretched = target.with_values(torch.cat([target.values[..., :4], target.values[..., 4:] * 1.1], -1))
    assert float(modality.auxiliary_loss(stretched, target, t)[0]) > 0
    assert Protein().auxiliary_loss(moved, target, t) is None  # aux_weight defaults to 0: off


def test_crop_gives_centred_windows_of_the_chain():
    full = ideal("train", size=4, min_length=60, max_length=80)
    cropped = ideal("train", size=4, min_length=60, max_length=80, crop=20)
    torch.manual_seed(0)
    for i in range(4):
        chain, window = full[i]["protein"], cropped[i]["protein"]
        assert window.shape == (20, 7)
        assert float(window[:, 4:].mean(0).abs().max()) < 1e-5
        starts = [s for s in range(len(chain) - 19) if torch.equal(chain[s:s + 20, :4], window[:, :4])]
        assert len(starts) == 1
        offset = chain[starts[0]:starts[0] + 20, 4:] - window[:, 4:]
        assert torch.allclose(offset, offset[:1].expand(20, 3), atol=1e-4)  # the same residues, moved rigidly
    val = ideal("val", size=4, min_length=60, max_length=80, crop=20)
    assert min(len(val[i]["protein"]) for i in range(4)) >= 60  # held-out chains stay whole
    with pytest.raises(DataError, match="crop"):
        ideal("train", size=2, crop=1)
