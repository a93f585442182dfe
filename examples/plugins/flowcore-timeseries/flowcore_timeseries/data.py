"""The timeseries_waves dataset: noisy sine waves, generated from a seed (the same on every machine)."""

from __future__ import annotations

import math

import torch
from torch.utils.data import Dataset

SPLIT_SEEDS = {"train": 0, "val": 1, "test": 2}
SPLIT_SIZES = {"train": 4000, "val": 500, "test": 500}


class Waves(Dataset):
    """Items ``{"timeseries": wave [length] float32}``: a sine of 1 to 4 cycles over the sequence, with a
    random phase and an amplitude in [0.5, 1], plus Gaussian noise of std 0.05."""

    def __init__(self, split: str, length: int = 64, size: int | None = None, seed: int = 0):
        n = SPLIT_SIZES[split] if size is None else size
        g = torch.Generator().manual_seed(1000 * seed + SPLIT_SEEDS[split])
        cycles = 1 + 3 * torch.rand(n, 1, generator=g)
        phase = 2 * math.pi * torch.rand(n, 1, generator=g)
        amplitude = 0.5 + 0.5 * torch.rand(n, 1, generator=g)
        t = torch.arange(length) / length
        noise = 0.05 * torch.randn(n, length, generator=g)
        self.waves = amplitude * torch.sin(2 * math.pi * cycles * t + phase) + noise

    def __len__(self) -> int:
        return len(self.waves)

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        return {"timeseries": self.waves[i]}


def timeseries_waves(split: str = "train", **options) -> Waves:
    """The dataset factory: flowcore calls it as ``timeseries_waves(split=..., **data.options)``."""
    return Waves(split, **options)
