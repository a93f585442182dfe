"""Fuzzing the protein codec and tokenizer: whatever the bytes, read gives valid frames or a DataError.

Hypothesis draws the inputs (derandomized: the same examples every run); each property holds
for every input: random bytes under each suffix, a real file cut short or with bytes
overwritten, extreme coordinates, empty files.
"""

import gzip
import tempfile
from pathlib import Path

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from flowcore.errors import DataError
from flowcore.testing import read_or_data_error
from flowcore_protein import geometry
from flowcore_protein.modality import FrameTokenizer, Protein

FUZZ = settings(max_examples=30, deadline=None, database=None, derandomize=True,
                suppress_health_check=[HealthCheck.function_scoped_fixture])
SUFFIXES = (".pdb", ".cif", ".bcif", ".pdb.gz")
MODALITY = Protein()
WORK = Path(tempfile.mkdtemp(prefix="flowcore-protein-fuzz-"))


def helix_frames(length: int = 10) -> torch.Tensor:
    atoms = geometry.build_backbone(torch.full((length,), -63.0), torch.full((length,), -43.0)).float()
    return geometry.frames_from_backbone(atoms)


def written(suffix: str) -> bytes:
    """The bytes of a real 10-residue helix in the format (PDB written by the codec, gzip of it)."""
    path = WORK / "real.pdb"
    if not path.exists():
        MODALITY.codec.write(helix_frames(), path)
    raw = path.read_bytes()
    return gzip.compress(raw, mtime=0) if suffix == ".pdb.gz" else raw


def read_bytes(blob: bytes, suffix: str) -> str | None:
    path = WORK / f"fuzzed{suffix}"
    path.write_bytes(blob)
    message = read_or_data_error(MODALITY, MODALITY.codec, path)
    assert message is None or f"fuzzed{suffix}" in message
    return message


@FUZZ
@given(blob=st.binary(max_size=2048), suffix=st.sampled_from(SUFFIXES))
def test_random_bytes_read_or_raise_data_error(blob, suffix):
    read_bytes(blob, suffix)


@FUZZ
@given(data=st.data(), suffix=st.sampled_from((".pdb", ".pdb.gz")))
def test_truncated_files_read_or_raise_data_error(data, suffix):
    raw = written(suffix)
    read_bytes(raw[:data.draw(st.integers(0, len(raw) - 1))], suffix)


@FUZZ
@given(data=st.data())
def test_pdb_files_with_overwritten_bytes_read_or_raise_data_error(data):
    raw = bytearray(written(".pdb"))
    for _ in range(data.draw(st.integers(1, 8))):
        raw[data.draw(st.integers(0, len(raw) - 1))] = data.draw(st.sampled_from(b"0123456789.-+ eEnaNAOCX\n"))
    read_bytes(bytes(raw), ".pdb")


@FUZZ
@given(shift=st.floats(-1e5, 1e5), scale=st.sampled_from((1e-6, 1.0, 1e3)))
def test_extreme_coordinates_write_and_read_back_or_raise_data_error(shift, scale):
    frames = helix_frames()
    frames[:, 4:] = frames[:, 4:] * scale + shift
    path = WORK / "extreme.pdb"
    try:
        MODALITY.codec.write(frames, path)
    except DataError as exc:  # beyond PDB's 8.3f columns
        assert str(path) in str(exc)
        return
    read_bytes(path.read_bytes(), ".pdb")


@pytest.mark.parametrize("suffix", SUFFIXES)
def test_empty_files_are_data_errors_naming_them(suffix):
    assert read_bytes(b"", suffix) is not None


@FUZZ
@given(b=st.integers(1, 3), length=st.integers(1, 12), scale=st.sampled_from((1e-3, 1.0, 1e4)), seed=st.integers(0, 99))
def test_tokenizer_round_trips_valid_frames(b, length, scale, seed):
    g = torch.Generator().manual_seed(seed)
    tok = FrameTokenizer()
    mask = torch.rand(b, length, generator=g) < 0.8
    mask[:, 0] = True
    raw = torch.cat([torch.randn(b, length, 4, generator=g), torch.randn(b, length, 3, generator=g) * scale], -1)
    latent = tok.decode(tok.encode({"frames": raw, "mask": mask}))  # unit, canonical, centred: a valid batch
    again = tok.decode(tok.encode(latent))
    assert torch.equal(again["mask"], mask)
    assert torch.allclose(again["frames"], latent["frames"], atol=1e-5 * max(scale, 1.0))


@pytest.mark.parametrize("frames, mask", [((2, 5, 6), (2, 5)), ((2, 5, 7), (2, 4)), ((5, 7), (5,))])
def test_tokenizer_refuses_misshapen_batches_with_data_error(frames, mask):
    with pytest.raises(DataError):
        FrameTokenizer().encode({"frames": torch.zeros(frames), "mask": torch.ones(mask, dtype=torch.bool)})
