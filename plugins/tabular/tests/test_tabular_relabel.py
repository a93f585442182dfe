"""Relabelled columns: found where a bijection is planted, not where it is broken or rare; decoded by lookup."""

import numpy as np
import pytest
import torch

from flowcore.errors import DataError
from flowcore.train.sampling import SamplingOptions
from flowcore_tabular.encoding import TableEncoder, collate, split
from flowcore_tabular.impute import impute
from flowcore_tabular.modality import Tabular
from flowcore_tabular.relabel import MIN_COUNT, find_relabels, relabels_option
from flowcore_tabular.schema import schema_from_kinds
from flowcore_tabular.tokenizers import ColumnTokenizer

GRADES = {"low": 1, "mid": 2, "high": 3, "top": 4}


def planted_rows(n=200, seed=0):
    """``grade_num`` is ``grade`` relabelled (GRADES, planted); ``colour`` and ``size`` are independent of it."""
    rng = np.random.default_rng(seed)
    rows = []
    for i in range(n):
        grade = list(GRADES)[i % 4]
        rows.append({"grade_num": GRADES[grade], "size": round(float(rng.normal()), 2), "grade": grade,
                     "colour": ["red", "blue", "green", "grey"][int(rng.integers(4))],
                     "member": bool(rng.random() < 0.5)})
    return rows


KINDS = {"grade_num": "integer", "size": "numeric", "grade": "categorical", "colour": "categorical",
         "member": "boolean"}


def test_a_planted_bijection_is_found_with_its_pairs():
    rows = planted_rows()
    [rel] = find_relabels(schema_from_kinds(KINDS, rows), rows)
    # the categorical is modelled (one-hot already) though the integer comes first in the table
    assert (rel.column, rel.source) == ("grade_num", "grade")
    assert rel.forward() == GRADES
    assert rel.inverse() == {v: k for k, v in GRADES.items()}


def test_a_broken_or_rare_pairing_is_not_found():
    rows = planted_rows()
    rows[7]["grade_num"] = 1 if rows[7]["grade_num"] != 1 else 2  # one row off the relation
    assert find_relabels(schema_from_kinds(KINDS, rows), rows) == ()
    rows = planted_rows(n=4 * (MIN_COUNT - 1))  # every level seen MIN_COUNT - 1 times
    assert find_relabels(schema_from_kinds(KINDS, rows), rows) == ()
    assert len(find_relabels(schema_from_kinds(KINDS, rows), rows, min_count=MIN_COUNT - 1)) == 1


def test_a_category_absent_from_the_rows_blocks_the_lookup():
    rows = planted_rows()
    schema = schema_from_kinds(KINDS, rows + [{**rows[0], "grade": "none", "grade_num": 0}])
    assert find_relabels(schema, rows) == ()  # "none" could be generated but has no label


def test_relabelled_column_has_no_dims_and_round_trips_exactly():
    rows = planted_rows()
    plain = schema_from_kinds(KINDS, rows)
    schema = relabels_option(plain, rows, "auto")
    enc, full = TableEncoder(schema, rows, integer_levels=20), TableEncoder(plain, rows, integer_levels=20)
    assert [b.column.name for b in enc.blocks] == ["size", "grade", "colour", "member"]
    assert enc.dim == full.dim - len(GRADES)
    assert split(schema, enc.decode(enc.encode(collate(schema, rows)))) == rows
    # any vector decodes to rows on the relation
    x = torch.randn(500, enc.dim, generator=torch.Generator().manual_seed(1))
    assert all(GRADES[r["grade"]] == r["grade_num"] for r in split(schema, enc.decode(x)))


def test_option_off_and_explicit_pairs():
    rows = planted_rows()
    plain = schema_from_kinds(KINDS, rows)
    assert relabels_option(plain, rows, "off").relabels == ()
    assert relabels_option(plain, rows, False).relabels == ()  # YAML reads `off` as false
    [rel] = relabels_option(plain, rows, {"grade": "grade_num"}).relabels  # the other way round
    assert (rel.column, rel.source, rel.forward()) == ("grade", "grade_num", {v: k for k, v in GRADES.items()})
    with pytest.raises(DataError, match="colour = .* goes with grade"):
        relabels_option(plain, rows, {"grade": "colour"})
    with pytest.raises(DataError, match="size.*numeric"):
        relabels_option(plain, rows, {"size": "grade"})


def write_planted_csv(path, rows):
    lines = [",".join(KINDS)] + [",".join(str(r[c]).lower() if isinstance(r[c], bool) else str(r[c]) for c in KINDS)
                                 for r in rows]
    path.write_text("\n".join(lines) + "\n")
    return path


def test_imputation_given_the_relabelled_column_holds_its_source(tmp_path):
    rows = planted_rows()
    csv = write_planted_csv(tmp_path / "planted.csv", rows)
    modality = Tabular(csv=str(csv), schema={"grade_num": "integer"}, tokenizer="column", masking=0.5)
    assert [(r.column, r.source) for r in modality.schema.relabels] == [("grade_num", "grade")]
    assert modality.tokenizer.n_columns == 4
    assert torch.equal(modality.given_mask(["grade_num"]), modality.given_mask(["grade"]))

    class Still(torch.nn.Module):  # velocity 0: the free columns stay at their prior draw
        def forward(self, tokens, t):
            return {k: torch.zeros_like(v.values) for k, v in tokens.items()}

    given = [{"grade_num": v} for v in (4, 1, 3, 2)]
    out = impute(Still(), modality, given, ["grade_num"], SamplingOptions(steps=2), method="masked")
    assert [r["grade"] for r in out] == ["top", "low", "high", "mid"]
    assert [r["grade_num"] for r in out] == [4, 1, 3, 2]
    with pytest.raises(DataError, match="grade_num.*7"):
        impute(Still(), modality, [{"grade_num": 7}], ["grade_num"], SamplingOptions(steps=2), method="masked")


def test_adult_education_num_relabels_education():
    try:
        modality = Tabular(dataset="adult", tokenizer="column")
    except DataError as exc:
        pytest.skip(str(exc))
    # UCI Adult's education_num is the years-of-education code of education (Preschool 1 ... Doctorate 16)
    [rel] = modality.schema.relabels
    assert (rel.column, rel.source) == ("education_num", "education")
    codes = rel.forward()
    assert (codes["Preschool"], codes["HS-grad"], codes["Bachelors"], codes["Doctorate"]) == (1, 9, 13, 16)
    assert sorted(codes.values()) == list(range(1, 17))
    assert isinstance(modality.tokenizer, ColumnTokenizer) and modality.tokenizer.n_columns == 14
