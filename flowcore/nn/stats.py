"""Parameter count and FLOPs per token of a FlowTransformer, for budgets and MFU figures."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping

from flowcore.errors import ConfigError
from flowcore.nn.transformer import FlowTransformer


@dataclass(frozen=True)
class ModelStats:
    """parameters: trainable weights; tokens: the joint sequence length counted;
    forward_flops: one sample's forward pass; flops_per_token: forward_flops / tokens.
    A training step (forward + backward) costs about 3 x forward_flops per sample."""

    parameters: int
    tokens: int
    forward_flops: float
    flops_per_token: float

    @property
    def train_flops_per_token(self) -> float:
        return 3.0 * self.flops_per_token


def model_stats(model_or_config, lengths: Mapping[str, int]) -> ModelStats:
    """Count matmul FLOPs (2 per multiply-add) of one sample with ``lengths[stream]`` tokens.

    Counts every linear layer at the tokens it runs on, the per-sample conditioning MLPs and
    modulations, and attention (QK^T and AV over the joint sequence, 4 L D per token per
    block). Elementwise work (norms, RoPE, softmax, GELU) is left out, as in MFU accounting.
    ``model_or_config``: a FlowTransformer or its FlowTransformerConfig.
    """
    if isinstance(model_or_config, FlowTransformer):
        cfg = model_or_config.config
        params = sum(p.numel() for p in model_or_config.parameters() if p.requires_grad)
    else:
        cfg = model_or_config
        params = sum(p.numel() for p in FlowTransformer(cfg).parameters())
    unknown = set(lengths) - set(cfg.streams)
    if unknown:
        raise ConfigError(f"model_stats: unknown stream(s) {sorted(unknown)}; the config has {list(cfg.streams)}")
    d, m = cfg.hidden_size, cfg.mlp_hidden
    n_tok = sum(lengths.values())
    macs = 0.0
    # embeddings: input projections per token; timestep/cond MLPs per sample
    macs += sum(lengths[n] * cfg.streams[n].in_channels * d for n in lengths)
    macs += len(lengths) * (cfg.frequency_dim * d + d * d) + cfg.guidance_embed * (cfg.frequency_dim * d + d * d)
    macs += bool(cfg.global_cond_dim) * (cfg.global_cond_dim * d + d * d)
    for i in range(cfg.depth_double):
        last = i == cfg.depth_double - 1
        for n, length in lengths.items():
            pre_only = last and not cfg.depth_single and cfg.streams[n].velocity_channels == 0
            macs += d * (2 if pre_only else 6) * d  # modulation, once per sample
            macs += length * d * 3 * d
            if not pre_only:
                macs += length * (d * d + 2 * d * m)
        macs += 2 * n_tok * n_tok * d
    for _ in range(cfg.depth_single):
        macs += len(lengths) * d * 3 * d
        macs += n_tok * (d * (3 * d + m) + (d + m) * d)
        macs += 2 * n_tok * n_tok * d
    for n, length in lengths.items():
        out = cfg.streams[n].velocity_channels
        if out:
            macs += d * 2 * d + length * d * out
    flops = 2.0 * macs
    return ModelStats(parameters=params, tokens=n_tok, forward_flops=flops, flops_per_token=flops / max(n_tok, 1))
