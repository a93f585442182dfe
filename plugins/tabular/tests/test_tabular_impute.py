"""Imputation with a trained velocity model, against dependences known by construction: the
mixed table's colour is a function of its height (red above 1.7, blue below); the linear
table's y is 2 x + N(0, 0.1^2) and its sign column is the sign of x. A model that learned the
table must fill them from the given column, far better than sampling the column's marginal."""

import numpy as np
import pytest
import torch

from flowcore.modality import Tokens
from flowcore.registry import get_registry
from flowcore.train.sampling import SamplingOptions
from flowcore_tabular.impute import impute
from flowcore_tabular.network import RecTableMLP


@pytest.fixture(autouse=True)
def one_thread():
    # a tiny MLP trains fastest on one thread; several spin-wait on a busy machine
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def train_tiny(modality, steps=600, seed=0):
    torch.manual_seed(seed)
    tok = modality.tokenizer
    net = RecTableMLP({"tabular": (tok.length, tok.channels)}, hidden=(128, 128), time_dim=32)
    opt = torch.optim.Adam(net.parameters(), lr=2e-3)
    x0_all = tok.encode(modality.collate(modality.train_rows))
    path = modality.path
    g = torch.Generator().manual_seed(seed)
    for _ in range(steps):
        idx = torch.randint(0, x0_all.values.shape[0], (128,), generator=g)
        x0 = x0_all.values[idx]
        eps = path.prior(x0.shape, generator=g)
        t = torch.sigmoid(torch.randn(128, generator=g))
        s = path.interpolate(x0, eps, t)
        tokens = Tokens(s.x_t, x0_all.positions[idx], x0_all.mask[idx])
        loss = ((net({"tabular": tokens}, {"tabular": t})["tabular"] - s.v) ** 2).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    return net


@pytest.mark.parametrize("tokenizer", ["row", "column"])
def test_imputed_colour_follows_the_given_height(mixed_table_csv, tokenizer):
    modality = get_registry().modality("tabular", csv=str(mixed_table_csv), tokenizer=tokenizer)
    net = train_tiny(modality)
    rows = [r for r in modality.train_rows if r["height"] is not None and r["colour"] is not None
            and abs(r["height"] - 1.7) > 0.05]
    given = [{"height": r["height"], "member": r["member"]} for r in rows]
    out = impute(net, modality, given, ["height", "member"], SamplingOptions(steps=20, seed=0))
    plain = impute(net, modality, given, ["height", "member"], SamplingOptions(steps=20, seed=0), guidance=0.0)
    assert [(r["height"], r["member"]) for r in out] == [(r["height"], r["member"]) for r in rows]
    accuracy = sum(o["colour"] == r["colour"] for o, r in zip(out, rows)) / len(rows)
    plain_accuracy = sum(o["colour"] == r["colour"] for o, r in zip(plain, rows)) / len(rows)
    # chance is about 0.5; replacement alone stays near it (the bounded one-hot prior decides
    # the category from its own noise early), reconstruction guidance follows the height
    assert accuracy > 0.8 and accuracy > plain_accuracy + 0.15
    for r in out:
        modality.validate(r, "imputed row")
    again = impute(net, modality, given, ["height", "member"], SamplingOptions(steps=20, seed=0))
    assert again == out  # the seed fixes the noise


def test_given_mask_selects_the_columns_channels(mixed_table_csv):
    for tokenizer in ("row", "column"):
        modality = get_registry().modality("tabular", csv=str(mixed_table_csv), tokenizer=tokenizer)
        mask = modality.given_mask(["colour"])
        block = next(b for b in modality.encoder.blocks if b.column.name == "colour")
        assert int(mask.sum()) == block.width
        assert mask.any(0)[block.start:block.stop].all()
        if tokenizer == "column":
            assert mask.any(1).tolist() == [b.column.name == "colour" for b in modality.encoder.blocks]


def write_linear_table(path, n=300, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.normal(0.0, 1.0, n)
    y = 2 * x + rng.normal(0.0, 0.1, n)
    lines = ["x,y,sign"] + [f"{a:.4f},{b:.4f},{'pos' if a > 0 else 'neg'}" for a, b in zip(x, y)]
    path.write_text("\n".join(lines) + "\n")
    return path


@pytest.mark.parametrize("tokenizer", ["row", "column"])
def test_masked_imputation_follows_the_dependence(tmp_path, tokenizer):
    csv = write_linear_table(tmp_path / "linear.csv")
    modality = get_registry().modality("tabular", csv=str(csv), tokenizer=tokenizer, masking=0.75)
    assert modality.tokenizer.channels == modality.encoder.dim + 3  # one known-flag per column
    net = train_tiny(modality, steps=800)
    rows = modality.train_rows[:200]
    given = [{"x": r["x"]} for r in rows]
    out = impute(net, modality, given, ["x"], SamplingOptions(steps=20, seed=1))
    assert [o["x"] for o in out] == [r["x"] for r in rows]  # held exactly
    x = np.array([r["x"] for r in rows])
    y_hat = np.array([o["y"] for o in out])
    sign_hat = np.array([o["sign"] for o in out])
    # the marginal baseline: y drawn from its own training values, independent of x
    y_marginal = np.random.default_rng(0).permutation(np.array([r["y"] for r in rows]))
    rmse = float(np.sqrt(np.mean((y_hat - 2 * x) ** 2)))
    rmse_marginal = float(np.sqrt(np.mean((y_marginal - 2 * x) ** 2)))  # about 2 sqrt(2) = 2.8
    assert rmse < 0.2 * rmse_marginal, (rmse, rmse_marginal)
    truth = np.where(x > 0, "pos", "neg")
    sign_marginal = np.random.default_rng(0).permutation(truth)  # about 0.5 right
    right = sign_hat == truth
    assert right.mean() > np.mean(sign_marginal == truth) + 0.25
    assert right[np.abs(x) > 0.3].mean() > 0.85  # away from the boundary the tiny model is sure
    plain = impute(net, modality, given, ["x"], SamplingOptions(steps=20, seed=1), method="guidance",
                   guidance=0.0)
    assert [o["x"] for o in plain] == [r["x"] for r in rows]


def test_masked_training_holds_known_columns_on_the_path(tmp_path):
    csv = write_linear_table(tmp_path / "linear.csv", n=20)
    modality = get_registry().modality("tabular", csv=str(csv), tokenizer="column", masking=1.0)
    tok = modality.tokenizer
    path = modality.path
    x0 = tok.encode(modality.collate(modality.train_rows)).values
    torch.manual_seed(0)
    eps = path.prior(x0.shape)
    t = torch.full((x0.shape[0],), 0.7)
    s = path.interpolate(x0, eps, t)
    d = modality.encoder.dim
    flags = s.x_t[:, torch.arange(3), d + torch.arange(3)]  # [B, Ncols]: token k's own flag
    known = flags == 1
    assert known.any() and (~known).any()
    for k in range(3):
        on = known[:, k]
        cols = tok.occupancy()[k].bool()
        assert torch.equal(s.x_t[on, k][:, :d][:, cols], x0[on, k][:, :d][:, cols])  # data values
        assert torch.all(s.v[on, k] == 0)
        free = s.x_t[~on, k][:, :d][:, cols]
        expect = 0.3 * x0[~on, k][:, :d][:, cols] + 0.7 * eps[~on, k][:, :d][:, cols]
        assert torch.allclose(free, expect)
    assert torch.all(s.v[..., d:] == 0)  # flags never move


def test_masked_method_needs_a_masked_run(mixed_table_csv):
    from flowcore.errors import DataError

    modality = get_registry().modality("tabular", csv=str(mixed_table_csv))
    net = RecTableMLP({"tabular": (1, modality.tokenizer.channels)}, hidden=(8,), time_dim=8)
    with pytest.raises(DataError, match="masking"):
        impute(net, modality, [{"height": 1.5}], ["height"], method="masked")
