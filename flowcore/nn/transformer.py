"""FlowTransformer: any set of modality streams -> a velocity per stream (SD3 MMDiT + Flux)."""

from __future__ import annotations

from typing import Mapping

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.checkpoint import checkpoint

from flowcore.errors import DataError
from flowcore.modality import Tokens
from flowcore.nn.config import FlowTransformerConfig
from flowcore.nn.embeddings import MLPEmbedder, TimestepEmbedder, rope_angles, sincos_position_table
from flowcore.nn.interval import interval_lengths
from flowcore.nn.layers import DoubleStreamBlock, Modulation, OutputHead, QKNorm, SingleStreamBlock, joint


class FlowTransformer(nn.Module):
    """Per-stream input projection and timestep embedding -> double-stream blocks ->
    single-stream blocks -> per-stream velocity heads.

    ``forward(tokens, t, cond=None, guidance=None, r=None)``:
      tokens   {stream: Tokens(values [B, L_n, C_n], positions [B, L_n, A_n], mask [B, L_n])};
               a stream may be absent; the present ones attend jointly
      t        {stream: t [B]} in [0, 1] for every present stream
      cond     [B, G] global conditioning (``global_cond_dim`` > 0), added to every stream's
      guidance [B] guidance scale (``guidance_embed``), added likewise
      r        {stream: r [B]}: built with ``interval=True`` (an average-velocity network,
               flowcore.flow.meanflow), each stream's h = t - r is embedded and added to its
               timestep embedding (h = 0 where r is not given)
    returns {stream: v [B, L_n, out_n]} for every present stream that predicts a velocity,
    zero at padded tokens. Padded tokens are never attended to.
    """

    def __init__(self, config: FlowTransformerConfig, interval: bool = False):
        super().__init__()
        self.config = cfg = config
        d = cfg.hidden_size
        self.inputs = nn.ModuleDict({n: nn.Linear(s.in_channels, d) for n, s in cfg.streams.items()})
        self.time_embed = nn.ModuleDict({n: TimestepEmbedder(d, cfg.frequency_dim, cfg.time_scale)
                                         for n in cfg.streams})
        self.interval_embed = nn.ModuleDict({n: TimestepEmbedder(d, cfg.frequency_dim, cfg.time_scale)
                                             for n in cfg.streams}) if interval else None
        self.cond_embed = MLPEmbedder(cfg.global_cond_dim, d) if cfg.global_cond_dim else None
        self.guidance_embed = TimestepEmbedder(d, cfg.frequency_dim) if cfg.guidance_embed else None
        # A condition-only stream's last double block only has to feed keys and values.
        pre_only = frozenset(n for n, s in cfg.streams.items() if s.velocity_channels == 0 and not cfg.depth_single)
        self.double_blocks = nn.ModuleList(
            DoubleStreamBlock(cfg, pre_only if i == cfg.depth_double - 1 else frozenset())
            for i in range(cfg.depth_double)
        )
        self.single_blocks = nn.ModuleList(SingleStreamBlock(cfg) for _ in range(cfg.depth_single))
        self.heads = nn.ModuleDict(
            {n: OutputHead(d, s.velocity_channels) for n, s in cfg.streams.items() if s.velocity_channels}
        )
        self.rope_layout = cfg.rope_layout()
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """DiT init: xavier linears, N(0, 0.02) embedding MLPs, zero modulation and heads."""
        for m in self.modules():
            if isinstance(m, nn.Linear):
                nn.init.xavier_uniform_(m.weight)
                nn.init.zeros_(m.bias)
            elif isinstance(m, QKNorm):
                nn.init.ones_(m.query_scale)
                nn.init.ones_(m.key_scale)
        for m in self.modules():
            if isinstance(m, MLPEmbedder):
                nn.init.normal_(m.in_layer.weight, std=0.02)
                nn.init.normal_(m.out_layer.weight, std=0.02)
            elif isinstance(m, Modulation):
                nn.init.zeros_(m.lin.weight)
                nn.init.zeros_(m.lin.bias)
        for head in self.heads.values():
            nn.init.zeros_(head.linear.weight)
            nn.init.zeros_(head.linear.bias)
        for embed in (self.interval_embed or {}).values():  # zero interval embedding: a warm start from a
            nn.init.zeros_(embed.mlp.out_layer.weight)         # velocity run's weights is that field at every h

    def forward(self, tokens: Mapping[str, Tokens], t: Mapping[str, torch.Tensor],
                cond: torch.Tensor | None = None, guidance: torch.Tensor | None = None,
                r: Mapping[str, torch.Tensor] | None = None) -> dict[str, torch.Tensor]:
        cfg = self.config
        names = self._present(tokens, t)
        if not any(n in self.heads for n in names):
            return {}
        xs = {}
        for n in names:
            tok = tokens[n]
            x = self.inputs[n](tok.values)
            spec = cfg.streams[n].sincos_position
            if spec is not None:
                x = x + sincos_position_table(tok.positions, tok.mask, spec, cfg.hidden_size).to(x.dtype)
            xs[n] = x
        cs = self._conditioning(names, t, cond, guidance, r)
        mask = self._attention_mask([tokens[n].mask for n in names])
        rope = self._rope(tokens, names)

        for i, block in enumerate(self.double_blocks):
            xs = self._run(i, block, xs, cs, rope, mask)
        if self.single_blocks:
            lengths = [xs[n].shape[1] for n in names]
            x = joint([xs[n] for n in names])
            conds = [cs[n] for n in names]
            for i, block in enumerate(self.single_blocks, len(self.double_blocks)):
                x = self._run(i, block, x, conds, lengths, rope, mask)
            xs = dict(zip(names, x.split(lengths, 1)))

        out = {}
        for n in names:
            if n in self.heads:
                v = self.heads[n](xs[n], cs[n]).to(tokens[n].values.dtype)
                out[n] = v if mask is None else v * tokens[n].mask[..., None]
        return out

    def _run(self, index: int, block: nn.Module, *args):
        if self.config.checkpointed(index) and torch.is_grad_enabled():
            return checkpoint(block, *args, use_reentrant=False)
        return block(*args)

    def _present(self, tokens: Mapping[str, Tokens], t: Mapping[str, torch.Tensor]) -> list[str]:
        unknown = set(tokens) - set(self.config.streams)
        if unknown:
            raise DataError(f"FlowTransformer got tokens for unknown stream(s) {sorted(unknown)}; "
                            f"the config has {list(self.config.streams)}")
        names = [n for n in self.config.streams if n in tokens]
        if not names:
            raise DataError("FlowTransformer got no tokens: pass at least one stream")
        batch = tokens[names[0]].batch_size
        for n in names:
            if tokens[n].batch_size != batch:
                raise DataError(f"stream {n!r} has batch size {tokens[n].batch_size}, {names[0]!r} has {batch}")
            if tokens[n].values.shape[-1] != self.config.streams[n].in_channels:
                raise DataError(f"stream {n!r} values have {tokens[n].values.shape[-1]} channels; the config "
                                f"says in_channels {self.config.streams[n].in_channels}")
            if tokens[n].positions.shape[-1] != self.config.streams[n].position_axes:
                raise DataError(f"stream {n!r} positions have {tokens[n].positions.shape[-1]} axes; the config "
                                f"says position_axes {self.config.streams[n].position_axes}")
            if n not in t or t[n].shape != (batch,):
                raise DataError(f"t[{n!r}] must be a tensor [B] = [{batch}] for each present stream")
        return names

    def _conditioning(self, names, t, cond, guidance, r=None) -> dict[str, torch.Tensor]:
        """SiLU(timestep (+ interval) embedding + global vector) per stream [B, D], shared by every block."""
        shared = None
        if self.cond_embed is not None:
            if cond is None:
                raise DataError(f"this model was built with global_cond_dim {self.config.global_cond_dim}: "
                                "pass cond [B, G]")
            shared = self.cond_embed(cond)
        if self.guidance_embed is not None:
            if guidance is None:
                raise DataError("this model was built with guidance_embed: pass guidance [B]")
            g = self.guidance_embed(guidance)
            shared = g if shared is None else shared + g
        h = interval_lengths({n: t[n] for n in names}, r, self.interval_embed is not None, "FlowTransformer")
        cs = {}
        for n in names:
            c = self.time_embed[n](t[n])
            if h is not None:
                c = c + self.interval_embed[n](h[n])
            cs[n] = F.silu(c if shared is None else c + shared)
        return cs

    @staticmethod
    def _attention_mask(masks: list[torch.Tensor]) -> torch.Tensor | None:
        """Key mask [B, 1, 1, L] for SDPA, or None when nothing is padded (the fast path).

        Under torch.compile the mask is always passed: testing it would read a value on the
        host, a graph break, and the compiled graph handles the all-true mask as well.
        """
        mask = torch.cat(masks, 1)
        if not torch.compiler.is_compiling() and bool(mask.all()):
            return None
        # A sample with no real token anywhere would make every score -inf (NaN); let it
        # attend freely, its outputs are zeroed anyway.
        mask = mask | ~mask.any(1, keepdim=True)
        return mask[:, None, None, :]

    def _rope(self, tokens: Mapping[str, Tokens], names: list[str]):
        if not any(size for n in names for _, size in self.rope_layout[n]):
            return None
        parts = [rope_angles(tokens[n].positions, self.rope_layout[n], self.config.head_dim, self.config.rope_theta,
                             self.config.streams[n].rope_periods)
                 for n in names]
        return torch.cat([p[0] for p in parts], 1), torch.cat([p[1] for p in parts], 1)
