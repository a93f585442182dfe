"""Run-directory I/O: weights as safetensors, the resolved config and the plugin versions beside them.

    <out_dir>/model.safetensors   net.* (EMA weights when EMA is on), autoencoders.<modality>.*
                                  (an autoencoder stage writes autoencoder.*)
    <out_dir>/config.yaml         the resolved config, itself a valid config
    <out_dir>/versions.json       registry.versions() when the weights were written
    <out_dir>/checkpoints/last.ckpt   Lightning's resumable checkpoint

Every file is written atomically (flowcore.io.atomic_path). Weights are read from safetensors, which holds no code.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import torch
import yaml
from lightning.fabric.plugins.io.torch_io import TorchCheckpointIO
from safetensors.torch import load_file, save_file

from flowcore.errors import ConfigError
from flowcore.io import atomic_path, write_text_atomic
from flowcore.train.config import Config, dump, from_dict, register_plugins

WEIGHTS = "model.safetensors"
CONFIG = "config.yaml"
VERSIONS = "versions.json"
LAST = "checkpoints/last.ckpt"


class AtomicCheckpointIO(TorchCheckpointIO):
    """Lightning checkpoints written to a temporary file and renamed: a kill never leaves half a file."""

    def save_checkpoint(self, checkpoint: dict[str, Any], path, storage_options=None) -> None:
        with atomic_path(path) as tmp:
            torch.save(checkpoint, tmp)


def write_weights(path: Path, state: dict[str, torch.Tensor]) -> None:
    tensors = {k: v.detach().cpu().contiguous() for k, v in state.items()}
    with atomic_path(path) as tmp:
        save_file(tensors, str(tmp))


def read_weights(path: Path, prefix: str = "") -> dict[str, torch.Tensor]:
    """The tensors of a safetensors file whose names start with ``prefix`` (prefix removed)."""
    try:
        state = load_file(str(path))
    except Exception as exc:  # safetensors raises its own types for truncated files
        raise ConfigError(f"{path}: cannot read weights ({exc})") from exc
    return {k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)}


def write_run_files(out_dir: Path, config: Config, state: dict[str, torch.Tensor], registry) -> Path:
    """model.safetensors + config.yaml + versions.json in ``out_dir``; returns the weights path."""
    out_dir = Path(out_dir)
    write_text_atomic(out_dir / CONFIG, dump(config))
    write_text_atomic(out_dir / VERSIONS, json.dumps(registry.versions(), indent=1, sort_keys=True) + "\n")
    write_weights(out_dir / WEIGHTS, state)
    return out_dir / WEIGHTS


def flow_state(module) -> dict[str, torch.Tensor]:
    """What a flow run exports: the sampling network and the frozen autoencoders."""
    state = {f"net.{k}": v for k, v in module.sampler_net.state_dict().items()}
    for name, ae in module.autoencoders.items():
        state.update({f"autoencoders.{name}.{k}": v for k, v in ae.state_dict().items()})
    return state


def run_config(run_dir: str | Path, registry=None) -> Config:
    """The config saved in a run directory (``CHECKPOINT`` of the CLI: the run dir or a file in it)."""
    run_dir = run_directory(run_dir)
    path = run_dir / CONFIG
    try:
        raw = yaml.safe_load(path.read_text())
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read the run's config ({exc}); is {run_dir} a flowcore run "
                          "directory (out_dir of `flowcore train`)?") from exc
    if registry is not None:
        register_plugins(raw.get("plugins") or [], str(path), registry)
    return from_dict(raw, source=str(path), registry=registry)


def run_directory(path: str | Path) -> Path:
    path = Path(path)
    return path.parent if path.is_file() else path


def check_versions(run_dir: Path, registry) -> list[str]:
    """Plugins whose version differs from the one the run was trained with (warned on stderr)."""
    try:
        saved = json.loads((run_dir / VERSIONS).read_text())
    except (OSError, ValueError):
        return []
    now = registry.versions()
    changed = [f"{k} {v} -> {now.get(k, 'missing')}" for k, v in saved.items() if now.get(k) != v]
    if changed:
        print(f"warning: {run_dir} was trained with other plugin versions: {', '.join(changed)}", file=sys.stderr)
    return changed
