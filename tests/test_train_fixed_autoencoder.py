"""An autoencoder without parameters (a fixed transform, as audio's log-mel) needs no trained run:
the flow trains and samples through it; the autoencoder stage refuses it in one line."""

import json

import pytest
import torch
import yaml
from torch import nn

import flowcore
from flowcore.builtins.toy2d import Toy2d
from flowcore.errors import ConfigError
from flowcore.hookspecs import hookimpl
from flowcore.spec import ModalitySpec
from flowcore.train.config import load_config
from flowcore.train.pipeline import train


class Doubling(nn.Module):
    """latent = 2 x, back = latent / 2: fixed, nothing to train (a buffer, as a mel filterbank is)."""

    def __init__(self):
        super().__init__()
        self.register_buffer("scale", torch.tensor(2.0))

    def encode(self, batch):
        return batch * self.scale

    def decode(self, latent):
        return latent / self.scale

    def loss(self, batch):
        return {"loss": torch.zeros(())}


class DoubledToy(Toy2d):
    def autoencoder(self):
        return Doubling()


class _Plugin:
    @hookimpl
    def flowcore_modalities(self):
        return [ModalitySpec("doubled_toy", DoubledToy)]


def _config(tmp_path, registry, stage="flow"):
    registry.register(_Plugin(), name="doubled_toy_plugin")
    manifest = tmp_path / "points.jsonl"
    manifest.write_text("".join(json.dumps({"doubled_toy": [i % 3 - 1.0, 0.5]}) + "\n" for i in range(24)))
    path = tmp_path / "cfg.yaml"
    path.write_text(yaml.safe_dump({
        "seed": 0, "out_dir": str(tmp_path / "run"), "stage": stage, "modalities": {"doubled_toy": {}},
        "data": {"path": str(manifest), "val_fraction": 0.0, "test_fraction": 0.0},
        "model": {"network": "mlp", "hidden": 16, "depth": 1, "time_dim": 8},
        "sample": {"steps": 2, "count": 4},
        "train": {"steps": 3, "batch_size": 8, "ema": 0, "checkpoint_every": 3, "progress_bar": False,
                  "cpu_threads": 1, "sample_every": 0}}))
    return load_config(path, registry=registry)


def test_a_fixed_autoencoder_trains_and_samples_without_a_run(tmp_path, registry):
    train(_config(tmp_path, registry), registry)
    pipe = flowcore.load(tmp_path / "run", device="cpu", registry=registry)
    points = pipe.generate("doubled_toy", count=4)["doubled_toy"]
    assert len(points) == 4 and all(p.shape == (2,) and torch.isfinite(p).all() for p in points)


def test_the_autoencoder_stage_refuses_a_fixed_autoencoder(tmp_path, registry):
    with pytest.raises(ConfigError, match="has no parameters"):
        train(_config(tmp_path, registry, stage="autoencoder"), registry)
