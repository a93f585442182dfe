"""Imputation with a trained velocity model: the table's colour is a function of its height
(red above 1.7, blue below), so a model that learned the table must fill colour from height."""

import pytest
import torch

from flowcore.modality import Tokens
from flowcore.registry import get_registry
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
    out = impute(net, modality, given, ["height", "member"], steps=20, seed=0)
    plain = impute(net, modality, given, ["height", "member"], steps=20, seed=0, guidance=0.0)
    assert [(r["height"], r["member"]) for r in out] == [(r["height"], r["member"]) for r in rows]
    accuracy = sum(o["colour"] == r["colour"] for o, r in zip(out, rows)) / len(rows)
    plain_accuracy = sum(o["colour"] == r["colour"] for o, r in zip(plain, rows)) / len(rows)
    # chance is about 0.5; replacement alone stays near it (the bounded one-hot prior decides
    # the category from its own noise early), reconstruction guidance follows the height
    assert accuracy > 0.8 and accuracy > plain_accuracy + 0.15
    for r in out:
        modality.validate(r, "imputed row")
    again = impute(net, modality, given, ["height", "member"], steps=20, seed=0)
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
