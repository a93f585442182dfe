"""Fuzzing the image codec and tokenizer: whatever the bytes, read gives valid images or a DataError.

Hypothesis draws the inputs (derandomized: the same examples every run, so the suite stays
stable); each property says what must hold for every input, not for one chosen file.
"""

import tempfile
from pathlib import Path

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from flowcore.errors import DataError
from flowcore.testing import read_or_data_error
from flowcore_image.codec import ImageCodec
from flowcore_image.modality import Image
from flowcore_image.tokenizer import PatchTokenizer

FUZZ = settings(max_examples=30, deadline=None, database=None, derandomize=True,
                suppress_health_check=[HealthCheck.function_scoped_fixture])
SUFFIXES = (".png", ".jpg", ".webp")
MODALITY = Image(channels=3)
WORK = Path(tempfile.mkdtemp(prefix="flowcore-image-fuzz-"))


def written(suffix: str) -> bytes:
    """The bytes of a real 12x10 RGB file of the format."""
    path = WORK / f"real{suffix}"
    if not path.exists():
        g = torch.Generator().manual_seed(0)
        ImageCodec().write(torch.rand(3, 12, 10, generator=g) * 2 - 1, path)
    return path.read_bytes()


def read_bytes(blob: bytes, suffix: str) -> str | None:
    path = WORK / f"fuzzed{suffix}"
    path.write_bytes(blob)
    return read_or_data_error(MODALITY, MODALITY.codec, path)


@FUZZ
@given(blob=st.binary(max_size=2048), suffix=st.sampled_from(SUFFIXES))
def test_random_bytes_read_or_raise_data_error(blob, suffix):
    message = read_bytes(blob, suffix)
    assert message is None or f"fuzzed{suffix}" in message


@FUZZ
@given(data=st.data(), suffix=st.sampled_from(SUFFIXES))
def test_truncated_files_read_or_raise_data_error(data, suffix):
    raw = written(suffix)
    cut = data.draw(st.integers(0, len(raw) - 1))
    message = read_bytes(raw[:cut], suffix)
    assert message is None or f"fuzzed{suffix}" in message


@FUZZ
@given(data=st.data(), suffix=st.sampled_from(SUFFIXES))
def test_files_with_overwritten_bytes_read_or_raise_data_error(data, suffix):
    raw = bytearray(written(suffix))
    for _ in range(data.draw(st.integers(1, 8))):
        raw[data.draw(st.integers(0, len(raw) - 1))] = data.draw(st.integers(0, 255))
    read_bytes(bytes(raw), suffix)


@FUZZ
@given(value=st.floats(width=32), suffix=st.sampled_from((".png", ".webp")))
def test_extreme_values_are_written_clamped_and_read_back_in_range(value, suffix):
    sample = torch.full((3, 4, 5), value)
    path = WORK / f"extreme{suffix}"
    ImageCodec().write(sample, path)
    back = ImageCodec().read(path)
    assert back.shape == (3, 4, 5) and torch.isfinite(back).all() and back.abs().max() <= 1
    if value == value:  # NaN has no clamped value to compare with
        assert torch.allclose(back, sample.clamp(-1, 1), atol=1 / 255 + 1e-6)


def test_empty_file_is_a_data_error_naming_it():
    with pytest.raises(DataError, match="empty.png"):
        (WORK / "empty.png").write_bytes(b"")
        ImageCodec().read(WORK / "empty.png")


@FUZZ
@given(b=st.integers(1, 3), c=st.sampled_from((1, 3)), h=st.integers(1, 9), w=st.integers(1, 9),
       p=st.sampled_from((1, 2, 4)), scale=st.sampled_from((1.0, 1e-30, 1e30)))
def test_tokenizer_round_trips_or_raises_data_error(b, c, h, w, p, scale):
    x = torch.randn(b, c, h, w) * scale
    tok = PatchTokenizer(c, patch=p)
    try:
        tokens = tok.encode(x)
    except DataError:
        assert h % p or w % p  # only sizes the patch does not divide are refused
        return
    assert torch.equal(tok.decode(tokens), x)


@pytest.mark.parametrize("shape", [(0, 3, 4, 4), (2, 3, 0, 4), (2, 3), (2, 1, 4, 4)])
def test_tokenizer_refuses_empty_or_misshapen_batches_with_data_error(shape):
    with pytest.raises(DataError):
        PatchTokenizer(3, patch=2).encode(torch.zeros(shape))
