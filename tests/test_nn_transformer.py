"""FlowTransformer behaviour: zero start, masks, absent streams, RoPE, conditioning, config, stats."""

import pytest
import torch
from torch.nn.attention import SDPBackend, sdpa_kernel
from torch.utils.flop_counter import FlopCounterMode

from flowcore.errors import ConfigError, DataError
from flowcore.modality import Tokens
from flowcore.nn import FlowTransformer, FlowTransformerConfig, StreamConfig, model_stats
from flowcore.nn.embeddings import rope_angles


def make_config(**kw):
    base = dict(
        streams={"image": StreamConfig(in_channels=4, position_axes=2),
                 "label": StreamConfig(in_channels=10, position_axes=1)},
        hidden_size=64, num_heads=4, depth_double=2, depth_single=2,
    )
    base.update(kw)
    return FlowTransformerConfig(**base)


def randomized(cfg, seed=0):
    """A model whose zero-initialised gates and heads are random too, so every path matters."""
    torch.manual_seed(seed)
    model = FlowTransformer(cfg)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.1 * torch.randn_like(p))
    return model.eval()


def image_tokens(b=2, h=3, w=4, c=4, seed=1):
    g = torch.Generator().manual_seed(seed)
    rows, cols = torch.meshgrid(torch.arange(h), torch.arange(w), indexing="ij")
    pos = torch.stack([rows, cols], -1).reshape(1, h * w, 2).expand(b, -1, -1).float()
    return Tokens(torch.randn(b, h * w, c, generator=g), pos, torch.ones(b, h * w, dtype=torch.bool))


def label_tokens(b=2, seed=2):
    g = torch.Generator().manual_seed(seed)
    return Tokens(torch.randn(b, 1, 10, generator=g), torch.zeros(b, 1, 1), torch.ones(b, 1, dtype=torch.bool))


def times(b=2, *names):
    return {n: torch.linspace(0.1, 0.9, b) for n in names}


def test_fresh_model_predicts_exactly_zero_velocity_of_each_stream_shape():
    model = FlowTransformer(make_config())
    out = model({"image": image_tokens(), "label": label_tokens()}, times(2, "image", "label"))
    assert out["image"].shape == (2, 12, 4) and out["label"].shape == (2, 1, 10)
    assert torch.equal(out["image"], torch.zeros_like(out["image"]))
    assert torch.equal(out["label"], torch.zeros_like(out["label"]))


def test_fresh_model_gets_gradients_into_its_heads():
    model = FlowTransformer(make_config())
    out = model({"image": image_tokens()}, times(2, "image"))
    (out["image"] - 1).pow(2).mean().backward()
    assert model.heads["image"].linear.weight.grad.abs().sum() > 0


def test_padded_tokens_change_nothing_and_match_the_unpadded_sample():
    model = randomized(make_config())
    img, lab = image_tokens(b=1), label_tokens(b=1)
    t = times(1, "image", "label")
    ref = model({"image": img, "label": lab}, t)["image"]
    pad = 5
    padded = Tokens(
        torch.cat([img.values, 100 * torch.randn(1, pad, 4)], 1),
        torch.cat([img.positions, torch.full((1, pad, 2), 7.0)], 1),
        torch.cat([img.mask, torch.zeros(1, pad, dtype=torch.bool)], 1),
    )
    out = model({"image": padded, "label": lab}, t)["image"]
    torch.testing.assert_close(out[:, :12], ref, atol=1e-5, rtol=1e-5)
    assert torch.equal(out[:, 12:], torch.zeros_like(out[:, 12:]))


def test_absent_stream_equals_a_fully_masked_one():
    model = randomized(make_config())
    img, lab = image_tokens(), label_tokens()
    absent = model({"image": img}, times(2, "image"))
    masked_lab = Tokens(lab.values, lab.positions, torch.zeros_like(lab.mask))
    masked = model({"image": img, "label": masked_lab}, times(2, "image", "label"))
    assert set(absent) == {"image"}
    torch.testing.assert_close(absent["image"], masked["image"], atol=1e-5, rtol=1e-5)
    assert torch.equal(masked["label"], torch.zeros_like(masked["label"]))


def test_samples_with_different_token_counts_match_their_own_runs():
    model = randomized(make_config())
    short, long_ = image_tokens(b=1, h=2, w=2, seed=3), image_tokens(b=1, h=3, w=4, seed=4)
    batch = Tokens(
        torch.cat([torch.cat([short.values, torch.zeros(1, 8, 4)], 1), long_.values]),
        torch.cat([torch.cat([short.positions, torch.zeros(1, 8, 2)], 1), long_.positions]),
        torch.cat([torch.cat([short.mask, torch.zeros(1, 8, dtype=torch.bool)], 1), long_.mask]),
    )
    both = model({"image": batch}, times(2, "image"))["image"]
    t = times(2, "image")["image"]
    one = model({"image": short}, {"image": t[:1]})["image"]
    two = model({"image": long_}, {"image": t[1:]})["image"]
    torch.testing.assert_close(both[:1, :4], one, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(both[1:], two, atol=1e-5, rtol=1e-5)


def test_rope_sees_relative_positions_only_and_tokens_are_permutation_equivariant():
    model = randomized(make_config())
    img = image_tokens()
    t = times(2, "image")
    ref = model({"image": img}, t)["image"]
    shifted = Tokens(img.values, img.positions + torch.tensor([5.0, -3.0]), img.mask)
    torch.testing.assert_close(model({"image": shifted}, t)["image"], ref, atol=1e-4, rtol=1e-4)
    perm = torch.randperm(12, generator=torch.Generator().manual_seed(0))
    permuted = Tokens(img.values[:, perm], img.positions[:, perm], img.mask[:, perm])
    torch.testing.assert_close(model({"image": permuted}, t)["image"], ref[:, perm], atol=1e-5, rtol=1e-5)
    scrambled = Tokens(img.values, img.positions[:, perm], img.mask)
    assert not torch.allclose(model({"image": scrambled}, t)["image"], ref, atol=1e-3)


def test_each_stream_rotates_only_its_own_slice_of_the_head():
    cfg = make_config()
    layout = cfg.rope_layout()
    assert layout == {"image": [(0, 4), (4, 4)], "label": [(8, 4)]}
    pos = torch.randn(1, 5, 2) * 10
    cos, sin = rope_angles(pos, layout["image"], cfg.head_dim, cfg.rope_theta)
    # pairs 4.. belong to the label stream: image positions leave them unrotated
    assert (torch.equal(cos[..., 4:], torch.ones_like(cos[..., 4:]))
            and torch.equal(sin[..., 4:], torch.zeros_like(sin[..., 4:])))
    # pair 0 of the row axis turns at frequency 1, pair 1 at theta^(-2/4)
    torch.testing.assert_close(sin[..., 0], torch.sin(pos[..., 0]))
    torch.testing.assert_close(sin[..., 1], torch.sin(pos[..., 0] * 10000.0 ** -0.5))
    torch.testing.assert_close(sin[..., 2], torch.sin(pos[..., 1]))


def test_global_condition_and_timestep_change_the_velocity():
    model = randomized(make_config(global_cond_dim=3))
    tokens, t = {"image": image_tokens()}, times(2, "image")
    a = model(tokens, t, cond=torch.zeros(2, 3))["image"]
    b = model(tokens, t, cond=torch.ones(2, 3))["image"]
    c = model(tokens, {"image": t["image"] * 0.5}, cond=torch.zeros(2, 3))["image"]
    assert not torch.allclose(a, b, atol=1e-4) and not torch.allclose(a, c, atol=1e-4)
    with pytest.raises(DataError, match="cond"):
        model(tokens, t)


def test_checkpointing_gives_the_same_outputs_and_gradients():
    cfg = make_config()
    plain = randomized(cfg).train()
    ckpt = FlowTransformer(make_config(checkpointing=True)).train()
    ckpt.load_state_dict(plain.state_dict())
    tokens, t = {"image": image_tokens(), "label": label_tokens()}, times(2, "image", "label")
    grads = []
    for model in (plain, ckpt):
        out = model(tokens, t)
        (out["image"].square().sum() + out["label"].square().sum()).backward()
        grads.append([p.grad.clone() for p in model.parameters()])
    for g1, g2 in zip(*grads):
        torch.testing.assert_close(g1, g2, atol=1e-5, rtol=1e-4)


def test_bf16_autocast_stays_close_to_fp32():
    model = randomized(make_config())
    tokens, t = {"image": image_tokens(), "label": label_tokens()}, times(2, "image", "label")
    ref = model(tokens, t)["image"]
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = model(tokens, t)["image"]
    assert out.dtype == torch.float32 and torch.isfinite(out).all()
    assert (out - ref).abs().max() < 0.05 * ref.abs().max()


def test_config_from_dict_validates_and_round_trips():
    data = {"streams": {"image": {"in_channels": 4, "position_axes": 2, "rope_axes_dim": [8, 8]}}, "hidden_size": 64,
            "num_heads": 4}
    cfg = FlowTransformerConfig.from_dict(data)
    assert cfg.streams["image"].rope_axes_dim == (8, 8)
    assert FlowTransformerConfig.from_dict(cfg.to_dict()) == cfg
    with pytest.raises(ConfigError, match="hidden_sise"):
        FlowTransformerConfig.from_dict({**data, "hidden_sise": 3})
    with pytest.raises(ConfigError, match="in_chanels"):
        FlowTransformerConfig.from_dict({"streams": {"image": {"in_chanels": 4}}})
    with pytest.raises(ConfigError, match="num_heads"):
        FlowTransformerConfig.from_dict({**data, "num_heads": 5})


def test_wrong_inputs_raise_data_errors_naming_the_stream():
    model = FlowTransformer(make_config())
    with pytest.raises(DataError, match="audio"):
        model({"audio": image_tokens()}, times(2, "audio"))
    with pytest.raises(DataError, match="label"):
        model({"image": image_tokens(), "label": label_tokens()}, times(2, "image"))


def test_stats_count_parameters_and_the_flops_torch_counts():
    cfg = make_config(global_cond_dim=3, depth_single=1)
    model = FlowTransformer(cfg)
    stats = model_stats(model, {"image": 12, "label": 1})
    assert stats.parameters == sum(p.numel() for p in model.parameters())
    counter = FlopCounterMode(display=False)
    # the math backend runs attention as matmuls the counter sees (it skips CPU flash kernels)
    with counter, torch.no_grad(), sdpa_kernel(SDPBackend.MATH):
        model({"image": image_tokens(b=1), "label": label_tokens(b=1)}, times(1, "image", "label"),
              cond=torch.zeros(1, 3))
    assert stats.forward_flops == pytest.approx(counter.get_total_flops(), rel=1e-6)


def test_circular_rope_axis_wraps_at_its_period():
    pos = torch.tensor([[[0.0, 3.0], [0.0, 3.0 + 16.0], [2.0, 1.0]]])
    cos, sin = rope_angles(pos, [(0, 8), (8, 8)], 16, 10000.0, periods=(None, 16.0))
    assert torch.allclose(cos[0, 0], cos[0, 1], atol=1e-6) and torch.allclose(sin[0, 0], sin[0, 1], atol=1e-6)
    # at column 1 each angle is a column frequency: a whole number of turns per period of 16
    turns = torch.atan2(sin[0, 2, 4:], cos[0, 2, 4:]) * 16 / (2 * torch.pi)
    assert torch.allclose(turns, turns.round(), atol=1e-4) and bool((turns.round() >= 1).all())
    plain = rope_angles(pos, [(0, 8), (8, 8)], 16, 10000.0)
    assert torch.equal(plain[0][..., :4], cos[..., :4])  # the row axis is untouched


def test_circular_column_axis_makes_the_transformer_equivariant_to_column_rolls():
    cfg = make_config(streams={"image": StreamConfig(in_channels=4, position_axes=2, rope_periods=[None, 6])},
                      hidden_size=32, num_heads=2)
    model = randomized(cfg)
    x = image_tokens(b=1, h=3, w=6)
    t = {"image": torch.tensor([0.4])}
    out = model({"image": x}, t)["image"].reshape(1, 3, 6, 4)
    rolled = Tokens(x.values.reshape(1, 3, 6, 4).roll(2, 2).reshape(1, 18, 4), x.positions, x.mask)
    out_rolled = model({"image": rolled}, t)["image"].reshape(1, 3, 6, 4)
    assert torch.allclose(out_rolled, out.roll(2, 2), atol=1e-5)
    plain = randomized(make_config(streams={"image": StreamConfig(in_channels=4, position_axes=2)},
                                   hidden_size=32, num_heads=2))
    assert not torch.allclose(plain({"image": rolled}, t)["image"].reshape(1, 3, 6, 4),
                              plain({"image": x}, t)["image"].reshape(1, 3, 6, 4).roll(2, 2), atol=1e-3)


def test_rope_periods_need_one_entry_per_axis():
    with pytest.raises(ValueError, match="rope_periods"):
        StreamConfig(in_channels=4, position_axes=2, rope_periods=[8])
