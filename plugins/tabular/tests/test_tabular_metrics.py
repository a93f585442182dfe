"""Metrics against known answers: a holdout of the same table scores near-perfectly, a table
with its columns shuffled independently keeps its shapes but loses its trends, copies of the
training rows are flagged by DCR, and alpha/beta match synthcity's formula on a worked case."""

import numpy as np
import pytest

from flowcore_tabular.datasets import load_table
from flowcore_tabular.metrics import alpha_beta, dcr_share, mle, tabular_metrics


@pytest.fixture(scope="module")
def titanic():
    return load_table("titanic", 0)


def shuffled_columns(rows, seed=0):
    rng = np.random.default_rng(seed)
    cols = {k: [r[k] for r in rows] for k in rows[0]}
    perm = {k: [v[i] for i in rng.permutation(len(v))] for k, v in cols.items()}
    return [{k: perm[k][i] for k in cols} for i in range(len(rows))]


def test_shapes_survive_column_shuffling_but_trends_do_not(titanic):
    metrics = tabular_metrics(titanic.schema, titanic.target, titanic.splits["train"])
    real, holdout = titanic.splits["train"][:600], titanic.splits["test"]
    mixed = shuffled_columns(real)
    assert metrics["shape"](real, mixed) == pytest.approx(1.0)  # same marginals, exactly
    assert metrics["trend"](real, holdout) > 0.9
    assert metrics["trend"](real, mixed) < metrics["trend"](real, holdout) - 0.05
    # a logistic detector sees marginals, not interactions: shift one column and it notices
    older = [dict(r, age=None if r["age"] is None else r["age"] + 15.0) for r in holdout]
    assert metrics["c2st"](real, holdout) > 0.9 > metrics["c2st"](real, older)


def test_mle_learns_from_real_rows_and_not_from_shuffled_ones(titanic):
    train, test = titanic.splits["train"], titanic.splits["test"]
    good = mle(titanic.schema, "survived", test, train)
    assert 0.75 < good <= 1.0  # titanic survival from gender/class/age: AUC about 0.8
    assert mle(titanic.schema, "survived", test, shuffled_columns(train)) < 0.6


def test_dcr_flags_copies_of_the_training_rows(titanic):
    train, test = titanic.splits["train"], titanic.splits["test"]
    assert dcr_share(titanic.schema, train, test, train[:300]) > 0.8  # memorised rows (titanic repeats rows: ties)
    fresh = dcr_share(titanic.schema, train[:len(test)], test, train[len(test):2 * len(test)])
    assert 0.35 < fresh < 0.65  # rows from the same distribution, seen by neither reference


def test_alpha_beta_is_synthcitys_naive_score():
    # 1-D: real points 0..9, generated points identical -> both curves are the identity up to
    # quantile steps; generated far away -> precision and coverage collapse
    from flowcore_tabular.schema import Column, Schema

    schema = Schema((Column("x", "numeric"), Column("c", "categorical", categories=("a", "b"))))
    real = [{"x": float(i), "c": "a" if i % 2 else "b"} for i in range(40)]
    a, b = alpha_beta(schema, real, real)
    assert a > 0.9 and b > 0.9
    far = [{"x": 1000.0 + i, "c": "a"} for i in range(40)]
    a_far, b_far = alpha_beta(schema, real, far)
    assert a_far < 0.2 and b_far < 0.2


def test_c2st_takes_a_category_the_real_rows_lack(titanic):
    from flowcore_tabular.metrics import c2st

    real = [r for r in titanic.splits["train"] if r["class"] != "1st"][:300]
    generated = titanic.splits["test"][:300]  # holds first-class passengers
    assert 0.0 <= c2st(titanic.schema, real, generated) <= 1.0
