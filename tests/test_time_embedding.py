"""The one sinusoidal time embedding gives, bit for bit, the tensors of the formula trained weights saw."""

import math

import pytest
import torch

from flowcore.nn.embeddings import TimestepEmbedder, timestep_frequencies


def formula_the_networks_were_trained_with(t: torch.Tensor, dim: int, max_period: float = 10000.0) -> torch.Tensor:
    """The copy flowcore.train.networks, the image, protein and tabular networks carried: [cos, sin] of 1000 t."""
    half = dim // 2
    freqs = torch.exp(-math.log(max_period) * torch.arange(half, device=t.device, dtype=torch.float32) / half)
    args = 1000.0 * t.float()[:, None] * freqs[None]
    return torch.cat([torch.cos(args), torch.sin(args)], -1)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.bfloat16])
@pytest.mark.parametrize("dim", [16, 64, 256, 33])
def test_timestep_frequencies_equal_the_trained_formula(dtype, dim):
    t = torch.cat([torch.rand(509, generator=torch.Generator().manual_seed(dim)), torch.tensor([0.0, 1.0])]).to(dtype)
    assert torch.equal(timestep_frequencies(t, dim), formula_the_networks_were_trained_with(t, dim))


def test_timestep_embedder_feeds_its_mlp_the_frequencies_of_1000_t():
    torch.manual_seed(0)
    embedder = TimestepEmbedder(hidden_size=32, frequency_dim=64)
    t = torch.rand(7)
    old_input = timestep_frequencies(1000.0 * t.float(), 64, scale=1.0)  # how it called the function before
    assert torch.equal(embedder(t), embedder.mlp(old_input))
