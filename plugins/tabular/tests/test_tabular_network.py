import torch

from flowcore.modality import Tokens
from flowcore_tabular.network import ColumnTransformer, GLUBlock, RecTableMLP, ResidualGLUBlock


def test_glu_block_is_linear_times_sigmoid_gate():
    torch.manual_seed(0)
    block = GLUBlock(5, 3)
    h = torch.randn(4, 5)
    expected = (h @ block.a.weight.T + block.a.bias) * torch.sigmoid(h @ block.b.weight.T + block.b.bias)
    assert torch.allclose(block(h), expected, atol=1e-6)


def test_rectable_mlp_speaks_the_pipeline_call_and_starts_at_zero():
    net = RecTableMLP({"tabular": (1, 19), "label": (1, 3)}, hidden=(32, 64, 32), time_dim=16)
    tokens = {"tabular": Tokens(torch.randn(4, 1, 19), torch.zeros(4, 1, 1), torch.ones(4, 1, dtype=torch.bool)),
              "label": Tokens(torch.randn(4, 1, 3), torch.zeros(4, 1, 1), torch.ones(4, 1, dtype=torch.bool))}
    out = net(tokens, {"tabular": torch.rand(4), "label": torch.zeros(4)})
    assert out["tabular"].shape == (4, 1, 19) and out["label"].shape == (4, 1, 3)
    assert not out["tabular"].any()  # zero-initialised head
    assert [b.a.out_features for b in net.blocks] == [32, 64, 32]


def _std_through(blocks, h):
    with torch.no_grad():
        for block in blocks:
            h = block(h)
    return float(h.std())


def test_residual_glu_blocks_keep_the_signal_scale_that_plain_blocks_lose():
    # benchmarks/notes/tabular.md: plain GLU blocks shrink a unit-variance signal block by block
    # (about 0.3x each); the residual option keeps it, whatever its out-projections hold
    torch.manual_seed(0)
    h = torch.randn(2048, 128)
    plain = [GLUBlock(128, 128) for _ in range(4)]
    residual = [ResidualGLUBlock(128, 128) for _ in range(4)]
    for block in residual:  # trained-like out projections, not the zero start
        torch.nn.init.normal_(block.out.weight, std=128 ** -0.5)
    assert _std_through(plain, h) < 0.05
    assert 0.8 < _std_through(residual, h) < 2.0


def test_residual_rectable_mlp_starts_at_zero_velocity_and_identity_blocks():
    torch.manual_seed(0)
    net = RecTableMLP({"tabular": (1, 19)}, hidden=(64, 64, 64), time_dim=32, residual=True)
    x = torch.randn(5, 19)
    h = torch.randn(5, 32)
    assert all(torch.equal(block(h), h) for block in net.blocks)  # zero-initialised out projections
    assert not net.velocity(x, torch.rand(5)).any()
    assert [b.glu.a.out_features for b in net.blocks] == [64, 64, 64]


def _column_tokens(values):
    b, length, _ = values.shape
    positions = torch.arange(length, dtype=torch.float32).reshape(1, -1, 1).expand(b, -1, -1)
    return {"tabular": Tokens(values, positions, torch.ones(b, length, dtype=torch.bool))}


def _trained_like(net):
    # every weight away from its zero start (adaLN-Zero modulation and head), so outputs depend on the input
    torch.manual_seed(1)
    with torch.no_grad():
        for p in net.parameters():
            p.add_(torch.randn_like(p) * 0.1)
    return net


def test_column_transformer_starts_at_zero_velocity_in_the_tokens_shape():
    net = ColumnTransformer({"tabular": (5, 7)}, hidden_size=16, num_heads=2, depth_double=0, depth_single=1)
    out = net(_column_tokens(torch.randn(3, 5, 7)), {"tabular": torch.rand(3)})
    assert out["tabular"].shape == (3, 5, 7)
    assert not out["tabular"].any()  # the core's zero-initialised velocity head


def test_without_column_ids_or_rope_the_transformer_cannot_tell_columns_apart():
    # attention without positions is permutation-equivariant: permuting the columns permutes the output,
    # and two columns holding the same values get the same velocity, whatever column they are
    torch.manual_seed(0)
    net = _trained_like(ColumnTransformer({"tabular": (4, 6)}, column_ids=False, hidden_size=16, num_heads=2,
                                          depth_double=0, depth_single=2))
    x, t = torch.randn(2, 4, 6), {"tabular": torch.rand(2)}
    perm = torch.tensor([2, 0, 3, 1])
    with torch.no_grad():
        out, out_perm = net(_column_tokens(x), t)["tabular"], net(_column_tokens(x[:, perm]), t)["tabular"]
        assert torch.allclose(out[:, perm], out_perm, atol=1e-5)
        same = net(_column_tokens(torch.ones(2, 4, 6)), t)["tabular"]
    assert torch.allclose(same[:, 0], same[:, 3], atol=1e-6)


def test_column_ids_give_each_column_its_own_velocity_for_the_same_values():
    torch.manual_seed(0)
    net = _trained_like(ColumnTransformer({"tabular": (4, 6)}, hidden_size=16, num_heads=2, depth_double=0,
                                          depth_single=2))
    assert net.transformer.inputs["tabular"].in_features == 6 + 4  # the one-hot column index
    with torch.no_grad():
        same = net(_column_tokens(torch.ones(2, 4, 6)), {"tabular": torch.rand(2)})["tabular"]
    assert (same[:, 0] - same[:, 3]).abs().max() > 1e-3


def test_own_channels_keep_the_channels_of_other_columns_at_exactly_zero_through_a_solve():
    # a column token's foreign channels are 0 in data and prior (the path's ZERO kind); with own_channels
    # the velocity there is 0, so an Euler solve from the prior leaves them at 0 while the token's own
    # channels move; the unmasked head writes into them
    from flowcore_tabular.datasets import load_table
    from flowcore_tabular.encoding import TableEncoder
    from flowcore_tabular.path import MixedPriorPath
    from flowcore_tabular.tokenizers import ZERO, ColumnTokenizer

    table = load_table("german_credit", 0)
    tokenizer = ColumnTokenizer(TableEncoder(table.schema, table.splits["train"][:200]))
    kinds = tokenizer.channel_kinds()
    foreign = kinds == ZERO
    shapes = {"tabular": tuple(kinds.shape)}
    torch.manual_seed(0)
    x = MixedPriorPath(kinds).prior((3, *kinds.shape))
    start = x.clone()
    for own, expect_zero in ((True, True), (False, False)):
        net = _trained_like(ColumnTransformer(shapes, own_channels=own, hidden_size=16, num_heads=2,
                                              depth_double=0, depth_single=1))
        state = start.clone()
        with torch.no_grad():
            for t in (1.0, 0.75, 0.5, 0.25):
                state = state - 0.25 * net(_column_tokens(state), {"tabular": torch.full((3,), t)})["tabular"]
        assert bool((state[:, foreign] == 0).all()) == expect_zero
        assert (state[:, ~foreign] - start[:, ~foreign]).abs().max() > 1e-3  # the owned channels moved
