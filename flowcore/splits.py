"""Train / val / test splits: one seeded scheme for every dataset, core and plugin.

Two ways to cut ``count`` items, for two kinds of data:

* :func:`permuted_split` -- a fixed collection (a package's table, an image set): a seeded
  permutation of the indices ``0 .. count-1`` cut into consecutive parts of given sizes.
  Adding an item moves others, so it suits data that never changes.
* :func:`keyed_split` -- a growing collection (files in a folder, chains of whatever
  structure files are installed): each item's split follows from a hash of its key alone, so
  adding items never moves one, and items with equal keys (duplicates) share a split.
"""

from __future__ import annotations

import zlib
from typing import Mapping, TypeVar

import numpy as np

from flowcore.errors import DataError

SPLITS = ("train", "val", "test")
#: keyed_split's default resolution: the whole crc32 range, so any fraction is honoured
CRC32_RANGE = 2 ** 32

T = TypeVar("T")


def permuted_split(count: int, seed: int, sizes: Mapping[str, int | float | None]) -> dict[str, np.ndarray]:
    """``{split: indices [n_split]}``: ``np.random.default_rng(seed).permutation(count)`` cut into
    consecutive parts in the order of ``sizes``, each part in permutation order.

    A size is an ``int`` (items), a ``float`` in [0, 1] (that fraction of ``count``, rounded
    down) or ``None`` (the items left over: at most one split). Without a ``None`` the sizes
    must add up to ``count``. Example: ``{"train": None, "val": 500, "test": 500}``.
    """
    counts = {name: _item_count(size, count, name) for name, size in sizes.items()}
    rest = [name for name, n in counts.items() if n is None]
    taken = sum(n for n in counts.values() if n is not None)
    if len(rest) > 1 or taken > count or (not rest and taken != count):
        raise DataError(f"split sizes {dict(sizes)} do not cut {count} items (at most one None takes the rest; "
                        "the others must add up to the items)")
    order = np.random.default_rng(seed).permutation(count)
    parts, start = {}, 0
    for name, n in counts.items():
        n = count - taken if n is None else n
        parts[name] = order[start:start + n]
        start += n
    return parts


def _item_count(size: int | float | None, count: int, name: str) -> int | None:
    if size is None:
        return None
    if isinstance(size, float):
        if not 0.0 <= size <= 1.0:
            raise DataError(f"split {name!r}: a fraction must lie in [0, 1], got {size}")
        return int(size * count)
    if isinstance(size, bool) or not isinstance(size, (int, np.integer)) or size < 0:
        raise DataError(f"split {name!r}: give a count >= 0, a fraction or None, got {size!r}")
    return int(size)


def keyed_split(key: str, fractions: Mapping[str, float], seed: int | None = None,
                buckets: int = CRC32_RANGE, rest: str = "train") -> str:
    """The split of the item called ``key``: where a hash of it falls on [0, 1).

    ``u = (crc32(key) mod buckets) / buckets``, the key prefixed by ``"<seed>:"`` when a seed
    is given. The fractions cut [0, 1) in their order (``{"test": 0.05, "val": 0.05}``: test
    below 0.05, val below 0.10) and ``rest`` takes the remainder. Fewer ``buckets`` coarsen
    ``u`` to multiples of ``1 / buckets`` (the protein chains' split uses 20).
    """
    if sum(fractions.values()) > 1.0 or any(f < 0 for f in fractions.values()):
        raise DataError(f"split fractions {dict(fractions)} must be >= 0 and add up to at most 1")
    text = key if seed is None else f"{seed}:{key}"
    u = (zlib.crc32(text.encode()) % buckets) / buckets
    edge = 0.0
    for name, fraction in fractions.items():
        edge += fraction
        if u < edge:
            return name
    return rest


def select(parts: Mapping[str, T], split: str) -> T:
    """``parts[split]``, or a DataError naming the splits there are."""
    if split not in parts:
        raise DataError(f"unknown split {split!r}; use {', '.join(parts)}")
    return parts[split]
