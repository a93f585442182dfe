"""Columns that relabel each other: one is modelled, the other is decoded from it by lookup.

Two discrete columns *relabel* each other on the training rows when each value of one goes
with exactly one value of the other and back (a bijection; Adult's ``education_num`` is
``education`` written as a number). A flow that models both must learn the 1-to-1 tie from
data and generates mismatched pairs where it falls short; modelling one of them and decoding
the other by lookup keeps every generated pair on the training relation exactly (SDV's
``FixedCombinations`` constraint holds combinations the same way, declared by the user).

Detection (modality option ``relabels: auto``, the default) looks at the categorical, boolean
and integer columns, "missing" counting as a value of its own, and pairs two of them when

- both have the same number K >= 2 of values on the training rows, and their value pairs
  are K distinct pairs (the bijection), and
- every value is seen at least :data:`MIN_COUNT` times, so the tie is not chance (a value
  seen once pairs with one partner whatever the columns), and
- every value a column can decode to is among them (all of a categorical's categories,
  both booleans, "missing" where the column has missing values).

Columns that relabel each other in a chain form one group; its *source* (the modelled one)
is the first categorical or boolean column of the group in schema order (one-hot already),
else its first column. ``relabels: off`` turns detection off; ``relabels: {column: source}``
names the pairs instead (each must be a bijection on the training rows; no count threshold).
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, replace
from typing import Any, Mapping, Sequence

from flowcore.errors import DataError
from flowcore_tabular.schema import Column, Schema

#: a value must be seen this many times on the training rows for ``auto`` to use its pairing
MIN_COUNT = 10
#: the kinds that can relabel each other
DISCRETE = ("categorical", "boolean", "integer")


@dataclass(frozen=True)
class Relabel:
    """``column`` is a relabelling of ``source``: its value is ``dict(pairs)[source value]``.

    pairs  (source value, column value) for every source value of the training rows, in the
           source's order (None = missing, last)
    """

    column: str
    source: str
    pairs: tuple[tuple[Any, Any], ...]

    def forward(self) -> dict[Any, Any]:
        """{source value: column value}."""
        return dict(self.pairs)

    def inverse(self) -> dict[Any, Any]:
        """{column value: source value}."""
        return {b: a for a, b in self.pairs}


def relabels_option(schema: Schema, rows: Sequence[Mapping[str, Any]], option: Any) -> Schema:
    """``schema`` with its relabels set by the modality option ``relabels`` (see the module doc).

    ``auto`` / true: detected on ``rows``; ``off`` / false / none / ``{}``: none;
    ``{column: source}``: those, each checked to be a bijection on ``rows``.
    """
    if option in ("auto", True):
        return replace(schema, relabels=find_relabels(schema, rows))
    if option in ("off", "none", False, None) or option == {}:
        return replace(schema, relabels=())
    if not isinstance(option, Mapping):
        raise DataError(f"tabular option relabels: {option!r}; use auto, off, or a mapping {{column: source}}")
    found = []
    for column, source in option.items():
        for name in (column, source):
            if name not in schema.names:
                raise DataError(f"tabular option relabels: no column {name!r}; columns are {schema.names}")
            if schema[name].kind not in DISCRETE:
                raise DataError(f"tabular option relabels: column {name!r} is {schema[name].kind}; only "
                                f"{', '.join(DISCRETE)} columns can relabel each other")
        pairs, why = _bijection(schema[source], schema[column], rows)
        if pairs is None:
            raise DataError(f"tabular option relabels: {column!r} is not a relabelling of {source!r} on the "
                            f"training rows: {why}")
        found.append(Relabel(column, source, pairs))
    return replace(schema, relabels=tuple(found))


def find_relabels(schema: Schema, rows: Sequence[Mapping[str, Any]],
                  min_count: int = MIN_COUNT) -> tuple[Relabel, ...]:
    """The relabels ``auto`` finds on ``rows`` (see the module doc), in schema order of the columns."""
    counts = {c.name: Counter(r[c.name] for r in rows) for c in schema.columns if c.kind in DISCRETE}
    candidates = [c for c in schema.columns
                  if c.name in counts and len(counts[c.name]) >= 2 and min(counts[c.name].values()) >= min_count
                  and _covers(c, counts[c.name])]
    group = {c.name: c.name for c in candidates}  # union-find: column -> a column of its group

    def root(name: str) -> str:
        while group[name] != name:
            name = group[name]
        return name

    for i, a in enumerate(candidates):
        for b in candidates[i + 1:]:
            if len(counts[a.name]) == len(counts[b.name]) and root(a.name) != root(b.name):
                if _bijection(a, b, rows)[0] is not None:
                    group[root(b.name)] = root(a.name)
    members: dict[str, list[Column]] = {}
    for c in candidates:
        members.setdefault(root(c.name), []).append(c)
    found = []
    for cols in members.values():
        source = next((c for c in cols if c.kind != "integer"), cols[0])
        for c in cols:
            if c is not source:
                found.append(Relabel(c.name, source.name, _bijection(source, c, rows)[0]))
    order = {n: i for i, n in enumerate(schema.names)}
    return tuple(sorted(found, key=lambda r: order[r.column]))


def _covers(col: Column, counts: Counter) -> bool:
    """Every value ``col`` can decode to is among the counted ones (integers: any value, see lookup)."""
    if col.kind == "categorical":
        domain: set[Any] = set(col.categories)
    elif col.kind == "boolean":
        domain = {False, True}
    else:
        domain = set()
    if col.has_missing:
        domain.add(None)
    return domain <= set(counts)


def _bijection(source: Column, column: Column, rows: Sequence[Mapping[str, Any]]
               ) -> tuple[tuple[tuple[Any, Any], ...] | None, str]:
    """(pairs, "") if ``column`` relabels ``source`` on ``rows``, else (None, why not)."""
    forward: dict[Any, Any] = {}
    backward: dict[Any, Any] = {}
    for r in rows:
        a, b = r[source.name], r[column.name]
        if forward.setdefault(a, b) != b:
            return None, f"{source.name} = {a!r} goes with {column.name} = {forward[a]!r} and {b!r}"
        if backward.setdefault(b, a) != a:
            return None, f"{column.name} = {b!r} goes with {source.name} = {backward[b]!r} and {a!r}"
    if not _covers(source, Counter(forward)):
        return None, f"some values of {source.name} never occur there"
    return tuple(sorted(forward.items(), key=lambda p: _order(source, p[0]))), ""


def _order(col: Column, value: Any) -> tuple:
    """Sort key of a value in its column's order, missing last."""
    if value is None:
        return (1, 0)
    if col.kind == "categorical":
        return (0, col.categories.index(value))
    return (0, value)


def lookup(relabel: Relabel, source_kind: str, values: Sequence[Any]) -> list[Any]:
    """Source values -> the column's values. An integer source value the training rows lack
    (a quantile-normal integer decodes to any integer) takes its nearest training value's label."""
    table = relabel.forward()
    keys = [k for k in table if k is not None]
    out = []
    for v in values:
        if v not in table:
            if source_kind != "integer" or v is None:
                raise DataError(f"column {relabel.source!r}: {v!r} has no label in {relabel.column!r} "
                                f"(the relabelling covers {list(table)})")
            v = min(keys, key=lambda k: (abs(k - v), k))
        out.append(table[v])
    return out


def complete_given(schema: Schema, rows: Sequence[Mapping[str, Any]], given: Sequence[str]
                   ) -> tuple[list[dict[str, Any]], list[str]]:
    """Rows and given columns for imputation, each given relabelled column's source added.

    The flow models the source, so holding a relabelled column means holding its source at
    the value it maps back to; a value the relabelling lacks is a DataError naming the row.
    """
    out = [dict(r) for r in rows]
    given = list(given)
    for rel in schema.relabels:
        if rel.column in given and rel.source not in given:
            inverse = rel.inverse()
            for i, r in enumerate(out):
                if r[rel.column] not in inverse:
                    raise DataError(f"row {i}, column {rel.column!r}: {r[rel.column]!r} is none of the values that "
                                    f"relabel {rel.source!r} on the training rows ({list(inverse)})")
                r[rel.source] = inverse[r[rel.column]]
            given.append(rel.source)
    return out, given
