import torch

from flowcore.modality import Tokens
from flowcore_tabular.network import GLUBlock, RecTableMLP


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
