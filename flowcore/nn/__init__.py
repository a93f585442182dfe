"""The backbone: FlowTransformer over named modality streams (SD3 MMDiT + Flux blocks)."""

from flowcore.nn.config import FlowTransformerConfig, SincosPosition, StreamConfig
from flowcore.nn.stats import ModelStats, model_stats
from flowcore.nn.transformer import FlowTransformer

__all__ = ["FlowTransformer", "FlowTransformerConfig", "StreamConfig", "SincosPosition", "ModelStats", "model_stats"]
