"""A local plugin (``plugins: [../plugins/toy_autoencoder.py]`` in a config): 2-D points with an autoencoder.

It exists to show and test the autoencoder stage before a plugin ships a real one: the
modality ``toy2d_ae`` is toy2d whose flow runs on the latents of a small MLP autoencoder
(2 -> 16 -> 2 -> 16 -> 2), trained by ``examples/configs/toy2d_autoencoder.yaml``.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.utils.data import Dataset

from flowcore.builtins.toy2d import Toy2d, moons
from flowcore.hookspecs import hookimpl
from flowcore.modality import Autoencoder
from flowcore.spec import DatasetSpec, ModalitySpec


class PointAutoencoder(nn.Module, Autoencoder):
    """points [B, 2] <-> latents [B, latent]; loss = mean squared reconstruction error."""

    def __init__(self, latent: int = 2, hidden: int = 16):
        super().__init__()
        self.enc = nn.Sequential(nn.Linear(2, hidden), nn.SiLU(), nn.Linear(hidden, latent))
        self.dec = nn.Sequential(nn.Linear(latent, hidden), nn.SiLU(), nn.Linear(hidden, 2))

    def encode(self, batch: torch.Tensor) -> torch.Tensor:
        return self.enc(batch)

    def decode(self, latent: torch.Tensor) -> torch.Tensor:
        return self.dec(latent)

    def loss(self, batch: torch.Tensor) -> dict[str, torch.Tensor]:
        return {"loss": ((self.decode(self.encode(batch)) - batch) ** 2).mean()}


class Toy2dLatent(Toy2d):
    """toy2d with an autoencoder: the flow moves its latents (the tokenizer sees [B, 2] either way)."""

    def autoencoder(self) -> PointAutoencoder:
        return PointAutoencoder()


def make() -> Toy2dLatent:
    return Toy2dLatent()


class MoonsAE(Dataset):
    """The moons points under this modality's name: items ``{"toy2d_ae": point [2]}``."""

    def __init__(self, split: str = "train", **options):
        self.points = moons(split, **options).points

    def __len__(self) -> int:
        return len(self.points)

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        return {"toy2d_ae": self.points[i]}


@hookimpl
def flowcore_modalities():
    return [ModalitySpec(name="toy2d_ae", factory=make, has_codec=True, has_autoencoder=True,
                         description="toy2d through a small trained autoencoder (example of the autoencoder stage)",
                         datasets=(DatasetSpec("moons_ae", ("toy2d_ae",), MoonsAE,
                                               description="the moons points under the toy2d_ae name"),))]
