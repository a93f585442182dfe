"""MelUNet: its mel grid is the tokenizer's, padding is invisible, the label steers the velocity,
and the core builds it from model.network with the audio modality's token shapes."""

import pytest
import torch

from flowcore.errors import ConfigError
from flowcore.modality import Tokens
from flowcore_audio.network import MelUNet, mel_to_tokens, tokens_to_mel
from flowcore_audio.tokenizer import MelTokenizer

SHAPES = {"audio": (13 * 8, 64), "label": (1, 10)}


def _label(classes: torch.Tensor, k: int = 10) -> Tokens:
    b = classes.shape[0]
    values = (2 * torch.nn.functional.one_hot(classes, k).float() - 1)[:, None]
    return Tokens(values, torch.zeros(b, 1, 1), torch.ones(b, 1, dtype=torch.bool))


def _shuffled(tokens: Tokens, seed: int = 0) -> Tokens:
    perm = torch.randperm(tokens.values.shape[1], generator=torch.Generator().manual_seed(seed))
    return Tokens(tokens.values[:, perm], tokens.positions[:, perm], tokens.mask[:, perm])


def test_the_mel_grid_is_the_tokenizers_in_any_token_order_with_padding_as_zeros():
    mel = torch.randn(2, 1, 64, 104)
    frames = torch.tensor([104, 56])
    tokens = _shuffled(MelTokenizer().encode({"mel": mel, "frames": frames}))
    grid, index = tokens_to_mel(tokens, 8, 8)
    real = torch.arange(104)[None, :] < frames[:, None]  # [B, F]
    assert torch.equal(grid, mel * real[:, None, None, :])
    back = mel_to_tokens(grid, index, 8, 8)
    assert torch.equal(back[tokens.mask], tokens.values[tokens.mask])


def test_shapes_zero_velocity_at_init_and_padding_neither_seen_nor_given_velocity():
    torch.manual_seed(0)
    net = MelUNet(SHAPES, fold=4, width=16)
    layout = MelTokenizer().encode({"mel": torch.randn(2, 1, 64, 104), "frames": torch.tensor([104, 56])})
    t = {"audio": torch.rand(2), "label": torch.zeros(2)}
    label = _label(torch.tensor([1, 7]))
    out = net({"audio": layout, "label": label}, t)
    assert out["audio"].shape == (2, 104, 64) and out["label"].shape == (2, 1, 10)
    assert not out["audio"].any() and not out["label"].any()
    for p in net.parameters():  # away from the zero init
        p.data.normal_(0, 0.05)
    with torch.no_grad():
        v = net({"audio": layout, "label": label}, t)["audio"]
        noisy = layout.with_values(torch.where(layout.mask[..., None], layout.values, torch.randn_like(layout.values)))
        again = net({"audio": noisy, "label": label}, t)["audio"]
    assert v[layout.mask].abs().min() > 0 and not v[~layout.mask].any()
    assert torch.equal(v, again)  # what sits in padding tokens changes nothing


def test_label_steers_the_velocity_and_a_dropped_label_is_ignored():
    torch.manual_seed(0)
    net = MelUNet(SHAPES, fold=4, width=16, emb_dim=32)
    tok = MelTokenizer()
    # target: a velocity that depends only on the class (+1 for class 0, -1 for class 1)
    classes = torch.tensor([0, 1] * 4)
    target = (1 - 2 * classes.float())[:, None, None].expand(-1, 104, 64)
    x = tok.encode({"mel": torch.randn(8, 1, 64, 104), "frames": torch.full((8,), 104)})
    t = {"audio": torch.full((8,), 0.5), "label": torch.zeros(8)}
    opt = torch.optim.Adam(net.parameters(), 3e-3)
    losses = []
    for _ in range(30):
        loss = (net({"audio": x, "label": _label(classes)}, t)["audio"] - target).pow(2).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.1 * losses[0]
    x2 = tok.encode({"mel": torch.randn(2, 1, 64, 104), "frames": torch.full((2,), 104)})
    t2 = {"audio": torch.full((2,), 0.5), "label": torch.zeros(2)}
    with torch.no_grad():
        given = net({"audio": x2, "label": _label(torch.tensor([0, 1]))}, t2)["audio"].mean((1, 2))
        assert given[0] > 0.5 and given[1] < -0.5
        # a dropped label (prior noise at t = 1) and a missing one give the same, label-free velocity
        dropped = net({"audio": x2, "label": Tokens(torch.randn(2, 1, 10), torch.zeros(2, 1, 1),
                                                    torch.ones(2, 1, dtype=torch.bool))},
                      {"audio": t2["audio"], "label": torch.ones(2)})["audio"]
        missing = net({"audio": x2}, {"audio": t2["audio"]})["audio"]
    assert torch.allclose(dropped, missing, atol=1e-6)


def test_the_core_builds_it_from_model_network_and_a_wrong_patch_is_one_config_error():
    from flowcore.registry import Registry
    from flowcore.train.bundle import build_modality
    from flowcore.train.config import from_dict
    from flowcore.train.networks import build_network

    registry = Registry()

    def build(options: dict, patch=(8, 8), objective="flow_matching"):
        config = from_dict({"modalities": {"audio": {"patch": list(patch)},
                                           "label": {"role": "condition", "num_classes": 10, "dropout": 0.1}},
                            "data": {"dataset": "spoken_digits"}, "flow": {"objective": objective},
                            "model": {"network": "flowcore_audio.network:MelUNet", "options": options}},
                           registry=registry)
        modalities = {n: build_modality(config, n, registry) for n in ("audio", "label")}
        return build_network(config, modalities)

    net = build({"fold": 4, "width": 16})
    assert isinstance(net, MelUNet) and net.cond["label"].in_features == 10 and net.interval is None
    assert build({"fold": 4, "width": 16, "time_scale": 1.0}, objective="meanflow").interval is not None
    assert isinstance(build({"patch": [4, 2], "width": 8}, patch=(4, 2)), MelUNet)
    with pytest.raises(ConfigError, match="model.options.patch"):
        build({"width": 16}, patch=(4, 4))
    with pytest.raises(ConfigError, match="model.options.fold"):
        build({"fold": 3, "width": 16})


def test_interval_input_for_meanflow_loads_velocity_weights_and_is_smooth_in_t_at_time_scale_one():
    """interval=True (flow.objective meanflow) adds h = t - r to the embedding: a velocity run's
    weights load into it and give the same field (zero init), r = t is r absent, a network built
    without it refuses r. At time_scale 1 the exact du/dt is what a difference over 0.04 in t sees;
    at 1000 it is mostly turns faster than that, which MeanFlow's target multiplies by t - r."""
    torch.manual_seed(0)
    layout = MelTokenizer().encode({"mel": torch.randn(3, 1, 64, 104), "frames": torch.tensor([104, 80, 56])})
    tokens = {"audio": layout, "label": _label(torch.tensor([1, 4, 7]))}
    t = {"audio": torch.tensor([0.9, 0.5, 0.2]), "label": torch.zeros(3)}
    zeros = torch.zeros(3)
    plain = MelUNet(SHAPES, fold=4, width=16)
    for p in plain.parameters():  # away from the zero init
        p.data.normal_(0, 0.05)
    mean = MelUNet(SHAPES, fold=4, width=16, interval=True)
    missing, unexpected = mean.load_state_dict(plain.state_dict(), strict=False)
    assert not unexpected and missing and all(k.startswith("interval.") for k in missing)
    with torch.no_grad():
        assert torch.equal(mean(tokens, t, {"audio": zeros, "label": zeros})["audio"], plain(tokens, t)["audio"])
        for p in mean.interval.parameters():
            p.data.normal_(0, 0.05)
        none = mean(tokens, t)["audio"]
        same = mean(tokens, t, {"audio": t["audio"], "label": zeros})["audio"]
        other = mean(tokens, t, {"audio": zeros, "label": zeros})["audio"]
    assert torch.equal(none, same) and not torch.allclose(none, other)
    with pytest.raises(ConfigError, match="interval embedding"):
        plain(tokens, t, {"audio": zeros})

    def mismatch(scale: float) -> float:
        torch.manual_seed(0)
        net = MelUNet(SHAPES, fold=4, width=16, interval=True, time_scale=scale)
        for p in net.parameters():
            p.data.normal_(0, 0.1)

        def u(tt):
            return net(tokens, {"audio": tt, "label": zeros}, {"audio": zeros, "label": zeros})["audio"]

        with torch.no_grad():
            _, exact = torch.func.jvp(u, (t["audio"],), (torch.ones(3),))
            wide = (u(t["audio"] + 0.02) - u(t["audio"] - 0.02)) / 0.04
        return float((exact - wide).norm() / exact.norm())

    assert mismatch(1.0) < 0.05
    assert mismatch(1000.0) > 0.5
