"""FlowTransformer configuration: plain dataclasses, validated once at construction.

A YAML ``model`` section becomes a config through :meth:`FlowTransformerConfig.from_dict`;
an unknown key raises :class:`ConfigError` naming it.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from typing import Any, Mapping

from flowcore.errors import ConfigError
from flowcore.modality import check_name


@dataclass(frozen=True)
class SincosPosition:
    """SD3's fixed 2-D sin-cos position table, added to a stream's tokens after projection.

    The table covers a ``max_size x max_size`` grid whose coordinates are scaled by
    ``base_size / max_size / interpolation_scale``; an image of ``h x w`` tokens uses the
    centred ``h x w`` crop of it. Positions must be integer (row, col) token coordinates.
    """

    max_size: int
    base_size: int
    interpolation_scale: float = 1.0


@dataclass(frozen=True)
class StreamConfig:
    """One modality stream of the backbone.

    in_channels    C of the stream's tokens (values [B, L, C])
    position_axes  A of the stream's positions [B, L, A]
    out_channels   channels of the velocity head; None = in_channels; 0 = a condition-only
                   stream (it is attended to but predicts nothing, e.g. SD3/Flux text)
    rope_axes_dim  head dims rotated by each position axis (even numbers, one per axis);
                   None = an even share of the head dims no other stream claims; () = no RoPE
    sincos_position  an additive SD3-style position table (see :class:`SincosPosition`)
    """

    in_channels: int
    position_axes: int = 1
    out_channels: int | None = None
    rope_axes_dim: tuple[int, ...] | None = None
    sincos_position: SincosPosition | None = None

    @property
    def velocity_channels(self) -> int:
        return self.in_channels if self.out_channels is None else self.out_channels


@dataclass(frozen=True)
class FlowTransformerConfig:
    """The whole backbone: streams, width, depths, and the conditioning it accepts.

    hidden_size      D, the token width in every block (num_heads * head_dim)
    depth_double     blocks with separate weights per stream and one joint attention (MMDiT)
    depth_single     blocks with shared weights over the joint sequence (Flux)
    rope_theta       base of the rotary frequencies
    global_cond_dim  G of an optional global conditioning vector cond [B, G]; 0 = none
    guidance_embed   embed a guidance scale [B] like Flux-dev (forward's ``guidance``)
    qk_norm          RMSNorm with a learned scale on queries and keys
    checkpointing    recompute each block's activations in backward (saves memory in training)
    """

    streams: Mapping[str, StreamConfig]
    hidden_size: int = 256
    num_heads: int = 4
    depth_double: int = 2
    depth_single: int = 2
    mlp_ratio: float = 4.0
    rope_theta: float = 10000.0
    global_cond_dim: int = 0
    guidance_embed: bool = False
    qk_norm: bool = True
    checkpointing: bool = False
    frequency_dim: int = 256

    def __post_init__(self) -> None:
        if not self.streams:
            raise ConfigError("model.streams: name at least one modality stream")
        for name, stream in self.streams.items():
            check_name(name, "model stream")
            if not isinstance(stream, StreamConfig):
                raise ConfigError(f"model.streams.{name}: expected a StreamConfig, got {type(stream).__name__}")
            if stream.in_channels < 1 or stream.position_axes < 0:
                raise ConfigError(f"model.streams.{name}: in_channels must be >= 1 and position_axes >= 0")
            if stream.out_channels is not None and stream.out_channels < 0:
                raise ConfigError(f"model.streams.{name}.out_channels must be >= 0 (0 = condition only)")
            dims = stream.rope_axes_dim
            if dims and (len(dims) != stream.position_axes or any(d < 0 or d % 2 for d in dims)):
                raise ConfigError(
                    f"model.streams.{name}.rope_axes_dim {dims} must give one even number per position "
                    f"axis ({stream.position_axes}), or be [] for no RoPE"
                )
            if stream.sincos_position is not None and stream.position_axes != 2:
                raise ConfigError(f"model.streams.{name}.sincos_position needs position_axes: 2 (row, col)")
        if self.hidden_size % self.num_heads or (self.hidden_size // self.num_heads) % 2:
            raise ConfigError(
                f"model.hidden_size {self.hidden_size} must be num_heads ({self.num_heads}) times an even head dim"
            )
        if self.depth_double < 0 or self.depth_single < 0 or self.depth_double + self.depth_single == 0:
            raise ConfigError("model.depth_double + model.depth_single must be >= 1 (each >= 0)")
        if not any(s.velocity_channels > 0 for s in self.streams.values()):
            raise ConfigError("model.streams: at least one stream must predict a velocity (out_channels != 0)")
        claimed = sum(sum(s.rope_axes_dim) for s in self.streams.values() if s.rope_axes_dim is not None)
        if claimed > self.head_dim:
            raise ConfigError(f"model.streams: rope_axes_dim claim {claimed} head dims, more than {self.head_dim}")
        if self.global_cond_dim < 0 or self.mlp_ratio <= 0 or self.frequency_dim % 2:
            raise ConfigError("model: global_cond_dim >= 0, mlp_ratio > 0, frequency_dim even")

    @property
    def head_dim(self) -> int:
        return self.hidden_size // self.num_heads

    @property
    def mlp_hidden(self) -> int:
        return int(self.hidden_size * self.mlp_ratio)

    def rope_layout(self) -> dict[str, list[tuple[int, int]]]:
        """Each stream's slice of the head dim per position axis: ``{name: [(start, size), ...]}``.

        Streams own disjoint slices, so one modality's positions never rotate the dims that
        another modality's positions rotate: their position spaces stay apart.
        """
        auto_axes = sum(s.position_axes for s in self.streams.values() if s.rope_axes_dim is None)
        claimed = sum(sum(s.rope_axes_dim) for s in self.streams.values() if s.rope_axes_dim is not None)
        share = ((self.head_dim - claimed) // auto_axes) // 2 * 2 if auto_axes else 0
        layout, start = {}, 0
        for name, s in self.streams.items():
            dims = s.rope_axes_dim if s.rope_axes_dim is not None else (share,) * s.position_axes
            layout[name] = []
            for d in dims:
                layout[name].append((start, d))
                start += d
        return layout

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], where: str = "model") -> FlowTransformerConfig:
        """Build from a YAML section; unknown keys raise ConfigError naming them."""
        data = dict(data)
        _check_keys(data, cls, where)
        if "streams" not in data or not isinstance(data["streams"], Mapping):
            raise ConfigError(f"{where}.streams: a mapping of stream name -> options is required")
        streams = {}
        for name, s in data["streams"].items():
            s = dict(s or {})
            _check_keys(s, StreamConfig, f"{where}.streams.{name}")
            if s.get("rope_axes_dim") is not None:
                s["rope_axes_dim"] = tuple(int(d) for d in s["rope_axes_dim"])
            if s.get("sincos_position") is not None:
                _check_keys(s["sincos_position"], SincosPosition, f"{where}.streams.{name}.sincos_position")
                s["sincos_position"] = SincosPosition(**s["sincos_position"])
            try:
                streams[name] = StreamConfig(**s)
            except TypeError as exc:
                raise ConfigError(f"{where}.streams.{name}: {exc}") from exc
        data["streams"] = streams
        return cls(**data)

    def to_dict(self) -> dict[str, Any]:
        """Plain data (YAML-safe) that :meth:`from_dict` reads back."""
        out = asdict(self)
        out["streams"] = {name: _plain(asdict(s)) for name, s in self.streams.items()}
        return out


def _plain(d: dict[str, Any]) -> dict[str, Any]:
    return {k: list(v) if isinstance(v, tuple) else v for k, v in d.items()}


def _check_keys(data: Mapping[str, Any], cls: type, where: str) -> None:
    known = {f.name for f in fields(cls)}
    unknown = sorted(set(data) - known)
    if unknown:
        raise ConfigError(f"{where}: unknown key {unknown[0]!r}; known keys: {', '.join(sorted(known))}")


__all__ = ["FlowTransformerConfig", "StreamConfig", "SincosPosition"]
