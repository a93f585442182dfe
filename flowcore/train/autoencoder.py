"""AutoencoderModule: trains one modality's autoencoder with the losses the modality defines.

The stage's run directory holds ``model.safetensors`` with the weights under ``autoencoder.``;
a flow config points ``modalities.<name>.autoencoder`` at that directory.
"""

from __future__ import annotations

from typing import Any, Mapping

import lightning as L
import torch

from flowcore.errors import ConfigError
from flowcore.registry import get_registry
from flowcore.train.bundle import build_modality, trainable
from flowcore.train.config import Config
from flowcore.train.module import make_optimizer


class AutoencoderModule(L.LightningModule):
    """``config.modalities`` names one modality; its ``autoencoder()`` is trained on ``loss(batch)["loss"]``."""

    def __init__(self, config: Config, registry=None):
        super().__init__()
        self.save_hyperparameters({"config": config.to_dict()})
        registry = registry or get_registry()
        self.config = config
        (self.name,) = self.config.modalities
        self.modality = build_modality(self.config, self.name, registry)
        autoencoder = self.modality.autoencoder()
        if not isinstance(autoencoder, torch.nn.Module):
            raise ConfigError(f"{self.config.source}: modalities.{self.name}: modality {self.name!r} has no trainable "
                              "autoencoder (autoencoder() returned "
                              f"{type(autoencoder).__name__}); the autoencoder stage has nothing to train")
        if not trainable(autoencoder):
            raise ConfigError(f"{self.config.source}: modalities.{self.name}: the autoencoder of {self.name!r} has no "
                              "parameters (a fixed transform); it needs no autoencoder stage: train the flow directly")
        self.autoencoder = autoencoder

    def training_step(self, batch: Mapping[str, Any], batch_idx: int) -> torch.Tensor:
        losses = self.autoencoder.loss(batch[self.name])
        self.log("train/loss", losses["loss"], prog_bar=True)
        self.log_dict({f"train/{k}": v for k, v in losses.items() if k != "loss"})
        return losses["loss"]

    def configure_optimizers(self):
        return make_optimizer(self.autoencoder.parameters(), self.config, self.trainer.max_steps)

    def export_state(self) -> dict[str, torch.Tensor]:
        return {f"autoencoder.{k}": v for k, v in self.autoencoder.state_dict().items()}
