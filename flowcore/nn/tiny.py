"""A tiny two-stream FlowTransformer with a padded batch: one fixture for the kernel tests
(run in a child process under ``TRITON_INTERPRET=1``, where ``tests/`` is not importable)
and for quick checks of the backbone."""

from __future__ import annotations

import torch

from flowcore.modality import Tokens
from flowcore.nn.config import FlowTransformerConfig, StreamConfig
from flowcore.nn.transformer import FlowTransformer


def tiny_transformer(checkpointing: bool = False) -> tuple[FlowTransformer, dict[str, Tokens], dict[str, torch.Tensor]]:
    """(model, tokens, t): width 16, one double and one single block, random non-zero weights.

    Streams ``image`` (4 channels on a 2 x 3 grid; the second sample has 2 padded tokens) and
    ``label`` (3 channels, one token); batch 2. Seeded, so every call returns the same values.
    """
    torch.manual_seed(0)
    cfg = FlowTransformerConfig(
        streams={"image": StreamConfig(in_channels=4, position_axes=2), "label": StreamConfig(in_channels=3)},
        hidden_size=16, num_heads=2, depth_double=1, depth_single=1, mlp_ratio=2.0, frequency_dim=16,
        checkpointing=checkpointing,
    )
    model = FlowTransformer(cfg)
    with torch.no_grad():  # a fresh model outputs exactly zero: perturb it so outputs say something
        for p in model.parameters():
            p.add_(0.1 * torch.randn_like(p))
    rows, cols = torch.meshgrid(torch.arange(2), torch.arange(3), indexing="ij")
    grid = torch.stack([rows, cols], -1).reshape(1, 6, 2).expand(2, -1, -1).float()
    mask = torch.tensor([[True] * 6, [True] * 4 + [False] * 2])
    tokens = {
        "image": Tokens(torch.randn(2, 6, 4), grid, mask),
        "label": Tokens(torch.randn(2, 1, 3), torch.zeros(2, 1, 1), torch.ones(2, 1, dtype=torch.bool)),
    }
    return model, tokens, {"image": torch.rand(2), "label": torch.zeros(2)}
