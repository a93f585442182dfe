"""Small networks trained once and cached as safetensors, with what they were trained on in the metadata.

A plugin's metric network (a classifier whose features give a Fréchet distance) is trained
here rather than downloaded; training takes seconds to minutes, so the weights are kept in
``<cache>`` (:func:`flowcore.files.cache_dir`) and reused while the recipe that made them is
the same. The recipe's key is the metadata's ``recipe_key``; the time training took is its
``train_seconds``; everything else in the metadata is the plugin's.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Callable

from safetensors import safe_open
from safetensors.torch import load_file, save_file
from torch import nn

from flowcore.io import atomic_path


def cached_network(path: Path, key: str, build: Callable[[dict[str, str]], nn.Module],
                   train: Callable[[], tuple[nn.Module, dict[str, str]]],
                   retrain: bool = False) -> tuple[nn.Module, dict[str, str]]:
    """The network cached at ``path`` and its metadata, or a new one trained and cached there.

    A readable file whose metadata's ``recipe_key`` is ``key`` is loaded into ``build(metadata)``
    (in eval mode). Otherwise, or with ``retrain``, ``train()`` gives the network and its metadata,
    to which ``recipe_key`` and ``train_seconds`` are added, and the file is written atomically.
    """
    meta = None if retrain else read_metadata(path)
    if meta is not None and meta.get("recipe_key") == key:
        model = build(meta)
        model.load_state_dict(load_file(str(path)))
        return model.eval(), meta
    start = time.time()
    model, meta = train()
    meta = {**meta, "recipe_key": key, "train_seconds": f"{time.time() - start:.1f}"}
    with atomic_path(path) as tmp:
        save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(tmp), metadata=meta)
    return model.eval(), meta


def read_metadata(path: Path) -> dict[str, str] | None:
    """The metadata of the safetensors file at ``path``; None if it is missing or unreadable."""
    if not path.exists():
        return None
    try:
        with safe_open(str(path), "pt") as f:
            return dict(f.metadata() or {})
    except Exception:  # an unreadable cache file is simply retrained
        return None
