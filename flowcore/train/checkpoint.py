"""Run-directory I/O: weights as safetensors, the resolved config and the plugin versions beside them.

    <out_dir>/model.safetensors   net.* (EMA weights when EMA is on), autoencoders.<modality>.*
                                  (an autoencoder stage writes autoencoder.*)
    <out_dir>/config.yaml         the resolved config, itself a valid config
    <out_dir>/versions.json       registry.versions() when the weights were written
    <out_dir>/checkpoints/last.ckpt   Lightning's resumable checkpoint

Every file is written atomically (flowcore.io.atomic_path): a killed process leaves the old file
or the new one, never half of one (a failing disk or a partial copy still can; such a file is
reported, not repaired).

What reading a run directory guarantees, and what it does not:

- ``model.safetensors`` holds tensors only: reading it runs no code.
- ``config.yaml`` is read as plain YAML data (a tag such as ``!!python/object`` is refused). Its
  ``plugins:`` entries are code: :func:`run_config` runs them only when the caller trusts the run
  (``--trust-run-code``, ``flowcore.load(run, trust_run_code=True)``), except entries already
  registered in the registry (an installed plugin's entry point, or the user's own config in this
  process). Relative ``.py`` entries are relative to the run directory.
- ``last.ckpt`` is a torch pickle. It is read only by :func:`load_checkpoint` (Lightning's
  resume too, through :class:`AtomicCheckpointIO`), always with torch's weights-only unpickler
  (``weights_only=True``, whatever ``TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD`` says), which rebuilds
  tensors and plain containers, numbers and strings and refuses any other object. The safety of
  that unpickler is torch's: a crafted file may still exhaust memory or hit a bug in it.
- Under ``train.strategy: fsdp`` ``last.ckpt`` is a folder of shards (one ``.distcp`` file per
  process, ``meta.pt``, and torch.distributed.checkpoint's ``.metadata``). Its ``.metadata`` is a
  Python pickle that torch's reader unpickles in full: resume from, or
  :func:`load_sharded_checkpoint`, only sharded checkpoints you trust. ``model.safetensors`` is
  written whole (gathered from the shards) either way.
- Nothing is authenticated: anyone who can write the directory can change the weights and the
  config's numbers, and a run is exactly as good as its source.
"""

from __future__ import annotations

import json
import pickle
import sys
import tempfile
import zipfile
from pathlib import Path
from typing import Any

import torch
from lightning.fabric.plugins.io.torch_io import TorchCheckpointIO
from safetensors.torch import load_file, save_file

from flowcore.errors import ConfigError, DataError, NonFiniteError
from flowcore.io import atomic_path, write_text_atomic
from flowcore.train.config import Config, dump, from_dict, read_yaml, register_plugins
from flowcore.train.sharding import full_state

WEIGHTS = "model.safetensors"
CONFIG = "config.yaml"
VERSIONS = "versions.json"
LAST = "checkpoints/last.ckpt"
#: what to do about a checkpoint that cannot be resumed
START_OVER = "rerun with --restart to start from step 0 (it overwrites the checkpoint), or train into a fresh out_dir"


class AtomicCheckpointIO(TorchCheckpointIO):
    """Lightning checkpoints written to a temporary file and renamed: a kill never leaves half a file."""

    def save_checkpoint(self, checkpoint: dict[str, Any], path, storage_options=None) -> None:
        # the weights and optimizer state only: callbacks keep infinities on purpose (an unset best score)
        refuse_nonfinite({k: checkpoint.get(k) for k in ("state_dict", "optimizer_states")}, path)
        with atomic_path(path) as tmp:
            torch.save(checkpoint, tmp)

    def load_checkpoint(self, path, map_location=None, weights_only: bool | None = None) -> dict[str, Any]:
        """Lightning's resume reads through here: :func:`load_checkpoint`, weights-only whatever is asked."""
        return load_checkpoint(path, map_location)


def load_checkpoint(path: str | Path, map_location: Any = None, mmap: bool = False) -> dict[str, Any]:
    """A Lightning checkpoint read with ``torch.load(weights_only=True)`` (tensors and plain data only).

    An empty, truncated or foreign file, or one that holds other Python objects, is one
    :class:`DataError` line saying so and how to start over.
    """
    path = Path(path)
    try:
        checkpoint = torch.load(path, map_location=map_location or "cpu", weights_only=True, mmap=mmap)
    except pickle.UnpicklingError as exc:
        if not zipfile.is_zipfile(path):
            raise DataError(f"{path}: not a torch checkpoint (damaged or another kind of file); {START_OVER}") from exc
        raise DataError(f"{path}: refused: it holds Python objects, not only tensors and plain data, and "
                        f"flowcore never unpickles those (a checkpoint from elsewhere, or tampered with); "
                        f"{START_OVER}") from exc
    except (OSError, EOFError, RuntimeError, KeyError, ValueError) as exc:
        empty = path.is_file() and path.stat().st_size == 0
        what = "empty" if empty else "truncated or damaged"
        raise DataError(f"{path}: cannot read the checkpoint ({what}); {START_OVER}") from exc
    if not isinstance(checkpoint, dict) or not isinstance(checkpoint.get("state_dict"), dict):
        raise DataError(f"{path}: not a Lightning checkpoint (no state_dict); {START_OVER}")
    return checkpoint


def load_sharded_checkpoint(path: str | Path) -> dict[str, Any]:
    """A sharded checkpoint folder (``train.strategy: fsdp``) read whole into this one process:
    the Lightning checkpoint dict, with whole tensors in ``state_dict`` (and ``optimizer_0``).

    Reading it unpickles the folder's ``.metadata`` (see the module docstring).
    """
    from torch.distributed.checkpoint.format_utils import dcp_to_torch_save  # lazy: only sharded runs need it

    path = Path(path)
    if not (path / "meta.pt").is_file() or not (path / ".metadata").is_file():
        raise DataError(f"{path}: not a sharded checkpoint (it needs meta.pt and .metadata); {START_OVER}")
    with tempfile.TemporaryDirectory() as tmp:
        whole = Path(tmp) / "whole.pt"
        try:
            dcp_to_torch_save(path, whole)
            tensors = torch.load(whole, map_location="cpu", weights_only=True)
            meta = torch.load(path / "meta.pt", map_location="cpu", weights_only=True)
        except (OSError, EOFError, RuntimeError, KeyError, ValueError, pickle.UnpicklingError) as exc:
            raise DataError(f"{path}: cannot read the sharded checkpoint ({type(exc).__name__}: {exc}); "
                            f"{START_OVER}") from exc
    return {**meta, **tensors}


def check_resumable(path: str | Path, module) -> None:
    """A :class:`ConfigError` line unless ``module`` can resume from the checkpoint at ``path``.

    Its parameters must have the names and shapes of ``module``'s, and its optimizer state must
    be ``train.optimizer``'s; the message names the config keys that changed since it was written.
    """
    checkpoint = load_checkpoint(path, mmap=True)
    saved = checkpoint.get("hyper_parameters", {}).get("config") or {}
    now = module.hparams.get("config") or {}
    state, expected = checkpoint["state_dict"], module.state_dict()
    problem = next((f"{k} is {list(state[k].shape)} there but {list(v.shape)} in the config's network"
                    for k, v in expected.items() if k in state and tuple(state[k].shape) != tuple(v.shape)), None)
    missing = [k for k in expected if k not in state]
    extra = [k for k in state if k not in expected]
    if problem is None and missing:
        problem = f"it has no {missing[0]}" + (f" (and {len(missing) - 1} more)" if len(missing) > 1 else "")
    if problem is None and extra:
        problem = f"it holds {extra[0]}, which the config's network lacks"
    was, asked = saved.get("train", {}).get("optimizer"), now.get("train", {}).get("optimizer")
    if problem is None and was and asked and was != asked:
        problem = f"its optimizer state is {was}'s, the config asks for {asked}"
    if problem is None:
        return
    changed = [f"{k}: {a!r} -> {b!r}" for k, a, b in _changes(saved, now)
               if k.split(".")[0] in ("stage", "model", "modalities")
               or k in ("train.optimizer", "train.ema", "train.ema_width")]
    since = f" (changed since: {'; '.join(changed[:3])})" if changed else ""
    raise ConfigError(f"{path} does not fit the config: {problem}{since}; {START_OVER}")


def _changes(old: Any, new: Any, key: str = "") -> list[tuple[str, Any, Any]]:
    """(dotted key, old value, new value) of each leaf that differs between two nested dicts."""
    if isinstance(old, dict) and isinstance(new, dict):
        return [c for k in [*old, *(k for k in new if k not in old)]
                for c in _changes(old.get(k), new.get(k), f"{key}.{k}" if key else str(k))]
    return [] if old == new else [(key, old, new)]


def write_weights(path: Path, state: dict[str, torch.Tensor]) -> None:
    refuse_nonfinite(state, path)
    tensors = {k: v.detach().cpu().contiguous() for k, v in state.items()}
    with atomic_path(path) as tmp:
        save_file(tensors, str(tmp))


def first_nonfinite(value: Any, name: str = "") -> str | None:
    """The dotted name of the first floating-point tensor in ``value`` (a tensor, or dicts, lists
    and tuples of them) that holds NaN or infinity; None when every one is finite."""
    if isinstance(value, torch.Tensor):
        return name if value.is_floating_point() and not bool(torch.isfinite(value).all()) else None
    items = value.items() if isinstance(value, dict) else enumerate(value) if isinstance(value, (list, tuple)) else ()
    for key, v in items:
        found = first_nonfinite(v, f"{name}.{key}" if name else str(key))
        if found is not None:
            return found
    return None


def refuse_nonfinite(state: Any, path: str | Path) -> None:
    """A :class:`NonFiniteError` instead of writing weights (or a checkpoint) that hold NaN or infinity:
    the file written before stays, so a diverged run keeps its last good weights."""
    name = first_nonfinite(state)
    if name is not None:
        raise NonFiniteError(f"{path} not written: {name} holds NaN or infinite values (training diverged); "
                             "the file written before is kept. Lower train.lr, keep train.grad_clip on, "
                             "or train in 32-true precision")


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
    """What a flow run exports: the sampling network and the frozen autoencoders. A sharded network
    (``train.strategy: fsdp``) is gathered whole, which every process must take part in."""
    state = {f"net.{k}": v for k, v in full_state(module.sampler_net).items()}
    for name, ae in module.autoencoders.items():
        state.update({f"autoencoders.{name}.{k}": v for k, v in ae.state_dict().items()})
    return state


def run_config(run_dir: str | Path, registry=None, trust_run_code: bool = False) -> Config:
    """The config saved in a run directory (``CHECKPOINT`` of the CLI: the run dir or a file in it).

    With a ``registry``, the config's ``plugins:`` are registered in it: entries it already holds
    always, the others (code that came with the run) only with ``trust_run_code``; without it they
    are a :class:`ConfigError` naming them. Relative ``.py`` entries are relative to the run directory.
    """
    run_dir = run_directory(run_dir)
    path = run_dir / CONFIG
    try:
        raw = read_yaml(path)
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read the run's config ({exc}); is {run_dir} a flowcore run "
                          "directory (out_dir of `flowcore train`)?") from exc
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: a config is a mapping of sections, got {type(raw).__name__}")
    plugins = raw.get("plugins") or []
    if not isinstance(plugins, list):
        raise ConfigError(f"{path}: plugins: a list of module names or .py files, got {plugins!r}")
    raw["plugins"] = [str((run_dir / p).resolve()) if isinstance(p, str) and p.endswith(".py") else p
                      for p in plugins]
    if registry is not None:
        untrusted = [p for p in raw["plugins"] if not registered(p, registry)]
        if untrusted and not trust_run_code:
            raise ConfigError(f"{path}: plugins: {', '.join(map(str, untrusted))} "
                              f"{'is code' if len(untrusted) == 1 else 'are code'} that came with the run and was "
                              "not run; if you trust this run, pass --trust-run-code "
                              "(Python: flowcore.load(run, trust_run_code=True))")
        register_plugins(raw["plugins"], str(path), registry)
    return from_dict(raw, source=str(path), registry=registry)


def registered(entry: Any, registry) -> bool:
    """True if ``entry`` of a ``plugins:`` list names a plugin ``registry`` already holds."""
    sources = {p.source for p in registry.plugins if p.ok}
    return isinstance(entry, str) and (f"in-process {entry}" in sources or any(
        s == f"entry point {entry}" or s.startswith(f"entry point {entry}:") for s in sources))


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
