"""Column types of a table: what each CSV cell means, inferred from text or given in the config.

A row (one sample) is a ``dict`` from column name to a Python value, ``None`` where missing:

=============  ==========================  ===========================================
kind           value                       written as
=============  ==========================  ===========================================
numeric        ``float``                   ``repr`` (shortest text that reads back equal)
integer        ``int``                     decimal digits
categorical    ``str``                     the category itself
boolean        ``bool``                    the literal pair the file used (true/false, 1/0, yes/no)
datetime       ``datetime`` (or ``date``)  ISO 8601 (date only when every value was a date)
=============  ==========================  ===========================================

Inference (per column, over the non-missing cells): every cell a boolean literal -> boolean;
every cell an integer -> integer; a number -> numeric; ISO date/time -> datetime; anything
else -> categorical. ``overrides`` (``{column: kind}``) replace what inference would choose;
a cell that then does not parse is a :class:`~flowcore.errors.DataError` naming its line and
column.

Values out of a kind's range are refused, not rounded: an integer beyond +-2^53 (the
batches hold integers as float64, exact only that far; a 400-digit integer, or 1e308 in an
integer column) and a non-finite number. A column whose cells are all of one kind but for
such a value is inferred as that kind, so the value is named rather than the column turned
categorical. A categorical cell of a fitted schema (a trained table's) must be one of the
categories it was fitted on.
"""

from __future__ import annotations

import datetime as dt
import functools
import math
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any, Iterable, Mapping, Sequence

from flowcore.errors import DataError

if TYPE_CHECKING:
    from flowcore_tabular.relabel import Relabel

KINDS = ("numeric", "integer", "categorical", "boolean", "datetime")
#: kinds that become one quantile-normal dimension; the rest become a one-hot block
CONTINUOUS = ("numeric", "integer", "datetime")
DEFAULT_MISSING = ("", "?", "NA", "N/A", "NaN", "nan", "null", "NULL", "None")
BOOL_LITERALS = {("false", "true"), ("0", "1"), ("no", "yes"), ("f", "t"), ("n", "y")}
#: numeric columns keep at most this many decimals when decoded
MAX_DECIMALS = 10

EPOCH = dt.datetime(1970, 1, 1)
#: datetime resolutions tried, coarsest first (seconds)
DATETIME_UNITS = (86400.0, 3600.0, 60.0, 1.0)
#: integer values must lie within +-2^53: float64 (a batch's numeric tensor) holds them exactly that far
INTEGER_LIMIT = 2**53


class OutOfRange(ValueError):
    """A cell that reads as the kind's number but lies outside the range the kind can hold."""


@dataclass(frozen=True)
class Column:
    """One column: its kind and what decoding needs to give values back their type.

    categories  categorical: the values seen, sorted; boolean: (false literal, true literal)
    decimals    numeric: decimals kept when decoding (learned from the data), None = all
    date_only   datetime: the column held dates without a time of day
    unit        datetime: the coarsest of day / hour / minute / second / µs (in seconds)
                that every value is a whole multiple of; decoding rounds to it
    has_missing the column may be missing (it gets a missing indicator)
    """

    name: str
    kind: str
    categories: tuple[str, ...] = ()
    has_missing: bool = False
    decimals: int | None = None
    date_only: bool = False
    unit: float = 1e-6

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise DataError(f"column {self.name!r}: unknown kind {self.kind!r}; use one of {KINDS}")

    @property
    def continuous(self) -> bool:
        return self.kind in CONTINUOUS

    def parse(self, text: str, where: str) -> Any:
        """A non-missing cell -> its Python value; DataError naming ``where`` if it does not parse."""
        try:
            return _PARSERS[self.kind](self, text)
        except (ValueError, OverflowError) as exc:
            raise DataError(f"{where}, column {self.name!r}: {_cell(text)} is not a valid {self.kind} "
                            f"({exc})") from None

    def format(self, value: Any) -> str:
        """A value -> its CSV cell text (the inverse of :meth:`parse`)."""
        if value is None:
            return ""
        if self.kind == "numeric":
            return repr(float(value))
        if self.kind == "integer":
            return str(int(value))
        if self.kind == "boolean":
            false_text, true_text = self.categories or ("false", "true")
            return true_text if value else false_text
        if self.kind == "datetime":
            return value.isoformat()
        return str(value)

    def check(self, value: Any, where: str) -> None:
        """Raise DataError if ``value`` is not of this column's Python type."""
        if value is None:
            if not self.has_missing:
                raise DataError(f"{where}: column {self.name!r} is missing but the schema has no missing values there")
            return
        ok = {
            "numeric": lambda v: isinstance(v, float) and math.isfinite(v),
            "integer": lambda v: isinstance(v, int) and not isinstance(v, bool) and abs(v) <= INTEGER_LIMIT,
            "categorical": lambda v: isinstance(v, str),
            "boolean": lambda v: isinstance(v, bool),
            "datetime": lambda v: isinstance(v, (dt.datetime, dt.date)),
        }[self.kind](value)
        if not ok:
            shown = _cell(str(value)) if type(value) is int else repr(value)
            raise DataError(f"{where}: column {self.name!r} ({self.kind}) holds {shown} "
                            f"of type {type(value).__name__}" + _range_hint(self.kind, value))


def _cell(text: str, most: int = 40) -> str:
    """``repr(text)``, cut in the middle when long (a 400-digit cell stays one readable line)."""
    if len(text) <= most:
        return repr(text)
    return f"{text[:most // 2] + '...' + text[-8:]!r} ({len(text)} characters)"


def _range_hint(kind: str, value: Any) -> str:
    if kind == "integer" and isinstance(value, int) and not isinstance(value, bool):
        return f", outside +-2^53 = {INTEGER_LIMIT}"
    return ""


def _parse_numeric(col: Column, text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise OutOfRange("not finite")
    return value


def _parse_integer(col: Column, text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        number = float(text)  # "3.0" is an integer written as a float
        if not number.is_integer():
            raise (OutOfRange if math.isinf(number) else ValueError)("not a finite whole number") from None
        value = int(number)
    if abs(value) > INTEGER_LIMIT:
        raise OutOfRange(f"outside +-2^53 = {INTEGER_LIMIT}, the integers a float64 holds exactly; "
                         "declare the column numeric or categorical in the schema")
    return value


def _parse_boolean(col: Column, text: str) -> bool:
    low = text.strip().lower()
    for false_text, true_text in BOOL_LITERALS | {tuple(c.lower() for c in col.categories)}:
        if low == true_text:
            return True
        if low == false_text:
            return False
    raise ValueError("not a boolean literal")


def _parse_datetime(col: Column, text: str) -> dt.datetime | dt.date:
    text = text.strip()
    if len(text) == 10:
        return dt.date.fromisoformat(text)
    value = dt.datetime.fromisoformat(text)
    if value.tzinfo is not None:  # aware values are kept as naive UTC
        value = value.astimezone(dt.timezone.utc).replace(tzinfo=None)
    return value


_PARSERS = {
    "numeric": _parse_numeric,
    "integer": _parse_integer,
    "categorical": lambda col, text: text,
    "boolean": _parse_boolean,
    "datetime": _parse_datetime,
}


def to_seconds(value: dt.datetime | dt.date) -> float:
    """Seconds since 1970-01-01 (naive, exact to the microsecond in float64)."""
    if not isinstance(value, dt.datetime):
        value = dt.datetime(value.year, value.month, value.day)
    return (value - EPOCH) / dt.timedelta(seconds=1)


def from_seconds(seconds: float, date_only: bool) -> dt.datetime | dt.date:
    """Inverse of :func:`to_seconds`, rounded to the day or the microsecond."""
    if date_only:
        return (EPOCH + dt.timedelta(days=round(seconds / 86400.0))).date()
    return EPOCH + dt.timedelta(microseconds=round(seconds * 1e6))


@dataclass(frozen=True)
class Schema:
    """The columns of a table, in file order.

    relabels  columns decoded from another column by lookup, not modelled
              (:mod:`flowcore_tabular.relabel`; the modality option ``relabels`` sets them)
    """

    columns: tuple[Column, ...]
    missing: tuple[str, ...] = field(default=DEFAULT_MISSING)
    relabels: tuple["Relabel", ...] = ()

    def __post_init__(self) -> None:
        names = [c.name for c in self.columns]
        if not names:
            raise DataError("a table schema needs at least one column")
        if len(set(names)) != len(names):
            dup = sorted({n for n in names if names.count(n) > 1})
            raise DataError(f"table schema has duplicate column names {dup}")
        derived = [r.column for r in self.relabels]
        for r in self.relabels:
            if r.column not in names or r.source not in names or r.column == r.source:
                raise DataError(f"relabel {r.column!r} <- {r.source!r}: both must be distinct columns of {names}")
            if r.source in derived or derived.count(r.column) > 1:
                raise DataError(f"relabel {r.column!r} <- {r.source!r}: a column is relabelled from one source, "
                                "and a source is not itself relabelled")
        object.__setattr__(self, "_missing_set", frozenset(m.strip() for m in self.missing))

    @property
    def names(self) -> list[str]:
        return [c.name for c in self.columns]

    def __getitem__(self, name: str) -> Column:
        for c in self.columns:
            if c.name == name:
                return c
        raise DataError(f"no column {name!r} in the table; columns are {self.names}")

    def parse_row(self, cells: Sequence[str], where: str) -> dict[str, Any]:
        """Cells of one CSV line -> a row dict; missing markers -> None."""
        if len(cells) != len(self.columns):
            raise DataError(f"{where}: {len(cells)} cells, the header names {len(self.columns)} columns")
        row = {}
        missing = self._missing_set
        for col, text in zip(self.columns, cells):
            text = text.strip()
            if text in missing:
                if not col.has_missing:
                    raise DataError(f"{where}, column {col.name!r}: missing value {text!r} in a column "
                                    "the schema declares complete")
                row[col.name] = None
            elif col.kind == "categorical":
                if col.categories and text not in _categories(col):
                    raise DataError(f"{where}, column {col.name!r}: category {_cell(text)} was not seen when the "
                                    f"schema was fitted ({len(col.categories)} known, e.g. {list(col.categories[:5])})")
                row[col.name] = text
            else:
                row[col.name] = col.parse(text, where)
        return row

    def check_row(self, row: Mapping[str, Any], where: str) -> None:
        if not isinstance(row, Mapping) or list(row) != self.names:
            got = list(row) if isinstance(row, Mapping) else type(row).__name__
            raise DataError(f"{where}: a tabular sample is a dict with the columns {self.names} in order, got {got}")
        for col in self.columns:
            col.check(row[col.name], where)


@functools.lru_cache(maxsize=256)
def _categories(col: Column) -> frozenset[str]:
    """A fitted categorical column's categories as a set (columns are frozen, so this is cached)."""
    return frozenset(col.categories)


def infer_schema(header: Sequence[str], lines: Sequence[tuple[int, Sequence[str]]],
                 overrides: Mapping[str, str] | None = None, missing: Iterable[str] = DEFAULT_MISSING,
                 source: str = "table") -> tuple[Schema, list[dict[str, Any]]]:
    """Infer each column's kind from its cells (see the module docstring); apply ``overrides``.

    ``lines`` are ``(file line number, cells)`` pairs without the header (numbers for messages).
    Returns the fitted schema and the parsed rows.
    """
    overrides = dict(overrides or {})
    missing = tuple(missing)
    missing_set = frozenset(m.strip() for m in missing)
    unknown = sorted(set(overrides) - set(header))
    if unknown:
        raise DataError(f"{source}: schema names columns {unknown} that the table does not have; "
                        f"its columns are {list(header)}")
    for name, kind in overrides.items():
        if kind not in KINDS:
            raise DataError(f"{source}: schema.{name} = {kind!r}; use one of {KINDS}")
    for n, cells in lines:
        if len(cells) != len(header):
            raise DataError(f"{source}, line {n}: {len(cells)} cells, the header names {len(header)} columns")
    columns = []
    for j, name in enumerate(header):
        texts = [cells[j] for _, cells in lines]
        present = [t.strip() for t in texts if t.strip() not in missing_set]
        kind = overrides.get(name) or _infer_kind(present)
        col = Column(name, kind, has_missing=len(present) < len(texts))
        if kind == "boolean":
            col = replace(col, categories=_bool_literals(present))
        columns.append(col)
    schema = Schema(tuple(columns), missing)
    rows = [schema.parse_row(cells, f"{source}, line {n}") for n, cells in lines]
    return fit_schema(schema, rows), rows


def fit_schema(schema: Schema, rows: Sequence[Mapping[str, Any]]) -> Schema:
    """Learn what decoding needs from typed rows: categories, decimals, date-only, missing."""
    columns = []
    for col in schema.columns:
        values = [r[col.name] for r in rows]
        present = [v for v in values if v is not None]
        col = replace(col, has_missing=col.has_missing or len(present) < len(values))
        if col.kind == "categorical":
            col = replace(col, categories=tuple(sorted(set(present) | set(col.categories))))
        elif col.kind == "numeric":
            col = replace(col, decimals=_decimals(present))
        elif col.kind == "datetime":
            seconds = [to_seconds(v) for v in present]
            unit = next((u for u in DATETIME_UNITS if all(s % u == 0 for s in seconds)), 1e-6)
            col = replace(col, date_only=all(not isinstance(v, dt.datetime) for v in present), unit=unit)
        elif col.kind == "boolean" and not col.categories:
            col = replace(col, categories=("false", "true"))
        columns.append(col)
    return Schema(tuple(columns), schema.missing)


def _infer_kind(texts: Sequence[str]) -> str:
    if not texts:
        return "categorical"
    low = {t.lower() for t in texts}
    if any(low <= set(pair) for pair in BOOL_LITERALS - {("0", "1")}):
        return "boolean"
    for kind in ("integer", "numeric", "datetime"):
        col = Column("?", kind)
        try:
            for t in texts:
                try:
                    _PARSERS[kind](col, t)
                except OutOfRange:
                    pass  # of this kind but out of its range: parsing the row names the cell
        except (ValueError, OverflowError):
            continue
        if kind == "datetime" and not all(len(t) >= 10 and t[4] == "-" for t in texts):
            continue  # infer only the common YYYY-MM-DD[Thh:mm:ss] form; declare others explicitly
        return kind
    return "categorical"


def _bool_literals(texts: Sequence[str]) -> tuple[str, str]:
    """The (false, true) spelling a file uses, so writing gives the same text back."""
    seen = {t.strip() for t in texts}
    for false_text, true_text in BOOL_LITERALS:
        for f, t in ((false_text, true_text), (false_text.title(), true_text.title()),
                     (false_text.upper(), true_text.upper())):
            if seen <= {f, t}:
                return (f, t)
    return ("false", "true")


def _decimals(values: Sequence[float]) -> int | None:
    """The fewest decimals that write every value exactly, or None if more than MAX_DECIMALS."""
    for d in range(MAX_DECIMALS + 1):
        if all(round(v, d) == v for v in values):
            return d
    return None


def schema_from_kinds(kinds: Mapping[str, str], rows: Sequence[Mapping[str, Any]],
                      missing: Iterable[str] = DEFAULT_MISSING) -> Schema:
    """A schema for already-typed rows (datasets built in code) with the kinds given."""
    schema = Schema(tuple(Column(name, kind) for name, kind in kinds.items()), tuple(missing))
    return fit_schema(schema, rows)
