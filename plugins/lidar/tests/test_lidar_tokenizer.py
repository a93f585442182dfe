"""Patch tokens of range images: round trip, positions, and a circular azimuth in the backbone."""

import numpy as np
import pytest
import torch

from flowcore.errors import DataError
from flowcore.nn import FlowTransformer, FlowTransformerConfig, StreamConfig
from flowcore_lidar.tokenizer import RangeTokenizer, fill_empty


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


# ---------------------------------------------------------------- the return mask (drop_mask)

def nearest_return_by_search(scan: np.ndarray, empty: np.ndarray) -> np.ndarray:
    """The fill of ``fill_empty`` by brute force: nearest return of the row on the circle (ties: the
    one to the left), rows with none from the nearest row with returns (ties: the upper one)."""
    c, h, w = scan.shape
    out = scan.copy()
    for i in range(h):
        hits = np.flatnonzero(~empty[i])
        for j in np.flatnonzero(empty[i]) if len(hits) else []:
            gap = (hits - j) % w
            dist = np.minimum(gap, w - gap)
            best = hits[dist == dist.min()]
            left = best[(j - best) % w == dist.min()]
            out[:, i, j] = scan[:, i, left[0] if len(left) else best[0]]
    rows = np.flatnonzero((~empty).any(1))
    for i in sorted(set(range(h)) - set(rows)):
        out[:, i] = out[:, rows[np.argmin(np.abs(rows - i))]]
    return out


def test_empty_pixels_take_the_nearest_return_of_their_row_on_the_circle():
    gen = torch.Generator().manual_seed(0)
    scan = torch.rand(4, 2, 6, 16, generator=gen) * 2 - 1
    empty = torch.rand(4, 6, 16, generator=gen) < 0.6
    empty[0, 2] = True              # a row with no return: it copies a neighbour row
    empty[1, 3] = True
    empty[1, 3, 0] = False          # one return at column 0: column 15 is its neighbour across the seam
    empty[2] = True                 # a scan with no return is kept
    filled = fill_empty(scan, empty)
    for b in range(2):
        expected = nearest_return_by_search(scan[b].numpy(), empty[b].numpy())
        assert np.array_equal(filled[b].numpy(), expected)
    assert torch.equal(filled[1, :, 3, 15], scan[1, :, 3, 0])
    assert torch.equal(filled[2], scan[2])


def scans_with_drops(tok: RangeTokenizer, drop: float, seed: int = 0) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    scan = torch.rand(2, 2, 8, 32, generator=gen) * 1.5 - 0.5            # returns: above the empty threshold
    empty = torch.rand(2, 8, 32, generator=gen) < drop
    return torch.where(empty.unsqueeze(1), -1.0, scan)


def test_a_drop_mask_round_trips_scans_and_its_tokens_turn_with_the_sensor():
    tok = RangeTokenizer((8, 32), (2, 8), drop_mask=True, empty_below=-0.75)
    scans = scans_with_drops(tok, 0.3)
    tokens = tok.encode(scans)
    assert tokens.values.shape == (2, 16, 3 * 16) and tok.channels == 48
    assert torch.equal(tok.decode(tokens), scans)
    mask = tokens.values.reshape(2, 4, 4, 3, 2, 8)[:, :, :, 2]          # the third plane is the mask
    assert set(mask.unique().tolist()) == {-1.0, 1.0}
    assert (mask < 0).float().mean() == (scans[:, 0] < -0.75).float().mean()
    assert tok.layout(2).values.shape == tokens.values.shape
    # the fill wraps with the azimuth, so turning the scan by whole patches turns its tokens
    turned = tok.encode(scans.roll(8, -1)).values.reshape(2, 4, 4, -1)
    assert torch.equal(turned, tokens.values.reshape(2, 4, 4, -1).roll(1, 2))


def test_a_sampler_unsure_of_a_drop_puts_no_point_near_the_sensor():
    """The average of a scan and the same scan with 30% of its rays dropped (what a one-step
    sampler regresses to): with the mask every pixel decodes at the wall's depth; without it the
    dropped rays decode halfway to -1, metres in front of the wall."""
    wall = torch.full((1, 2, 8, 32), 0.4)
    dropped = torch.where((torch.rand(1, 8, 32, generator=torch.Generator().manual_seed(1)) < 0.3), -1.0, wall)
    for drop_mask, depths in ((True, {0.4}), (False, {0.4, -0.3})):
        tok = RangeTokenizer((8, 32), (2, 8), drop_mask=drop_mask, empty_below=-0.75)
        mean = (tok.encode(wall).values + tok.encode(dropped).values) / 2
        decoded = tok.decode(tok.encode(wall).with_values(mean))
        assert set(round(v, 4) for v in decoded[0, 0].unique().tolist()) == depths


def test_the_drop_mask_option_reaches_the_tokenizer(registry):
    m = registry.modality("lidar", sensor="cpu32", patch=[4, 8], drop_mask=True)
    sensor = m.sensor
    assert m.tokenizer.channels == 3 * 32
    assert m.tokenizer.empty_below == pytest.approx(sensor.depth_to_unit(0.5 * sensor.min_depth))
