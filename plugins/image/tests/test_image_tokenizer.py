"""Patch tokens: each token is its patch, positions are (row, col), any size round-trips."""

import pytest
import torch

from flowcore.errors import DataError
from flowcore.testing import pad_tokens
from flowcore_image.tokenizer import PatchTokenizer


def test_each_token_is_the_patch_at_its_position():
    p = 4
    x = torch.randn(2, 3, 12, 20)  # non-square: 3 x 5 patches
    tokens = PatchTokenizer(3, patch=p).encode(x)
    assert tokens.values.shape == (2, 15, 3 * p * p)
    assert tokens.positions.shape == (2, 15, 2) and tokens.mask.all()
    for k in range(15):
        r, c = (int(v) for v in tokens.positions[1, k])
        patch = x[1, :, r * p:(r + 1) * p, c * p:(c + 1) * p]
        assert torch.equal(tokens.values[1, k], patch.reshape(-1))
    assert {tuple(map(int, q)) for q in tokens.positions[0]} == {(r, c) for r in range(3) for c in range(5)}


@pytest.mark.parametrize("shape,p", [((3, 1, 8, 8), 1), ((2, 4, 6, 10), 2), ((1, 3, 28, 4), 4)])
def test_round_trip_is_exact(shape, p):
    x = torch.randn(shape)
    tok = PatchTokenizer(shape[1], patch=p)
    assert torch.equal(tok.decode(tok.encode(x)), x)


def test_decode_places_tokens_by_position_not_order():
    x = torch.randn(2, 1, 8, 6)
    tok = PatchTokenizer(1, patch=2)
    tokens = tok.encode(x)
    perm = torch.randperm(tokens.values.shape[1], generator=torch.Generator().manual_seed(0))
    shuffled = type(tokens)(tokens.values[:, perm], tokens.positions[:, perm], tokens.mask[:, perm])
    assert torch.equal(tok.decode(shuffled), x)


def test_padded_batch_of_mixed_sizes_decodes_each_image():
    tok = PatchTokenizer(3, patch=2)
    a, b = torch.randn(1, 3, 4, 8), torch.randn(1, 3, 6, 6)
    padded = pad_tokens([tok.encode(a), tok.encode(b)])
    assert padded.mask.sum(1).tolist() == [8, 9]
    out = tok.decode(padded)
    assert torch.equal(out[0], a[0]) and torch.equal(out[1], b[0])


def test_layout_counts_tokens_from_image_size_and_downsample():
    tok = PatchTokenizer(4, patch=2, downsample=4, default_size=(32, 32))
    assert tok.layout(3).values.shape == (3, 16, 16)  # 32 / 4 / 2 = 4 per side
    wide = tok.layout(1, size=[16, 64])
    assert wide.values.shape == (1, 16, 16)
    assert wide.positions[0, :, 0].max() == 1 and wide.positions[0, :, 1].max() == 7
    assert not wide.values.any()


def test_sizes_that_do_not_divide_are_refused():
    tok = PatchTokenizer(1, patch=2, downsample=4)
    with pytest.raises(DataError, match="multiple"):
        tok.layout(1, size=(28, 28))
    with pytest.raises(DataError, match="size"):
        PatchTokenizer(1, patch=2).layout(1)
