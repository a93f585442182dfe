import pytest

from flowcore.registry import get_registry


def test_adult_is_uci_adult_with_its_missing_values():
    registry = get_registry()
    train = registry.dataset("adult").build("train")
    test = registry.dataset("adult").build("test")
    val = registry.dataset("adult").build("val")
    assert len(train) == 32561 and len(val) + len(test) == 16281
    schema = train.table.schema
    kinds = [c.kind for c in schema.columns]
    assert kinds.count("categorical") == 9 and kinds.count("integer") == 6
    assert {c.name for c in schema.columns if c.has_missing} == {"workclass", "occupation", "native_country"}
    assert train[0]["tabular"]["workclass"] == "State-gov" and train[0]["tabular"]["age"] == 39
    assert {r["income"] for r in train.rows} == {"<=50K", ">50K"} == {r["income"] for r in test.rows}
    assert sum(r["occupation"] is None for r in train.rows) == 1843  # UCI's documented count of '?'


@pytest.mark.parametrize("name,total,columns", [("titanic", 2207, 8), ("german_credit", 1000, 10),
                                                 ("wine", 178, 14), ("breast_cancer", 569, 31)])
def test_splits_are_disjoint_complete_and_fixed_by_seed(name, total, columns):
    spec = get_registry().dataset(name)
    parts = {s: spec.build(s).rows for s in ("train", "val", "test")}
    assert sum(map(len, parts.values())) == total
    assert len(parts["train"][0]) == columns
    ids = {s: {id(r) for r in rows} for s, rows in parts.items()}
    assert not (ids["train"] & ids["test"]) and not (ids["train"] & ids["val"])
    assert spec.build("train").rows == parts["train"]
    other = spec.build("train", seed=1).rows
    assert other != parts["train"] and sorted(map(repr, other + spec.build("val", seed=1).rows +
                                                  spec.build("test", seed=1).rows)) == sorted(
        map(repr, [r for rows in parts.values() for r in rows]))
