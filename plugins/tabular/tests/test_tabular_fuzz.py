"""Fuzzing the CSV codec, schema inference and the table tokenizers.

Hypothesis draws the inputs (derandomized: the same examples every run). The properties:
whatever the bytes, reading gives rows of the schema or a DataError naming the file; rows that
read encode without error; the tokenizers give back the rows they were given.
"""

import tempfile
from pathlib import Path

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from flowcore.errors import DataError
from flowcore.testing import read_or_data_error
from flowcore_tabular.codec import read_table
from flowcore_tabular.encoding import TableEncoder, collate
from flowcore_tabular.modality import Tabular

FUZZ = settings(max_examples=30, deadline=None, database=None, derandomize=True,
                suppress_health_check=[HealthCheck.function_scoped_fixture])
WORK = Path(tempfile.mkdtemp(prefix="flowcore-tabular-fuzz-"))
GOOD = ("id,height,when,member,colour,day\n"
        + "".join(f"{i},{1.5 + i / 100:.2f},2020-01-{1 + i % 28:02d}T0{i % 10}:00:00,{'true' if i % 3 else 'false'},"
                  f"{'red' if i % 2 else 'blue'},2021-02-{1 + i % 27:02d}\n" for i in range(40))
        + "40,,2020-03-01T00:00:00,false,,2021-03-01\n")
#: cells a person or a broken export puts in a CSV: huge, tiny, non-finite, odd digits and spellings
EXTREME_CELLS = ("1e308", "-1e308", "9" * 400, "-" + "9" * 30, "1e-320", "inf", "-inf", "NaN", "nan", "1e39",
                 "9007199254740993", "0x1F", "1_000", "\u0663", " 7 ", "", "?", "2020-13-45", "9999-12-31T23:59:59",
                 "0001-01-01", "true", "TRUE", "yes", "\x00", "é", '"', "a,b")


def modality() -> Tabular:
    path = WORK / "good.csv"
    if not path.exists():
        path.write_text(GOOD)
    return Tabular(csv=str(path))


MODALITY = modality()


def read_text(text: str) -> str | None:
    path = WORK / "fuzzed.csv"
    path.write_text(text)
    message = read_or_data_error(MODALITY, MODALITY.codec, path)
    assert message is None or "fuzzed.csv" in message
    return message


@FUZZ
@given(blob=st.binary(max_size=2048))
def test_random_bytes_read_or_raise_data_error(blob):
    path = WORK / "fuzzed.csv"
    path.write_bytes(blob)
    message = read_or_data_error(MODALITY, MODALITY.codec, path)
    assert message is None or "fuzzed.csv" in message


@FUZZ
@given(data=st.data())
def test_truncated_tables_read_or_raise_data_error(data):
    read_text(GOOD[:data.draw(st.integers(0, len(GOOD) - 1))])


@FUZZ
@given(cells=st.lists(st.tuples(st.integers(1, 41), st.integers(0, 5), st.sampled_from(EXTREME_CELLS)),
                      min_size=1, max_size=4))
def test_extreme_cells_read_or_raise_data_error(cells):
    lines = [line.split(",") for line in GOOD.splitlines()]
    for row, col, text in cells:
        lines[row][col] = text
    read_text("\n".join(",".join(line) for line in lines) + "\n")


@FUZZ
@given(cells=st.lists(st.tuples(st.integers(1, 41), st.integers(0, 5),
                                st.one_of(st.sampled_from(EXTREME_CELLS), st.text(max_size=12))),
                      min_size=1, max_size=4))
def test_inferred_tables_fit_and_encode_or_raise_data_error(cells):
    """read_table infers the kinds, then the encoder fits and encodes: no OverflowError anywhere."""
    lines = [line.split(",") for line in GOOD.splitlines()]
    for row, col, text in cells:
        lines[row][col] = text.replace(",", ";").replace("\n", " ").replace("\r", " ").replace('"', "'")
    path = WORK / "inferred.csv"
    path.write_text("\n".join(",".join(line) for line in lines) + "\n")
    try:
        schema, rows = read_table(path)
        encoder = TableEncoder(schema, rows)
        x = encoder.encode(collate(schema, rows))
    except DataError as exc:
        assert "inferred.csv" in str(exc) or "column" in str(exc)
        return
    assert torch.isfinite(x).all()


@pytest.mark.parametrize("text", ["", "\n\n", "id,height,when,member,colour,day\n"])
def test_empty_tables_are_data_errors_naming_the_file(text):
    assert read_text(text) is not None


@FUZZ
@given(picks=st.lists(st.tuples(*[st.integers(0, 40)] * 6), min_size=1, max_size=8),
       tokenizer=st.sampled_from(("row", "column")))
def test_tokenizers_round_trip_rows_recombined_from_the_table(picks, tokenizer):
    """Every column value of a row drawn from a (possibly different) training row: the tokens give it back."""
    table = Tabular(csv=str(WORK / "good.csv"), tokenizer=tokenizer)
    names = table.schema.names
    rows = [{c: table.train_rows[k][c] for c, k in zip(names, pick)} for pick in picks]
    tok = table.tokenizer
    assert table.split(tok.decode(tok.encode(table.collate(rows)))) == rows
