"""The configured modalities, built: each with its role, its frozen autoencoder and its path.

A :class:`Bundle` is the one place the pipeline turns a collated batch into tokens and
tokens back into samples::

    batch --autoencoder.encode--> latent --tokenizer.encode--> Tokens     (tokens)
    Tokens --tokenizer.decode--> latent --autoencoder.decode--> batch --split--> samples
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import torch
from torch import nn

from flowcore.errors import ConfigError
from flowcore.flow.path import ProbabilityPath
from flowcore.modality import Modality, Tokens
from flowcore.spec import checked_options
from flowcore.train.checkpoint import read_weights
from flowcore.train.config import Config, ModalityConfig

AUTOENCODER_PREFIX = "autoencoders"


@dataclass
class Bundle:
    """One configured modality: name, Modality, its config section, frozen autoencoder, path."""

    name: str
    modality: Modality
    config: ModalityConfig
    autoencoder: nn.Module | None
    path: ProbabilityPath

    @torch.no_grad()
    def tokens(self, batch: Any, encoded: bool = False) -> Tokens:
        """A collated batch (already on its device; ``encoded``: already latents) -> tokens."""
        latent = self.autoencoder.encode(batch) if self.autoencoder is not None and not encoded else batch
        return self.modality.tokenizer.encode(latent)

    @torch.no_grad()
    def samples(self, tokens: Tokens) -> list[Any]:
        """Tokens -> a list of samples (on the CPU), what the codec writes."""
        latent = self.modality.tokenizer.decode(tokens)
        batch = self.autoencoder.decode(latent) if self.autoencoder is not None else latent
        batch = _to_cpu(batch)
        return self.modality.split(batch)

    def layout(self, count: int, device: torch.device | str | None = None) -> Tokens:
        """Blank tokens of ``count`` samples of the configured size (where generation starts)."""
        tokens = self.modality.tokenizer.layout(count, self.config.size)
        return tokens.to(device) if device is not None else tokens


def move_to(batch: Any, device: torch.device | str) -> Any:
    """Every tensor of a collated batch (tensors, dicts, lists, tuples of them) moved to ``device``."""
    if isinstance(batch, torch.Tensor):
        return batch.to(device)
    if isinstance(batch, dict):
        return {k: move_to(v, device) for k, v in batch.items()}
    if isinstance(batch, (list, tuple)):
        return type(batch)(move_to(v, device) for v in batch)
    return batch


def _to_cpu(batch: Any) -> Any:
    if isinstance(batch, torch.Tensor):
        # half/bf16 go up to fp32 for the codecs; fp64 (e.g. tabular numerics) keeps its digits
        low = batch.is_floating_point() and batch.dtype.itemsize < 4
        return batch.detach().float().cpu() if low else batch.detach().cpu()
    if isinstance(batch, dict):
        return {k: _to_cpu(v) for k, v in batch.items()}
    if isinstance(batch, (list, tuple)):
        return type(batch)(_to_cpu(v) for v in batch)
    return batch


def build_modality(config: Config, name: str, registry) -> Modality:
    """``registry.modality(name, **options)``; a bad option is a ConfigError naming its config key."""
    section = config.modalities[name]
    spec = registry.spec(name)
    options = checked_options(spec.options, section.options, config.source, f"modalities.{name}")
    try:
        return spec.build(**options)
    except TypeError as exc:  # a spec without an options model: the factory's signature is the only check
        raise ConfigError(f"{config.source}: modalities.{name}: bad options {section.options}: {exc}") from exc


def build_bundles(config: Config, registry, load_autoencoders: bool = True) -> dict[str, Bundle]:
    """Every configured modality, in config order.

    ``load_autoencoders``: load each ``modalities.<name>.autoencoder`` run's weights now
    (training). A saved flow run instead carries the weights in its own model.safetensors. An
    autoencoder with no parameters (a fixed transform, e.g. a log-mel with Griffin-Lim back)
    needs no trained run.
    """
    bundles = {}
    for name, section in config.modalities.items():
        modality = build_modality(config, name, registry)
        autoencoder = None if config.stage == "autoencoder" else modality.autoencoder()
        if autoencoder is not None:
            if not isinstance(autoencoder, nn.Module):
                raise ConfigError(f"modality {name!r}: its autoencoder must be a torch.nn.Module to be loaded")
            if section.autoencoder is None and trainable(autoencoder):
                raise ConfigError(f"{config.source}: modalities.{name}.autoencoder: {name!r} flows on the latents "
                                  "of an autoencoder; train one (stage: autoencoder) and give its run directory")
            if load_autoencoders and section.autoencoder is not None:
                load_autoencoder_run(autoencoder, section.autoencoder, name, config.source)
            autoencoder.eval().requires_grad_(False)
        elif section.autoencoder is not None and config.stage != "autoencoder":
            raise ConfigError(f"{config.source}: modalities.{name}.autoencoder: modality {name!r} has no autoencoder")
        bundles[name] = Bundle(name, modality, section, autoencoder, modality.path)
    return bundles


def trainable(module: nn.Module) -> bool:
    """Whether ``module`` has parameters (an autoencoder without any is a fixed transform)."""
    return any(True for _ in module.parameters())


def load_autoencoder_run(autoencoder: nn.Module, run_dir: str, name: str, source: str) -> None:
    """Load the weights an autoencoder stage exported (``<run_dir>/model.safetensors``)."""
    weights = Path(run_dir) / "model.safetensors"
    if not weights.is_file():
        raise ConfigError(f"{source}: modalities.{name}.autoencoder: {weights} does not exist "
                          "(train it first with a `stage: autoencoder` config)")
    state = read_weights(weights, prefix="autoencoder.")
    own = autoencoder.state_dict()
    resized = [f"{k} {tuple(v.shape)} vs {tuple(own[k].shape)}" for k, v in state.items()
               if k in own and v.shape != own[k].shape]
    if resized:
        raise ConfigError(f"{source}: modalities.{name}.autoencoder: {weights} was trained with other options than "
                          f"modality {name!r} has now (tensor shapes differ: {', '.join(resized[:3])}); give the "
                          "modality the options of that autoencoder run")
    missing, unexpected = autoencoder.load_state_dict(state, strict=False)
    if missing or unexpected:
        raise ConfigError(f"{source}: modalities.{name}.autoencoder: {weights} does not fit modality {name!r}'s "
                          f"autoencoder (missing {missing[:3]}, unexpected {unexpected[:3]})")


def collate(bundles: dict[str, Bundle], items: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Dataset items ``{modality: sample}`` -> ``{modality: batch}`` through each modality's collate."""
    return {name: b.modality.collate([item[name] for item in items]) for name, b in bundles.items()}
