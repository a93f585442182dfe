"""Tokens: one per residue, quaternion + scaled CA, residue-index positions, masks; the core's SE(3) path."""

import math

import pytest
import torch

from flowcore.errors import ConfigError, DataError
from flowcore.flow.path import LinearPath, ProductPath, QuaternionPath
from flowcore.registry import get_registry
from flowcore_protein.modality import Protein


def test_tokens_hold_quaternion_and_ca_over_scale_with_residue_positions(ideal_samples):
    modality = Protein(translation_scale=10.0)
    short, long = sorted(ideal_samples[:2], key=len)
    ns, nl = len(short), len(long)
    assert ns < nl
    tokens = modality.tokenizer.encode(modality.collate([short, long]))
    assert tokens.values.shape == (2, nl, 7) and tokens.positions.shape == (2, nl, 1)
    assert tokens.mask.sum(1).tolist() == [ns, nl]
    assert torch.equal(tokens.values[0, :ns, :4], short[:, :4])
    assert torch.allclose(tokens.values[0, :ns, 4:] * 10.0, short[:, 4:])
    assert tokens.positions[1, :, 0].tolist() == list(range(nl))
    # padding holds the identity frame: a valid rotation, so paths never divide by zero there
    assert torch.equal(tokens.values[0, ns:], torch.tensor([1.0, 0, 0, 0, 0, 0, 0]).expand(nl - ns, 7))
    back = modality.split(modality.tokenizer.decode(tokens))
    assert torch.allclose(back[0], short, atol=1e-5) and torch.allclose(back[1], long, atol=1e-5)


def test_decode_returns_unit_canonical_quaternions_and_centred_ca():
    modality = Protein()
    tokens = modality.tokenizer.layout(2, [5, 9])
    values = torch.randn(2, 9, 7) * 2
    out = modality.tokenizer.decode(tokens.with_values(values))
    frames, mask = out["frames"], out["mask"]
    q = frames[..., :4][mask]
    assert torch.allclose(q.norm(dim=-1), torch.ones(len(q))) and (q[:, 0] >= 0).all()
    for i, n in enumerate([5, 9]):
        assert torch.allclose(frames[i, :n, 4:].mean(0), torch.zeros(3), atol=1e-5)


def test_layout_lengths_up_to_300_with_masks():
    tok = Protein().tokenizer
    tokens = tok.layout(3, [60, 256, 300])
    assert tokens.values.shape == (3, 300, 7)
    assert tokens.mask.sum(1).tolist() == [60, 256, 300]
    assert tok.layout(2).mask.sum(1).tolist() == [128, 128]
    assert tok.layout(5, [60, 80]).mask.sum(1).tolist() == [60, 80, 60, 80, 60]
    with pytest.raises(DataError, match="length >= 1"):
        tok.layout(2, [0])


def test_path_is_the_cores_so3_x_r3_product():
    path = Protein().path
    assert isinstance(path, ProductPath)
    assert [(type(p), c) for p, c in path.parts] == [(QuaternionPath, 4), (LinearPath, 3)]
    assert path.parts[0][0].schedule == "linear"


def test_rotation_schedule_option_reaches_the_cores_path():
    rotations = Protein(rotation_schedule="exp", rotation_rate=5.0).path.parts[0][0]
    assert (rotations.schedule, rotations.rate) == ("exp", 5.0)
    with pytest.raises(ConfigError, match="rotation_schedule: expected one of 'linear', 'exp', got 'cosine'"):
        get_registry().modality("protein", rotation_schedule="cosine")


def test_translation_prior_matches_the_data_scale(ideal_samples):
    """The unit Gaussian prior on token translations is N(0, 10 A) per axis; real-sized
    chains' centred CA coordinates have a per-axis spread of the same order."""
    from flowcore_protein.data import theseus

    try:
        ds = theseus("train", max_files=40)
        samples = [ds[i]["protein"] for i in range(len(ds))]
    except DataError:
        samples = ideal_samples
    modality = Protein()
    tokens = modality.tokenizer.encode(modality.collate(samples))
    std = tokens.values[..., 4:][tokens.mask].std()
    eps = modality.path.prior((64, 200, 7), generator=torch.Generator().manual_seed(0))
    assert 0.5 < float(std) < 1.5
    assert math.isclose(float(eps[..., 4:].std()), 1.0, abs_tol=0.02)
    assert torch.allclose(eps[..., :4].norm(dim=-1), torch.ones(64, 200), atol=1e-5)


def test_validate_names_the_problem():
    modality = Protein()
    with pytest.raises(DataError, match="where: a protein sample is frames"):
        modality.validate(torch.zeros(4, 3), "where")
    with pytest.raises(DataError, match="unit quaternions"):
        modality.validate(torch.zeros(4, 7), "here")
