import math

import numpy as np
import pytest
import torch
from scipy import stats

from flowcore.errors import DataError
from flowcore_tabular.codec import read_table
from flowcore_tabular.datasets import load_table
from flowcore_tabular.encoding import QuantileNormal, TableEncoder, collate, n_quantiles, split
from flowcore_tabular.modality import Tabular
from flowcore_tabular.path import MixedPriorPath
from flowcore_tabular.tokenizers import ColumnTokenizer, RowTokenizer


@pytest.fixture(scope="module")
def titanic():
    table = load_table("titanic", 0)
    return table, TableEncoder(table.schema, table.splits["train"])


def test_n_quantiles_follows_rectable():
    assert [n_quantiles(n) for n in (5, 299, 300, 1765, 30000, 32561)] == [10, 10, 10, 58, 1000, 1000]


def test_numeric_columns_become_standard_normal():
    rng = np.random.default_rng(0)
    x = rng.exponential(10.0, 3000)
    q = QuantileNormal(x, seed=0)
    assert q.qt.n_quantiles == 100
    z = q.forward(x)
    assert stats.kstest(z, "norm").statistic < 0.02
    # away from ties and ends the map is scikit-learn's own transform
    assert np.allclose(z, q.qt.transform(x.reshape(-1, 1))[:, 0], atol=1e-8)


def test_tied_values_map_to_the_middle_of_their_rank_range():
    x = np.concatenate([np.zeros(400), np.arange(1.0, 601.0)])  # 40 % zeros, like titanic's crew fares
    q = QuantileNormal(x, seed=0)
    rank = stats.norm.cdf(q.forward(x[:400]))
    # the middle of the zeros' rank range [0, 0.4], up to the quantile grid's spacing
    assert np.ptp(rank) == 0 and abs(rank[0] - 0.2) <= 1 / (q.qt.n_quantiles - 1)
    assert np.array_equal(q.inverse(q.forward(x[:400])), x[:400])


def test_categories_are_one_hot_plus_minus_one(titanic):
    table, enc = titanic
    x = enc.encode(collate(table.schema, table.splits["train"][:50]))
    for block in enc.blocks:
        part = x[:, block.start:block.stop]
        if not block.column.continuous:
            assert set(part.unique().tolist()) <= {-1.0, 1.0}
            assert torch.equal((part > 0).sum(1), torch.ones(50, dtype=torch.long))
            rows = table.splits["train"][:50]
            assert [block.column.categories[i] for i in part.argmax(1).tolist()] == [r[block.column.name] for r in rows]


def test_missing_values_get_indicators_and_come_back(mixed_csv):
    schema, rows = read_table(mixed_csv)
    enc = TableEncoder(schema, rows)
    x = enc.encode(collate(schema, rows))
    height = next(b for b in enc.blocks if b.column.name == "height")
    assert height.width == 2
    assert x[:, height.start + 1].tolist() == [-1, 1, -1, -1, -1, -1]  # +1 = missing (row 2)
    assert x[1, height.start] == 0
    colour = next(b for b in enc.blocks if b.column.name == "colour")
    assert colour.width == 4  # blue, green, red + missing slot
    assert x[3, colour.stop - 1] == 1
    back = split(schema, enc.decode(x))
    # every kind, with its missing cells, exactly; datetimes to the second their column uses,
    # within what float32 tokens hold of a value spread over years
    assert [{**r, "when": None} for r in back] == [{**r, "when": None} for r in rows]
    for a, b in zip(back, rows):
        assert (a["when"] is None) == (b["when"] is None)
        if a["when"] is not None:
            assert a["when"].microsecond == 0 and abs((a["when"] - b["when"]).total_seconds()) <= 10


def test_decoding_any_vector_gives_values_typed_as_the_schema(mixed_csv):
    schema, rows = read_table(mixed_csv)
    enc = TableEncoder(schema, rows)
    noise = torch.randn(200, enc.dim, generator=torch.Generator().manual_seed(0)) * 3
    out = split(schema, enc.decode(noise))
    for r in out:
        schema.check_row(r, "decoded")
        assert r["id"] is None or (isinstance(r["id"], int) and 1 <= r["id"] <= 6)
        assert r["height"] is None or round(r["height"], 3) == r["height"]
        assert r["colour"] in (None, "blue", "green", "red")
    # a column the schema calls complete never comes back missing
    assert all(r["member"] is not None and r["day"] is not None for r in out)
    assert {r["height"] is None for r in out} == {True, False}


def test_float32_tokens_round_trip_to_the_columns_precision(titanic):
    table, enc = titanic
    batch = collate(table.schema, table.splits["train"])
    back = enc.decode(enc.encode(batch))
    assert torch.equal(back["category"], batch["category"]) and torch.equal(back["missing"], batch["missing"])
    for j, col in enumerate(enc.cont):
        # integers exactly; floats to a unit of their last decimal or float32's share of the range
        values = batch["numeric"][:, j]
        unit = 10.0 ** -(col.decimals or 0) if col.kind == "numeric" else 0.0
        bound = max(unit, 1e-5 * float(values.max() - values.min())) if col.kind == "numeric" else 0.0
        err = (back["numeric"][:, j] - values).abs().max().item()
        assert err <= bound + 1e-12, (col.name, err)


def test_extremes_of_the_training_range_decode_exactly(titanic):
    table, enc = titanic
    q = enc.quantiles["fare"]
    values = np.array([q.low, q.high])
    assert np.array_equal(q.inverse(q.forward(values).astype(np.float32)), values)


def test_unseen_category_is_a_data_error(titanic):
    table, enc = titanic
    row = dict(table.splits["train"][0], embarked="Atlantis")
    with pytest.raises(DataError, match="column 'embarked': category 'Atlantis' was not seen"):
        collate(table.schema, [row])


def test_column_tokens_hold_their_own_channels(titanic):
    table, enc = titanic
    batch = collate(table.schema, table.splits["train"][:8])
    flat = RowTokenizer(enc).encode(batch)
    cols = ColumnTokenizer(enc).encode(batch)
    assert cols.values.shape == (8, len(table.schema.columns), enc.dim)
    assert torch.equal(cols.positions[0, :, 0], torch.arange(len(table.schema.columns), dtype=torch.float32))
    assert torch.equal(cols.values.sum(1), flat.values[:, 0])  # tokens partition the flat vector
    for k, block in enumerate(enc.blocks):
        outside = torch.cat([cols.values[:, k, :block.start], cols.values[:, k, block.stop:]], -1)
        assert not outside.any()


@pytest.mark.parametrize("tokenizer", ["row", "column"])
def test_mixed_prior_draws_normal_uniform_and_zero(tokenizer):
    m = Tabular(dataset="titanic", tokenizer=tokenizer)
    path = m.path
    assert isinstance(path, MixedPriorPath)
    shape = (20000, m.tokenizer.length, m.tokenizer.channels)
    eps = path.prior(shape, generator=torch.Generator().manual_seed(0))
    kinds = m.tokenizer.channel_kinds()
    gauss = eps[:, kinds == 1].flatten()
    unif = eps[:, kinds == 2].flatten()
    assert abs(gauss.mean()) < 0.01 and abs(gauss.std() - 1) < 0.01
    assert unif.min() >= -1 and unif.max() <= 1 and abs(unif.var() - 1 / 3) < 0.005
    assert not eps[:, kinds == 0].any()
    # numeric dims are exactly the quantile-normal ones
    assert int((kinds == 1).sum()) == len(m.encoder.cont)
    x0 = m.tokenizer.encode(m.collate(m.train_rows[:4])).values
    mid = path.interpolate(x0, eps[:4], torch.full((4,), 0.25))
    assert torch.allclose(mid.x_t, 0.75 * x0 + 0.25 * eps[:4]) and torch.allclose(mid.v, eps[:4] - x0)
    assert math.isclose(float((kinds > 0).float().sum()), m.encoder.dim)


def test_a_batch_cast_to_float32_is_rounded_back_to_the_columns_precision(titanic):
    table, enc = titanic
    rows = table.splits["train"][:50]
    batch = collate(table.schema, rows)
    cast = dict(batch, numeric=batch["numeric"].float())
    back = split(table.schema, cast)
    assert [r["fare"] for r in back] == [r["fare"] for r in rows]  # 4 decimals: float32 keeps them
    assert [r["sibsp"] for r in back] == [r["sibsp"] for r in rows]


def test_integer_levels_encode_few_valued_integers_one_hot(titanic):
    table, _ = titanic
    rows = table.splits["train"]
    enc = TableEncoder(table.schema, rows, integer_levels=20)
    # titanic's sibsp and parch have under 20 values; age and fare are numeric, not integer
    assert set(enc.levels) == {"sibsp", "parch"}
    sibsp = next(b for b in enc.blocks if b.column.name == "sibsp")
    assert sibsp.width == len({r["sibsp"] for r in rows})
    assert not enc.gaussian[sibsp.start:sibsp.stop].any()  # U(-1, 1) prior, like a category
    x = enc.encode(collate(table.schema, rows[:200]))
    part = x[:, sibsp.start:sibsp.stop]
    assert set(part.unique().tolist()) == {-1.0, 1.0}
    assert [enc.levels["sibsp"][i] for i in part.argmax(1).tolist()] == [r["sibsp"] for r in rows[:200]]
    back = split(table.schema, enc.decode(x))
    assert [(r["sibsp"], r["parch"]) for r in back] == [(r["sibsp"], r["parch"]) for r in rows[:200]]
    assert all(isinstance(r["sibsp"], int) for r in back)
    # a value the training rows lack encodes as the nearest they have (sibsp: 0-5 and 8)
    unseen = enc.encode(collate(table.schema, [{**rows[0], "sibsp": 7}, {**rows[0], "sibsp": 40}]))
    assert split(table.schema, enc.decode(unseen))[0]["sibsp"] == 8
    assert split(table.schema, enc.decode(unseen))[1]["sibsp"] == 8


def test_integer_levels_keep_missing_values(tmp_path):
    path = tmp_path / "t.csv"
    path.write_text("n,c\n1,a\n,b\n2,a\n1,\n30,b\n")
    schema, rows = read_table(path)
    enc = TableEncoder(schema, rows, integer_levels=3)
    block = enc.blocks[0]
    assert list(enc.levels["n"]) == [1, 2, 30] and block.width == 4  # three values + the missing slot
    assert split(schema, enc.decode(enc.encode(collate(schema, rows)))) == rows
    assert TableEncoder(schema, rows, integer_levels=2).levels == {}  # more values than allowed: quantile-normal
