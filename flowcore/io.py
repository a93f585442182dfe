"""Atomic writes: a file appears whole or not at all, even if the process is killed.

Also what a killed write leaves behind (its temporary file, removed by :func:`remove_stale_temps`)
and strict JSON (:func:`dumps_json`: no NaN or Infinity, which JSON does not have).
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import re
import tempfile
from pathlib import Path
from typing import Any, Iterator

#: the temporary files of ``atomic_path``: ``.<name>.<8 random characters><suffix>.tmp``
TEMP_NAME = re.compile(r"\.(?P<name>.+)\.[a-z0-9_]{8}(?P<suffix>\.[^.]*)?\.tmp")


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; on success fsync and rename it into place."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=path.suffix + ".tmp", dir=path.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        with open(tmp_path, "rb+") as f:
            os.fsync(f.fileno())
        os.chmod(tmp_path, 0o666 & ~_umask())  # mkstemp makes 0600; the file gets a plain file's mode
        os.replace(tmp_path, path)
    finally:
        tmp_path.unlink(missing_ok=True)


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def write_text_atomic(path: str | os.PathLike, text: str) -> Path:
    with atomic_path(path) as tmp:
        tmp.write_text(text)
    return Path(path)


def remove_stale_temps(directory: str | os.PathLike) -> list[Path]:
    """Delete the temporary files ``atomic_path`` left in ``directory`` when a write was killed.

    Only names of its pattern go (``.<name>.<random><suffix>.tmp`` whose suffix is the name's),
    so call this where no write is in flight: a run directory before training starts.
    """
    removed = []
    for p in Path(directory).glob(".*.tmp"):
        m = TEMP_NAME.fullmatch(p.name)
        if m and p.is_file() and (m["suffix"] or "") == Path(m["name"]).suffix:
            p.unlink(missing_ok=True)
            removed.append(p)
    return removed


def finite_or_none(value: Any) -> Any:
    """``value`` with every NaN or infinite float (in dicts, lists and tuples) turned into None."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: finite_or_none(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [finite_or_none(v) for v in value]
    return value


def dumps_json(value: Any, **kwargs: Any) -> str:
    """Strict JSON of ``value`` (``json.dumps`` arguments in ``kwargs``): a non-finite number is null."""
    return json.dumps(finite_or_none(value), allow_nan=False, **kwargs)
