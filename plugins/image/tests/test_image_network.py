"""ConvUNet: token <-> grid mapping agrees with the tokenizer, zero init, the label is used."""

import torch

from flowcore.modality import Tokens
from flowcore_image.network import ConvUNet, grid_to_tokens, tokens_to_grid
from flowcore_image.tokenizer import PatchTokenizer


def _label(values: torch.Tensor) -> Tokens:
    b = values.shape[0]
    return Tokens(values, torch.zeros(b, 1, 1), torch.ones(b, 1, dtype=torch.bool))


def _one_hot(classes: torch.Tensor, k: int = 10) -> torch.Tensor:
    return (2 * torch.nn.functional.one_hot(classes, k).float() - 1)[:, None]


def test_grid_mapping_matches_the_tokenizer_in_any_token_order():
    tok = PatchTokenizer(3, patch=4)
    x = torch.randn(2, 3, 12, 20)
    tokens = tok.encode(x)
    perm = torch.randperm(tokens.values.shape[1], generator=torch.Generator().manual_seed(0))
    shuffled = Tokens(tokens.values[:, perm], tokens.positions[:, perm], tokens.mask[:, perm])
    image, index, rows, cols = tokens_to_grid(shuffled, channels=3)
    assert torch.equal(image, x) and (rows, cols) == (3, 5)
    assert torch.equal(grid_to_tokens(image, index, rows, cols), shuffled.values)


def test_shapes_and_zero_velocity_at_init():
    net = ConvUNet({"image": (49, 16), "label": (1, 10)}, width=16)
    tokens = {"image": PatchTokenizer(1, patch=4).encode(torch.randn(3, 1, 28, 28)),
              "label": _label(_one_hot(torch.tensor([0, 3, 9])))}
    out = net(tokens, {"image": torch.rand(3), "label": torch.zeros(3)})
    assert out["image"].shape == (3, 49, 16) and out["label"].shape == (3, 1, 10)
    assert not out["image"].any()
    assert 1e5 < sum(p.numel() for p in ConvUNet({"image": (49, 16), "label": (1, 10)}).parameters()) < 2e6


def test_label_steers_the_velocity_and_a_dropped_label_is_ignored():
    torch.manual_seed(0)
    net = ConvUNet({"image": (49, 16), "label": (1, 10)}, width=16)
    tok = PatchTokenizer(1, patch=4)
    # target: a velocity that depends only on the class (+1 image for class 0, -1 for class 1)
    classes = torch.tensor([0, 1] * 8)
    target = (1 - 2 * classes.float())[:, None, None].expand(-1, 49, 16)
    x = tok.encode(torch.randn(16, 1, 28, 28))
    opt = torch.optim.Adam(net.parameters(), 3e-3)
    for _ in range(30):
        out = net({"image": x, "label": _label(_one_hot(classes))}, {"image": torch.full((16,), 0.5),
                                                                     "label": torch.zeros(16)})
        loss = (out["image"] - target).pow(2).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    t = {"image": torch.full((2,), 0.5), "label": torch.zeros(2)}
    x2 = tok.encode(torch.randn(2, 1, 28, 28))
    with torch.no_grad():
        given = net({"image": x2, "label": _label(_one_hot(torch.tensor([0, 1])))}, t)["image"].mean((1, 2))
        assert given[0] > 0.5 and given[1] < -0.5
        # dropped (prior noise at t = 1) and missing labels give the same, label-free velocity
        noise = _label(torch.randn(2, 1, 10))
        dropped = net({"image": x2, "label": noise}, {"image": t["image"], "label": torch.ones(2)})["image"]
        other = net({"image": x2, "label": _label(torch.randn(2, 1, 10))},
                    {"image": t["image"], "label": torch.ones(2)})["image"]
        missing = net({"image": x2}, {"image": t["image"]})["image"]
    assert torch.allclose(dropped, missing, atol=1e-6) and torch.allclose(other, missing, atol=1e-6)


def test_interval_input_for_meanflow_is_optional_and_its_jvp_matches_reverse_mode():
    import pytest

    from flowcore.errors import ConfigError
    from flowcore.flow.meanflow import meanflow_target

    torch.manual_seed(0)
    shapes = {"image": (49, 16), "label": (1, 10)}
    plain, mean = ConvUNet(shapes, width=8), ConvUNet(shapes, width=8, interval=True)
    assert set(plain.state_dict()) < set(mean.state_dict())  # weights saved without it load unchanged
    for p in mean.parameters():  # away from the zero init, so the output depends on everything
        p.data.normal_(0, 0.05)
    tokens = {"image": PatchTokenizer(1, patch=4).encode(torch.randn(2, 1, 28, 28)),
              "label": _label(_one_hot(torch.tensor([2, 5])))}
    t = {"image": torch.tensor([0.9, 0.6]), "label": torch.zeros(2)}
    with torch.no_grad():
        none = mean(tokens, t)["image"]
        same = mean(tokens, t, {"image": t["image"], "label": t["label"]})["image"]
        other = mean(tokens, t, {"image": torch.tensor([0.1, 0.2]), "label": t["label"]})["image"]
    assert torch.equal(none, same) and not torch.allclose(none, other)  # r = t is r absent: h = 0
    with pytest.raises(ConfigError, match="interval embedding"):
        plain(tokens, t, {"image": t["image"]})

    def u(z, tt, rr):
        return {"image": mean({**tokens, "image": tokens["image"].with_values(z["image"])},
                              {"image": tt, "label": t["label"]}, {"image": rr, "label": t["label"]})["image"]}

    # the forward-mode JVP of the target against reverse mode (autograd's double-backward jvp); a
    # finite difference is too coarse here: the time embedding has frequencies up to 1000 per unit t
    v = {"image": torch.randn_like(tokens["image"].values)}
    r = torch.tensor([0.3, 0.0])
    z = tokens["image"].values
    target = meanflow_target(u, {"image": z}, v, t["image"], r)["image"]
    _, dudt = torch.autograd.functional.jvp(lambda zz, tt: u({"image": zz}, tt, r)["image"], (z, t["image"]),
                                            (v["image"], torch.ones(2)))
    expected = v["image"] - (t["image"] - r)[:, None, None] * dudt
    assert torch.allclose(target, expected, atol=1e-4 * float(expected.abs().max()))


def test_scale_norm_starts_as_the_plain_network_and_then_gates_by_the_embedding():
    """model.options.scale_norm: a run without it loads into one with it (the scales start at zero),
    gives the same field to the last bit, and its scales then make the output depend on the
    embedding multiplicatively: doubling a feature map's gate doubles that map, which no bias can do."""
    torch.manual_seed(0)
    shapes = {"image": (49, 16), "label": (1, 10)}
    plain = ConvUNet(shapes, width=16, interval=True)
    for p in plain.parameters():  # off the zero init of the output, so that the comparison means something
        torch.nn.init.normal_(p, std=0.05)
    gated = ConvUNet(shapes, width=16, interval=True, scale_norm=True)
    missing, unexpected = gated.load_state_dict(plain.state_dict(), strict=False)
    assert not unexpected and missing and all(".scale." in k for k in missing)
    tokens = {"image": PatchTokenizer(1, patch=4).encode(torch.randn(3, 1, 28, 28)),
              "label": _label(_one_hot(torch.tensor([0, 3, 9])))}
    t, r = {"image": torch.rand(3), "label": torch.zeros(3)}, {"image": torch.zeros(3), "label": torch.zeros(3)}
    with torch.no_grad():
        assert torch.equal(gated(tokens, t, r)["image"], plain(tokens, t, r)["image"])
        block = gated.mid
        x, emb = torch.randn(3, 32, 7, 7), torch.randn(3, 128)
        base = block.norm2(block.conv1(torch.nn.functional.silu(block.norm1(x))) + block.emb(emb)[:, :, None, None])
        block.scale.bias.fill_(1.0)  # gate 1 + 1 = 2 on every channel
        inner = block(x, emb) - block.skip(x)
        assert torch.allclose(inner, block.conv2(torch.nn.functional.silu(2 * base)), atol=1e-6)
        assert not torch.equal(gated(tokens, t, r)["image"], plain(tokens, t, r)["image"])


def test_time_scale_one_keeps_the_velocity_smooth_in_t():
    """time_scale 1: d/dt of the output is what a difference over 0.04 in t sees; at 1000 it is mostly
    turns faster than that (the sinusoids' periods reach 0.006), which MeanFlow's target multiplies."""
    shapes = {"image": (49, 16), "label": (1, 10)}
    tokens = {"image": PatchTokenizer(1, patch=4).encode(torch.randn(8, 1, 28, 28)),
              "label": _label(_one_hot(torch.arange(8)))}
    t = torch.rand(8) * 0.8 + 0.1

    def mismatch(scale: float) -> float:
        torch.manual_seed(0)
        net = ConvUNet(shapes, width=8, interval=True, time_scale=scale)
        for p in net.parameters():  # away from the zero init, as after training
            p.data.normal_(0, 0.1)

        def u(tt):
            return net(tokens, {"image": tt, "label": torch.zeros(8)}, {"image": torch.zeros(8),
                                                                        "label": torch.zeros(8)})["image"]

        with torch.no_grad():
            _, exact = torch.func.jvp(u, (t,), (torch.ones_like(t),))
            wide = (u(t + 0.02) - u(t - 0.02)) / 0.04
        return float((exact - wide).norm() / exact.norm())

    assert mismatch(1.0) < 0.05
    assert mismatch(1000.0) > 0.5
