"""Fuzzing the core's codecs (toy2d points CSV, label text) and tokenizers, and the conformance kit's own check.

Hypothesis draws the inputs (derandomized: the same examples every run). The properties hold
for every input: reading gives valid samples or a DataError naming the file; a tokenizer gives
back what it was given or raises DataError.
"""

import tempfile
from pathlib import Path

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from flowcore.builtins.label import Label, OneHotTokenizer
from flowcore.builtins.toy2d import PointTokenizer, Toy2d
from flowcore.errors import DataError
from flowcore.modality import Codec
from flowcore.testing import check_codec_damage, read_or_data_error

FUZZ = settings(max_examples=40, deadline=None, database=None, derandomize=True,
                suppress_health_check=[HealthCheck.function_scoped_fixture])
WORK = Path(tempfile.mkdtemp(prefix="flowcore-core-fuzz-"))
TOY2D, LABEL = Toy2d(), Label(classes=["cat", "dog", "emu"])
NUMBERS = ("0", "-1.5", "1e308", "1e39", "-1e39", "1e-320", "inf", "-inf", "nan", "NaN", "1_0", "\u0663", "0x10",
           "9" * 400, "", " ", "x")


def read(modality, blob: bytes, suffix: str) -> str | None:
    path = WORK / f"fuzzed{suffix}"
    path.write_bytes(blob)
    message = read_or_data_error(modality, modality.codec, path)
    assert message is None or f"fuzzed{suffix}" in message
    return message


@FUZZ
@given(blob=st.binary(max_size=1024))
def test_points_csv_random_bytes_read_or_raise_data_error(blob):
    read(TOY2D, blob, ".csv")


@FUZZ
@given(points=st.lists(st.tuples(st.sampled_from(NUMBERS), st.sampled_from(NUMBERS)), max_size=6),
       header=st.booleans())
def test_points_csv_extreme_numbers_read_as_finite_float32_or_raise_data_error(points, header):
    text = ("x,y\n" if header else "") + "".join(f"{x},{y}\n" for x, y in points)
    if read(TOY2D, text.encode(), ".csv") is None:
        back = TOY2D.codec.read_all(WORK / "fuzzed.csv")
        assert all(torch.isfinite(p).all() and p.dtype == torch.float32 for p in back)


@FUZZ
@given(data=st.data())
def test_points_csv_truncated_reads_or_raises_data_error(data):
    TOY2D.codec.write_all([torch.tensor([0.5, -1.25]), torch.tensor([3.0, 4.0])], WORK, "real")
    raw = (WORK / "real.csv").read_bytes()
    read(TOY2D, raw[:data.draw(st.integers(0, len(raw) - 1))], ".csv")


@FUZZ
@given(blob=st.one_of(st.binary(max_size=256), st.sampled_from(NUMBERS).map(str.encode),
                      st.sampled_from(["cat", "dog\n", " emu ", "3", "-1", "2.0", "Cat"]).map(str.encode)))
def test_label_text_reads_a_class_or_raises_data_error(blob):
    if read(LABEL, blob, ".txt") is None:
        assert LABEL.codec.read(WORK / "fuzzed.txt") in (0, 1, 2)


@pytest.mark.parametrize("modality, suffix", [(TOY2D, ".csv"), (LABEL, ".txt")])
def test_empty_files_are_data_errors_naming_them(modality, suffix):
    assert read(modality, b"", suffix) is not None


@FUZZ
@given(b=st.integers(0, 5), scale=st.sampled_from((0.0, 1e-38, 1.0, 1e38)), seed=st.integers(0, 99))
def test_point_tokenizer_round_trips(b, scale, seed):
    points = torch.randn(b, 2, generator=torch.Generator().manual_seed(seed)) * scale
    tok = PointTokenizer()
    assert torch.equal(tok.decode(tok.encode(points)), points)


@pytest.mark.parametrize("shape", [(3,), (3, 3), (2, 1, 2)])
def test_point_tokenizer_refuses_other_shapes_with_data_error(shape):
    with pytest.raises(DataError):
        PointTokenizer().encode(torch.zeros(shape))


@FUZZ
@given(labels=st.lists(st.integers(-2**40, 2**40) | st.integers(0, 2), max_size=8), floats=st.booleans())
def test_one_hot_tokenizer_round_trips_or_raises_data_error(labels, floats):
    tok = OneHotTokenizer(3)
    x = torch.tensor(labels, dtype=torch.float64 if floats else torch.long)
    try:
        tokens = tok.encode(x)
    except DataError:
        assert any(not 0 <= v < 3 for v in labels)
        return
    assert tok.decode(tokens).tolist() == labels


@pytest.mark.parametrize("value", [0.5, float("nan"), float("inf")])
def test_one_hot_tokenizer_refuses_fractional_or_non_finite_indices(value):
    with pytest.raises(DataError):
        OneHotTokenizer(3).encode(torch.tensor([1.0, value]))


class Careless(Codec):
    """A codec that lets a parsing error escape: the kit must catch it."""

    extensions = (".txt",)

    def read(self, path: Path) -> int:
        return int(Path(path).read_text())

    def write(self, sample: int, path: Path) -> None:
        Path(path).write_text(str(sample))


def test_the_kit_catches_a_codec_that_lets_other_exceptions_escape(tmp_path):
    careless = Label(classes=["a", "b"])
    careless.codec = Careless()
    careless.codec.write(1, tmp_path / "one.txt")
    with pytest.raises(AssertionError, match=r"raised ValueError.*must raise flowcore.errors.DataError"):
        check_codec_damage(careless, tmp_path / "one.txt", tmp_path / "damaged")
    check_codec_damage(LABEL, tmp_path / "one.txt", tmp_path / "damaged")  # the real codec passes
