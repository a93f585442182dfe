"""Import diffusers SD3 and Flux transformers as FlowTransformers with the same outputs.

``from_diffusers(source)`` takes a local directory (a saved ``SD3Transformer2DModel`` /
``FluxTransformer2DModel``, or a pipeline directory with a ``transformer/`` folder) or an
in-memory diffusers model. diffusers itself is not needed for directories.

The converted model has two streams: ``image`` (predicts the velocity) and ``text``
(condition only). What "the same outputs" covers, exactly:

SD3  ``diffusers(hidden_states=x [B,C,H,W], encoder_hidden_states=txt, pooled_projections=pooled,
     timestep=1000 t).sample`` equals ``sd3_unpatchify(model({"image": sd3_image_tokens(x, p),
     "text": text_tokens(txt)}, {"image": t, "text": t}, cond=pooled)["image"], p, H, W)``.
     The patch-embedding conv becomes the image stream's input linear (features in (c, dy, dx)
     order), SD3's cropped sin-cos table becomes the stream's ``sincos_position``, the pooled
     text projection becomes the global conditioning MLP.
Flux ``diffusers(hidden_states=x [B,L,C], encoder_hidden_states=txt, pooled_projections=pooled,
     timestep=t, img_ids=ids [L,3], txt_ids=zeros, guidance=g).sample`` equals
     ``model({"image": Tokens(x, ids, mask), "text": text_tokens(txt)}, {"image": t, "text": t},
     cond=pooled, guidance=g)["image"]``. The image stream has 3 position axes (Flux's ids)
     with rope_axes_dim = axes_dims_rope; the text stream is unrotated (Flux's zero txt_ids).

Both streams take the same t: SD3 and Flux modulate text with the image's timestep, so the
one timestep MLP is copied into both streams' embedders.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Mapping

import torch
from safetensors.torch import load_file

from flowcore.errors import ConfigError
from flowcore.modality import Tokens
from flowcore.nn.config import FlowTransformerConfig, SincosPosition, StreamConfig
from flowcore.nn.transformer import FlowTransformer

SD3_DEFAULTS = dict(sample_size=128, patch_size=2, in_channels=16, num_layers=18, attention_head_dim=64,
                    num_attention_heads=18, joint_attention_dim=4096, caption_projection_dim=1152,
                    pooled_projection_dim=2048, out_channels=16, pos_embed_max_size=96,
                    dual_attention_layers=(), qk_norm=None)
FLUX_DEFAULTS = dict(patch_size=1, in_channels=64, out_channels=None, num_layers=19, num_single_layers=38,
                     attention_head_dim=128, num_attention_heads=24, joint_attention_dim=4096,
                     pooled_projection_dim=768, guidance_embeds=False, axes_dims_rope=(16, 56, 56))


def from_diffusers(source: str | Path | torch.nn.Module) -> FlowTransformer:
    """A FlowTransformer equal to a diffusers SD3 or Flux transformer (directory or model)."""
    if isinstance(source, torch.nn.Module):
        kind, config = type(source).__name__, dict(source.config)
        state = source.state_dict()
    else:
        kind, config, state = _read_directory(Path(source))
    if kind == "SD3Transformer2DModel":
        return convert_sd3(config, state)
    if kind == "FluxTransformer2DModel":
        return convert_flux(config, state)
    raise ConfigError(f"{source}: cannot convert a {kind!r}; supported: SD3Transformer2DModel, FluxTransformer2DModel")


def _read_directory(path: Path) -> tuple[str, dict[str, Any], dict[str, torch.Tensor]]:
    if not (path / "config.json").exists() and (path / "transformer" / "config.json").exists():
        path = path / "transformer"
    config_file = path / "config.json"
    if not config_file.exists():
        raise ConfigError(f"{path}: no config.json; point at a saved diffusers transformer directory")
    config = json.loads(config_file.read_text())
    index = path / "diffusion_pytorch_model.safetensors.index.json"
    if index.exists():
        shards = sorted(set(json.loads(index.read_text())["weight_map"].values()))
    else:
        shards = ["diffusion_pytorch_model.safetensors"]
    state: dict[str, torch.Tensor] = {}
    for shard in shards:
        if not (path / shard).exists():
            raise ConfigError(f"{path / shard}: missing weights file (only safetensors checkpoints are read)")
        state.update(load_file(str(path / shard)))
    return config.get("_class_name", ""), config, state


def _settings(config: Mapping[str, Any], defaults: dict[str, Any]) -> dict[str, Any]:
    return {k: config.get(k, v) for k, v in defaults.items()}


def _swap_halves(t: torch.Tensor) -> torch.Tensor:
    """diffusers' AdaLayerNormContinuous emits (scale, shift); flowcore's heads (shift, scale)."""
    scale, shift = t.chunk(2, dim=0)
    return torch.cat([shift, scale], dim=0)


class _Mapper:
    """Copies diffusers tensors into the flowcore state dict and checks nothing is left over."""

    def __init__(self, source: Mapping[str, torch.Tensor], target: Mapping[str, torch.Tensor]):
        self.source, self.target, self.used, self.out = dict(source), target, set(), {}

    def get(self, key: str) -> torch.Tensor:
        if key not in self.source:
            raise ConfigError(f"diffusers state dict lacks {key!r}; is the config the one these weights belong to?")
        self.used.add(key)
        return self.source[key]

    def linear(self, ours: str, *theirs: str, weight_fn=None, bias_fn=None) -> None:
        w = torch.cat([self.get(f"{k}.weight") for k in theirs], 0)
        b = torch.cat([self.get(f"{k}.bias") for k in theirs], 0)
        self.out[f"{ours}.weight"] = weight_fn(w) if weight_fn else w
        self.out[f"{ours}.bias"] = bias_fn(b) if bias_fn else b

    def copy(self, ours: str, theirs: str) -> None:
        self.out[ours] = self.get(theirs)

    def finish(self, model: FlowTransformer, ignore: tuple[str, ...] = ()) -> FlowTransformer:
        left = sorted(k for k in set(self.source) - self.used if not k.startswith(ignore))
        if left:
            raise ConfigError(f"diffusers weights not understood by the converter: {left[:5]}")
        missing = set(self.target) - set(self.out)
        if missing:
            raise ConfigError(f"converter produced no value for {sorted(missing)[:5]}")
        model.load_state_dict({k: v.to(self.target[k].dtype) for k, v in self.out.items()})
        return model


def _embeddings(m: _Mapper, embed: str) -> None:
    for stream in ("image", "text"):
        m.linear(f"time_embed.{stream}.mlp.in_layer", f"{embed}.timestep_embedder.linear_1")
        m.linear(f"time_embed.{stream}.mlp.out_layer", f"{embed}.timestep_embedder.linear_2")
    m.linear("cond_embed.in_layer", f"{embed}.text_embedder.linear_1")
    m.linear("cond_embed.out_layer", f"{embed}.text_embedder.linear_2")


def _double_block(m: _Mapper, i: int, theirs: str, qk_norm: bool, text_pre_only: bool) -> None:
    ours = f"double_blocks.{i}.branches"
    parts = {
        "image": dict(mod="norm1.linear", q="attn.to_q", k="attn.to_k", v="attn.to_v", nq="attn.norm_q",
                      nk="attn.norm_k", proj="attn.to_out.0", ff="ff"),
        "text": dict(mod="norm1_context.linear", q="attn.add_q_proj", k="attn.add_k_proj", v="attn.add_v_proj",
                     nq="attn.norm_added_q", nk="attn.norm_added_k", proj="attn.to_add_out", ff="ff_context"),
    }
    for stream, p in parts.items():
        pre_only = stream == "text" and text_pre_only
        swap = _swap_halves if pre_only else None
        m.linear(f"{ours}.{stream}.modulation.lin", f"{theirs}.{p['mod']}", weight_fn=swap, bias_fn=swap)
        m.linear(f"{ours}.{stream}.qkv", f"{theirs}.{p['q']}", f"{theirs}.{p['k']}", f"{theirs}.{p['v']}")
        if qk_norm:
            m.copy(f"{ours}.{stream}.qk_norm.query_scale", f"{theirs}.{p['nq']}.weight")
            m.copy(f"{ours}.{stream}.qk_norm.key_scale", f"{theirs}.{p['nk']}.weight")
        if not pre_only:
            m.linear(f"{ours}.{stream}.proj", f"{theirs}.{p['proj']}")
            m.linear(f"{ours}.{stream}.mlp.fc1", f"{theirs}.{p['ff']}.net.0.proj")
            m.linear(f"{ours}.{stream}.mlp.fc2", f"{theirs}.{p['ff']}.net.2")


def convert_sd3(config: Mapping[str, Any], state: Mapping[str, torch.Tensor]) -> FlowTransformer:
    """SD3 / SD3.5 (without dual attention) -> FlowTransformer; see the module docstring."""
    s = _settings(config, SD3_DEFAULTS)
    if s["dual_attention_layers"]:
        raise ConfigError("SD3 config: dual_attention_layers (SD3.5 medium) are not supported by FlowTransformer")
    if s["qk_norm"] not in (None, "rms_norm"):
        raise ConfigError(f"SD3 config: qk_norm {s['qk_norm']!r} unsupported; FlowTransformer has RMS QK norm only")
    d = s["num_attention_heads"] * s["attention_head_dim"]
    if s["caption_projection_dim"] != d:
        raise ConfigError(f"SD3 config: caption_projection_dim {s['caption_projection_dim']} must equal heads x head "
                          f"dim {d}")
    p, c = s["patch_size"], s["in_channels"]
    grid = s["sample_size"] // p
    cfg = FlowTransformerConfig(
        streams={
            "image": StreamConfig(in_channels=c * p * p, position_axes=2, out_channels=s["out_channels"] * p * p,
                                  rope_axes_dim=(),
                                  sincos_position=SincosPosition(max_size=s["pos_embed_max_size"] or grid,
                                                                 base_size=grid)),
            "text": StreamConfig(in_channels=s["joint_attention_dim"], position_axes=1, out_channels=0,
                                 rope_axes_dim=()),
        },
        hidden_size=d, num_heads=s["num_attention_heads"], depth_double=s["num_layers"], depth_single=0,
        mlp_ratio=4.0, global_cond_dim=s["pooled_projection_dim"], qk_norm=s["qk_norm"] == "rms_norm",
    )
    model = FlowTransformer(cfg)
    m = _Mapper(state, model.state_dict())
    m.linear("inputs.image", "pos_embed.proj", weight_fn=lambda w: w.reshape(d, -1))
    m.linear("inputs.text", "context_embedder")
    _embeddings(m, "time_text_embed")
    for i in range(s["num_layers"]):
        _double_block(m, i, f"transformer_blocks.{i}", cfg.qk_norm, text_pre_only=i == s["num_layers"] - 1)
    m.linear("heads.image.modulation.lin", "norm_out.linear", weight_fn=_swap_halves, bias_fn=_swap_halves)
    # SD3 unpatchifies proj_out's features as (dy, dx, c); flowcore keeps the input's (c, dy, dx)
    out_c = s["out_channels"]

    def reorder(t: torch.Tensor) -> torch.Tensor:
        return t.reshape(p, p, out_c, *t.shape[1:]).permute(2, 0, 1, *range(3, t.dim() + 2)).reshape(t.shape)

    m.linear("heads.image.linear", "proj_out", weight_fn=reorder, bias_fn=reorder)
    return m.finish(model, ignore=("pos_embed.pos_embed",))


def convert_flux(config: Mapping[str, Any], state: Mapping[str, torch.Tensor]) -> FlowTransformer:
    """Flux (schnell or guidance-distilled dev) -> FlowTransformer; see the module docstring."""
    s = _settings(config, FLUX_DEFAULTS)
    d = s["num_attention_heads"] * s["attention_head_dim"]
    axes = tuple(int(a) for a in s["axes_dims_rope"])
    out = (s["out_channels"] or s["in_channels"]) * s["patch_size"] ** 2
    cfg = FlowTransformerConfig(
        streams={
            "image": StreamConfig(in_channels=s["in_channels"], position_axes=len(axes), out_channels=out,
                                  rope_axes_dim=axes),
            "text": StreamConfig(in_channels=s["joint_attention_dim"], position_axes=len(axes), out_channels=0,
                                 rope_axes_dim=()),
        },
        hidden_size=d, num_heads=s["num_attention_heads"], depth_double=s["num_layers"],
        depth_single=s["num_single_layers"], mlp_ratio=4.0, rope_theta=10000.0,
        global_cond_dim=s["pooled_projection_dim"], guidance_embed=bool(s["guidance_embeds"]), qk_norm=True,
    )
    model = FlowTransformer(cfg)
    m = _Mapper(state, model.state_dict())
    m.linear("inputs.image", "x_embedder")
    m.linear("inputs.text", "context_embedder")
    _embeddings(m, "time_text_embed")
    if cfg.guidance_embed:
        m.linear("guidance_embed.mlp.in_layer", "time_text_embed.guidance_embedder.linear_1")
        m.linear("guidance_embed.mlp.out_layer", "time_text_embed.guidance_embedder.linear_2")
    for i in range(s["num_layers"]):
        _double_block(m, i, f"transformer_blocks.{i}", True, text_pre_only=False)
    for i in range(s["num_single_layers"]):
        theirs = f"single_transformer_blocks.{i}"
        m.linear(f"single_blocks.{i}.modulation.lin", f"{theirs}.norm.linear")
        m.linear(f"single_blocks.{i}.linear1", f"{theirs}.attn.to_q", f"{theirs}.attn.to_k", f"{theirs}.attn.to_v",
                 f"{theirs}.proj_mlp")
        m.linear(f"single_blocks.{i}.linear2", f"{theirs}.proj_out")
        m.copy(f"single_blocks.{i}.qk_norm.query_scale", f"{theirs}.attn.norm_q.weight")
        m.copy(f"single_blocks.{i}.qk_norm.key_scale", f"{theirs}.attn.norm_k.weight")
    m.linear("heads.image.modulation.lin", "norm_out.linear", weight_fn=_swap_halves, bias_fn=_swap_halves)
    m.linear("heads.image.linear", "proj_out")
    return m.finish(model)


def sd3_image_tokens(latents: torch.Tensor, patch_size: int) -> Tokens:
    """latents [B, C, H, W] -> Tokens of p x p patches: values [B, HW/p^2, C p p] in (c, dy, dx)
    order (a Conv2d patch embedding's order), positions (row, col), no padding."""
    b, c, h, w = latents.shape
    p = patch_size
    values = latents.reshape(b, c, h // p, p, w // p, p).permute(0, 2, 4, 1, 3, 5).reshape(b, -1, c * p * p)
    rows, cols = torch.meshgrid(torch.arange(h // p), torch.arange(w // p), indexing="ij")
    positions = torch.stack([rows, cols], -1).reshape(1, -1, 2).expand(b, -1, -1).to(latents.device, torch.float32)
    return Tokens(values, positions, torch.ones(values.shape[:2], dtype=torch.bool, device=latents.device))


def sd3_unpatchify(values: torch.Tensor, patch_size: int, height: int, width: int) -> torch.Tensor:
    """Inverse of :func:`sd3_image_tokens`: values [B, L, C p p] -> [B, C, H, W]."""
    b, p = values.shape[0], patch_size
    c = values.shape[-1] // (p * p)
    x = values.reshape(b, height // p, width // p, c, p, p).permute(0, 3, 1, 4, 2, 5)
    return x.reshape(b, c, height, width)


def text_tokens(embeddings: torch.Tensor, position_axes: int = 1) -> Tokens:
    """Text encoder states [B, L, C] -> Tokens at position 0 (unrotated), no padding."""
    b, length = embeddings.shape[:2]
    return Tokens(embeddings, torch.zeros(b, length, position_axes, device=embeddings.device),
                  torch.ones(b, length, dtype=torch.bool, device=embeddings.device))
