"""CSV cells the plugin once let through to an OverflowError or a silent 309-digit age: one line naming
the file, the line and the column.

The files are tests/data/bad/tabular/ (a few lines each): ages, incomes and cities.
"""

from pathlib import Path

import pytest

from flowcore.errors import DataError
from flowcore_tabular.codec import read_table
from flowcore_tabular.modality import Tabular
from flowcore_tabular.schema import Column

BAD = Path(__file__).resolve().parents[3] / "tests" / "data" / "bad" / "tabular"
GOOD = "age,income,city\n34,52000.5,Oslo\n41,61000.0,Bergen\n29,39000.0,Bergen\n52,70500.0,Oslo\n"


def one_line(err: pytest.ExceptionInfo, path: Path) -> str:
    message = str(err.value)
    assert message.startswith(f"{path}, line ") and "\n" not in message
    return message


@pytest.mark.parametrize("name, shown", [
    ("integer_400_digits.csv", "'77777777777777777777...77777777' (400 characters)"),
    ("integer_1e308.csv", "'1e308'"),
])
def test_an_integer_beyond_float64s_exact_range_is_refused_with_file_line_and_column(name, shown):
    path = BAD / name
    with pytest.raises(DataError) as err:
        read_table(path)
    assert one_line(err, path).startswith(f"{path}, line 4, column 'age': {shown} is not a valid integer "
                                          "(outside +-2^53 = 9007199254740992")


def test_fitting_a_modality_on_such_a_file_is_the_same_error():
    with pytest.raises(DataError, match=r"integer_1e308.csv, line 4, column 'age'"):
        Tabular(csv=str(BAD / "integer_1e308.csv"))


@pytest.fixture
def trained(tmp_path) -> Tabular:
    (tmp_path / "good.csv").write_text(GOOD)
    return Tabular(csv=str(tmp_path / "good.csv"))


@pytest.mark.parametrize("name", ["integer_400_digits.csv", "integer_1e308.csv"])
def test_reading_such_a_file_with_a_trained_schema_is_refused_too(trained, name):
    """What `flowcore invert` and `tabular-impute` read: the trained schema's codec."""
    for read in (trained.codec.read_all, trained.codec.read_columns):
        with pytest.raises(DataError) as err:
            read(BAD / name)
        assert "line 4, column 'age'" in one_line(err, BAD / name)


def test_an_unseen_category_names_the_file_line_and_column(trained):
    path = BAD / "unseen_category.csv"
    for read in (trained.codec.read_all, trained.codec.read_columns):
        with pytest.raises(DataError) as err:
            read(path)
        assert one_line(err, path).startswith(
            f"{path}, line 3, column 'city': category 'Trondheim' was not seen when the schema was fitted "
            "(2 known, e.g. ['Bergen', 'Oslo'])")


def test_rows_built_in_code_are_held_to_the_same_range(trained):
    row = {"age": 10**400, "income": 1.0, "city": "Oslo"}
    with pytest.raises(DataError, match=r"row 0: column 'age' \(integer\) holds .*\(401 characters\) of type int, "
                                        r"outside \+-2\^53"):
        trained.validate(row, "row 0")
    assert Column("age", "integer").parse(str(2**53), "x") == 2**53  # the limit itself is fine
