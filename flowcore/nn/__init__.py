"""The backbone: FlowTransformer over named modality streams (SD3 MMDiT + Flux blocks).

The configuration classes load without torch (a run config is checked before torch is
imported); the network and its statistics import torch on first use.
"""

import importlib
from typing import Any

from flowcore.nn.config import FlowTransformerConfig, SincosPosition, StreamConfig

_TORCH_PARTS = {"FlowTransformer": "flowcore.nn.transformer", "ModelStats": "flowcore.nn.stats",
                "model_stats": "flowcore.nn.stats"}


def __getattr__(name: str) -> Any:
    if name in _TORCH_PARTS:
        return getattr(importlib.import_module(_TORCH_PARTS[name]), name)
    raise AttributeError(f"module 'flowcore.nn' has no attribute {name!r}")


__all__ = ["FlowTransformer", "FlowTransformerConfig", "StreamConfig", "SincosPosition", "ModelStats", "model_stats"]
