"""CSV files <-> rows. One file holds a table (many samples); its first line names the columns.

Parquet is not offered: no Parquet reader (pyarrow, fastparquet) is a dependency of flowcore
or of this plugin, and adding one for a second file format is not worth its weight here.
"""

from __future__ import annotations

import csv
import io
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

from flowcore.errors import DataError
from flowcore.modality import Codec
from flowcore_tabular.schema import DEFAULT_MISSING, Schema, infer_schema


def read_cells(path: Path | str, header: Sequence[str] | None = None,
               skip: int = 0) -> tuple[list[str], list[tuple[int, list[str]]]]:
    """A CSV file -> (header, [(file line number, cells)]). Blank lines are skipped.

    ``header`` names the columns of a file that has no header line; ``skip`` drops leading
    lines (a banner).
    """
    path = Path(path)
    try:
        text = path.read_text()
    except (OSError, UnicodeDecodeError) as exc:
        raise DataError(f"{path}: cannot read CSV: {exc}") from exc
    try:
        lines = list(csv.reader(io.StringIO(text)))
    except csv.Error as exc:
        raise DataError(f"{path}: not a valid CSV file: {exc}") from exc
    numbered = [(skip + 1 + i, cells) for i, cells in enumerate(lines[skip:]) if any(c.strip() for c in cells)]
    if header is None:
        if not numbered:
            raise DataError(f"{path}: empty file, expected a header line naming the columns")
        header, numbered = [h.strip() for h in numbered[0][1]], numbered[1:]
    if not numbered:
        raise DataError(f"{path}: no data rows after the header")
    return list(header), numbered


def read_table(path: Path | str, schema: Mapping[str, str] | None = None,
               missing: Iterable[str] = DEFAULT_MISSING, header: Sequence[str] | None = None,
               skip: int = 0) -> tuple[Schema, list[dict[str, Any]]]:
    """Read a CSV, infer its schema (``schema`` overrides kinds per column); return (schema, rows)."""
    names, lines = read_cells(path, header, skip)
    return infer_schema(names, lines, schema, missing, source=str(path))


class TableCsv(Codec):
    """Rows of a fixed schema <-> a CSV file with a header line.

    Reading checks every cell against the schema: a cell that does not parse is a DataError
    naming the file, line and column. Writing uses the schema's own spellings, so a table
    read and written again reads back equal.
    """

    extensions = (".csv",)

    def __init__(self, schema: Schema):
        self.schema = schema

    def read_all(self, path: Path) -> list[dict[str, Any]]:
        header, lines = read_cells(path)
        names = self.schema.names
        if sorted(header) != sorted(names):
            raise DataError(f"{path}: header {header} does not name the schema's columns {names}")
        order = [header.index(n) for n in names]
        rows = []
        for n, cells in lines:
            where = f"{path}, line {n}"
            if len(cells) != len(header):
                raise DataError(f"{where}: {len(cells)} cells, the header names {len(header)} columns")
            rows.append(self.schema.parse_row([cells[k] for k in order], where))
        return rows

    def read_columns(self, path: Path) -> tuple[list[str], list[dict[str, Any]]]:
        """A CSV holding some of the schema's columns (the known ones) -> (their names, rows of them).

        Cells are checked as in :meth:`read_all`; a header naming a column the schema lacks is
        a DataError.
        """
        header, lines = read_cells(path)
        unknown = [h for h in header if h not in self.schema.names]
        if unknown or len(set(header)) != len(header):
            raise DataError(f"{path}: header {header} must name distinct columns of the table {self.schema.names}"
                            + (f"; {unknown} are not among them" if unknown else ""))
        part = Schema(tuple(self.schema[h] for h in header), self.schema.missing)
        return header, [part.parse_row(cells, f"{path}, line {n}") for n, cells in lines]

    def read(self, path: Path) -> dict[str, Any]:
        return self.read_all(path)[0]

    def write(self, sample: Mapping[str, Any], path: Path) -> None:
        self._write_rows([sample], path)

    def write_all(self, samples: Sequence[Mapping[str, Any]], out_dir: Path, stem: str = "table") -> list[Path]:
        from flowcore.io import atomic_path

        path = Path(out_dir) / f"{stem}.csv"
        path.parent.mkdir(parents=True, exist_ok=True)
        with atomic_path(path) as tmp:
            self._write_rows(samples, tmp)
        return [path]

    def _write_rows(self, samples: Sequence[Mapping[str, Any]], path: Path) -> None:
        buf = io.StringIO()
        writer = csv.writer(buf, lineterminator="\n")
        writer.writerow(self.schema.names)
        for row in samples:
            writer.writerow([c.format(row[c.name]) for c in self.schema.columns])
        Path(path).write_text(buf.getvalue())
