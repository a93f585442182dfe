import datetime as dt

import pytest

from flowcore.errors import DataError
from flowcore_tabular.codec import TableCsv, read_table


def test_inference_gives_each_column_its_kind(mixed_csv):
    schema, rows = read_table(mixed_csv)
    kinds = {c.name: c.kind for c in schema.columns}
    assert kinds == {"id": "integer", "height": "numeric", "when": "datetime", "member": "boolean",
                     "colour": "categorical", "day": "datetime", "note": "categorical"}
    assert rows[0] == {"id": 1, "height": 1.5, "when": dt.datetime(2020, 1, 2, 3, 4, 5), "member": True,
                       "colour": "red", "day": dt.date(2020, 1, 2), "note": "a"}
    # "", and "?" are missing markers by default
    assert rows[1]["height"] is None and rows[1]["note"] is None and rows[4]["note"] is None
    assert rows[3]["when"] is None and rows[3]["colour"] is None
    assert rows[2]["member"] is True  # TRUE reads as the same boolean
    has_missing = {c.name for c in schema.columns if c.has_missing}
    assert has_missing == {"height", "when", "colour", "note"}
    assert schema["colour"].categories == ("blue", "green", "red")
    assert schema["height"].decimals == 3
    assert schema["day"].date_only and not schema["when"].date_only


def test_overrides_replace_inferred_kinds(mixed_csv):
    schema, rows = read_table(mixed_csv, schema={"id": "categorical", "height": "numeric"})
    assert schema["id"].kind == "categorical"
    assert rows[0]["id"] == "1"


def test_a_value_that_does_not_parse_names_its_line_and_column(tmp_path):
    path = tmp_path / "bad.csv"
    path.write_text("a,b\n1,x\n2,y\n3.5,z\n")
    with pytest.raises(DataError, match=r"line 4, column 'a': '3.5' is not a valid integer"):
        read_table(path, schema={"a": "integer"})
    with pytest.raises(DataError, match=r"line 2, column 'b': 'x' is not a valid numeric"):
        read_table(path, schema={"b": "numeric"})


def test_the_codec_checks_cells_against_its_fixed_schema(mixed_csv, tmp_path):
    schema, _ = read_table(mixed_csv)
    bad = tmp_path / "more.csv"
    bad.write_text("id,height,when,member,colour,day,note\n7,1.0,2020-01-01T00:00:00,maybe,red,2020-01-01,a\n")
    with pytest.raises(DataError, match=r"more.csv, line 2, column 'member': 'maybe' is not a valid boolean"):
        TableCsv(schema).read_all(bad)
    unknown = tmp_path / "cols.csv"
    unknown.write_text("id,height\n1,2\n")
    with pytest.raises(DataError, match="does not name the schema's columns"):
        TableCsv(schema).read_all(unknown)


def test_unknown_override_and_kind_are_errors(mixed_csv):
    with pytest.raises(DataError, match="columns \\['nope'\\]"):
        read_table(mixed_csv, schema={"nope": "integer"})
    with pytest.raises(DataError, match="use one of"):
        read_table(mixed_csv, schema={"id": "float"})


def test_csv_round_trip_gives_the_same_rows_and_spellings(mixed_csv, tmp_path):
    schema, rows = read_table(mixed_csv)
    codec = TableCsv(schema)
    [out] = codec.write_all(rows, tmp_path / "out")
    assert codec.read_all(out) == rows
    text = out.read_text().splitlines()
    assert text[0] == "id,height,when,member,colour,day,note"
    assert text[1] == "1,1.5,2020-01-02T03:04:05,true,red,2020-01-02,a"  # booleans keep the file's spelling


def test_zero_one_columns_stay_integers_unless_declared(tmp_path):
    path = tmp_path / "b.csv"
    path.write_text("flag,yes\n0,yes\n1,no\n1,yes\n")
    schema, rows = read_table(path)
    assert schema["flag"].kind == "integer" and schema["yes"].kind == "boolean"
    schema, rows = read_table(path, schema={"flag": "boolean"})
    assert [r["flag"] for r in rows] == [False, True, True]
    assert schema["flag"].format(True) == "1"
