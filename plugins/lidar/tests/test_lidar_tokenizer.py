"""Patch tokens of range images: round trip, positions, and a circular azimuth in the backbone."""

import pytest
import torch

from flowcore.errors import DataError
from flowcore.nn import FlowTransformer, FlowTransformerConfig, StreamConfig
from flowcore_lidar.tokenizer import RangeTokenizer


def test_tokens_round_trip_and_carry_row_column_positions():
    tok = RangeTokenizer((8, 32), (2, 8))
    x = torch.randn(3, 2, 8, 32)
    tokens = tok.encode(x)
    assert tokens.values.shape == (3, 16, 32) and tok.position_periods == (None, 4.0)
    assert torch.equal(tok.decode(tokens), x)
    assert tokens.positions[0, 5].tolist() == [1.0, 1.0]  # row-major: token 5 is patch row 1, column 1
    # channel c ph pw + i pw + j of a token holds pixel (i, j) of channel c of its patch
    assert tokens.values[0, 5, 1 * 16 + 1 * 8 + 3] == x[0, 1, 2 + 1, 8 + 3]


def test_a_patch_that_does_not_divide_the_sensor_is_refused():
    with pytest.raises(DataError, match="patch 3x8 must divide"):
        RangeTokenizer((8, 32), (3, 8))
    with pytest.raises(DataError, match="size"):
        RangeTokenizer((8, 32), (2, 8)).layout(1, (16, 32))


def backbone(tok: RangeTokenizer, periods) -> FlowTransformer:
    cfg = FlowTransformerConfig(streams={"lidar": StreamConfig(in_channels=tok.channels, position_axes=2,
                                                               rope_periods=periods)},
                                hidden_size=32, num_heads=2, depth_double=1, depth_single=1)
    torch.manual_seed(0)
    model = FlowTransformer(cfg)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.1 * torch.randn_like(p))
    return model.eval()


def test_a_scan_turned_by_whole_patches_gives_the_turned_velocity():
    tok = RangeTokenizer((8, 64), (2, 8))
    model = backbone(tok, tok.position_periods)
    scan = torch.rand(1, 2, 8, 64) * 2 - 1
    t = {"lidar": torch.tensor([0.3])}

    def velocity(net, x):
        tokens = tok.encode(x)
        return tok.decode(tokens.with_values(net({"lidar": tokens}, t)["lidar"]))

    for patches in (1, 3, 7):  # 7 of 8: the last column becomes the first
        turned = scan.roll(8 * patches, -1)
        assert torch.allclose(velocity(model, turned), velocity(model, scan).roll(8 * patches, -1), atol=1e-5)
    # with a plain (non-circular) column axis the first and last columns are far apart, and turning changes it
    plain = backbone(tok, None)
    assert not torch.allclose(velocity(plain, scan.roll(8, -1)), velocity(plain, scan).roll(8, -1), atol=1e-3)


def test_the_network_builder_gives_the_lidar_stream_its_period(registry):
    from flowcore.train.config import from_dict
    from flowcore.train.networks import build_network

    m = registry.modality("lidar", sensor="cpu32", patch=[4, 16])
    assert m.tokenizer.position_periods == (None, 16.0)
    config = from_dict({"modalities": {"lidar": {"sensor": "cpu32", "patch": [4, 16]}},
                        "data": {"dataset": "lidar_street"},
                        "model": {"network": "transformer", "transformer": {"hidden_size": 32, "num_heads": 2}}})
    net = build_network(config, {"lidar": m})
    assert net.transformer.config.streams["lidar"].rope_periods == (None, 16.0)
