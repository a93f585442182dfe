"""Splits: disjoint and complete, fixed by the seed, the sizes and fractions asked for, equal keys together."""

import zlib

import numpy as np
import pytest

from flowcore.errors import DataError
from flowcore.splits import SPLITS, keyed_split, permuted_split, select


def test_permuted_split_is_disjoint_complete_and_sized():
    parts = permuted_split(1797, 0, {"train": None, "val": 0.1, "test": 0.1})
    assert list(parts) == ["train", "val", "test"]
    assert [len(parts[s]) for s in SPLITS] == [1797 - 2 * 179, 179, 179]
    assert sorted(np.concatenate(list(parts.values())).tolist()) == list(range(1797))


def test_permuted_split_cuts_the_seeded_permutation_in_order():
    order = np.random.default_rng(7).permutation(100)
    parts = permuted_split(100, 7, {"val": 30, "train": None})
    assert parts["val"].tolist() == order[:30].tolist()
    assert parts["train"].tolist() == order[30:].tolist()


def test_permuted_split_is_fixed_by_its_seed():
    sizes = {"train": 0.8, "val": 0.05, "test": None}
    a, b, c = (permuted_split(500, s, sizes) for s in (3, 3, 4))
    assert all(np.array_equal(a[s], b[s]) for s in SPLITS)
    assert not np.array_equal(a["test"], c["test"])


@pytest.mark.parametrize("sizes", [{"train": None, "test": None}, {"train": 60, "test": 50},
                                   {"train": 90, "test": 5}, {"train": 1.5}, {"train": -1, "test": None}])
def test_permuted_split_refuses_sizes_that_do_not_cut_the_items(sizes):
    with pytest.raises(DataError, match="split"):
        permuted_split(100, 0, sizes)


def test_keyed_split_is_deterministic_keeps_fractions_and_follows_the_seed():
    keys = [f"f{i}.csv" for i in range(4000)]
    fractions = {"test": 0.2, "val": 0.1}
    splits = [keyed_split(k, fractions, seed=0) for k in keys]
    assert splits == [keyed_split(k, fractions, seed=0) for k in keys]
    assert splits.count("test") / len(keys) == pytest.approx(0.2, abs=0.03)
    assert splits.count("val") / len(keys) == pytest.approx(0.1, abs=0.03)
    assert splits != [keyed_split(k, fractions, seed=1) for k in keys]


def test_keyed_split_keeps_equal_keys_together():
    rng = np.random.default_rng(0)
    keys = ["".join(rng.choice(list("ACDEFGHIKLMNPQRSTVWY"), 12)) for _ in range(300)]
    items = keys + keys[::-1]  # every key twice, in another place
    where: dict[str, set[str]] = {}
    for key in items:
        where.setdefault(key, set()).add(keyed_split(key, {"test": 0.3, "val": 0.3}, seed=5))
    assert all(len(splits) == 1 for splits in where.values())


def test_keyed_split_in_buckets_is_the_crc32_remainder():
    """20 buckets, 5 % test and 5 % val: bucket 0 is test, bucket 1 val, the rest train."""
    rng = np.random.default_rng(1)
    for _ in range(2000):
        key = "".join(rng.choice(list("ACDEFGHIKLMNPQRSTVWY"), int(rng.integers(5, 60))))
        bucket = zlib.crc32(key.encode()) % 20
        expected = {0: "test", 1: "val"}.get(bucket, "train")
        assert keyed_split(key, {"test": 0.05, "val": 0.05}, buckets=20) == expected


def test_fractions_over_one_are_refused():
    with pytest.raises(DataError, match="add up to at most 1"):
        keyed_split("a", {"test": 0.7, "val": 0.4})


def test_select_names_the_splits_there_are():
    with pytest.raises(DataError, match="unknown split 'tset'; use train, val"):
        select({"train": 1, "val": 2}, "tset")
