"""FlowTransformer configuration: pydantic models, validated once at construction.

A YAML ``model.transformer`` section is checked by :class:`TransformerSection` when the run
config loads (before torch is imported); the network builder then completes it with each
stream's ``in_channels`` and ``position_axes`` from the modality's tokenizer and builds a
:class:`FlowTransformerConfig` through :meth:`FlowTransformerConfig.from_dict`. A bad value
or an unknown key raises :class:`ConfigError` naming it. This module imports no torch.
"""

from __future__ import annotations

from typing import Annotated, Any, Mapping

from pydantic import BeforeValidator, ConfigDict, Field, model_validator

from flowcore.schema import Number, Options, validate
from flowcore.spec import check_name

#: head dims rotated by each position axis, in (cos, sin) pairs; YAML gives a list where the config keeps a tuple
RopeDims = Annotated[tuple[Annotated[int, Field(ge=0, multiple_of=2)], ...],
                     BeforeValidator(lambda v: tuple(v) if isinstance(v, list) else v)]

#: one period per position axis (None: not circular)
RopePeriods = Annotated[tuple[Annotated[Number, Field(gt=0)] | None, ...],
                        BeforeValidator(lambda v: tuple(v) if isinstance(v, list) else v)]



def _checkpointing(value: Any) -> Any:
    if isinstance(value, str) and value not in ("none", "all") and not (
            value.startswith("every_") and value[6:].isdigit() and int(value[6:]) >= 1):
        raise ValueError(f"must be false/'none', true/'all', 'every_N' (N >= 1) or a list of block indices, "
                         f"got {value!r}")
    if isinstance(value, tuple):
        value = list(value)
    if isinstance(value, list) and len(set(value)) != len(value):
        raise ValueError(f"block indices must not repeat, got {value}")
    return value


#: activation checkpointing of the blocks (see :class:`TransformerOptions`)
Checkpointing = Annotated[bool | str | list[Annotated[int, Field(ge=0)]], BeforeValidator(_checkpointing)]


class SincosPosition(Options):
    """SD3's fixed 2-D sin-cos position table, added to a stream's tokens after projection.

    The table covers a ``max_size x max_size`` grid whose coordinates are scaled by
    ``base_size / max_size / interpolation_scale``; an image of ``h x w`` tokens uses the
    centred ``h x w`` crop of it. Positions must be integer (row, col) token coordinates.
    """

    model_config = ConfigDict(frozen=True)

    max_size: int = Field(ge=1)
    base_size: int = Field(ge=1)
    interpolation_scale: Number = Field(1.0, gt=0)


class StreamOptions(Options):
    """What a config may set for one stream (``model.transformer.streams.<modality>``).

    out_channels   channels of the velocity head; None = in_channels; 0 = a condition-only
                   stream (it is attended to but predicts nothing, e.g. SD3/Flux text)
    rope_axes_dim  head dims rotated by each position axis (even numbers, one per axis);
                   None = an even share of the head dims no other stream claims; () = no RoPE
    rope_periods   per position axis, None or a period P > 0 that makes the axis circular
                   (positions p and p + P rotate alike, e.g. azimuth around a spinning sensor):
                   its frequencies are rounded to whole turns per P (at least one); None = none
    sincos_position  an additive SD3-style position table (see :class:`SincosPosition`)
    """

    model_config = ConfigDict(frozen=True)

    out_channels: int | None = Field(None, ge=0)
    rope_axes_dim: RopeDims | None = None
    rope_periods: RopePeriods | None = None
    sincos_position: SincosPosition | None = None


class StreamConfig(StreamOptions):
    """One modality stream of the backbone: its options and the tokenizer's facts.

    in_channels    C of the stream's tokens (values [B, L, C])
    position_axes  A of the stream's positions [B, L, A]
    """

    in_channels: int = Field(ge=1)
    position_axes: int = Field(1, ge=0)

    @model_validator(mode="after")
    def _axes_fit(self) -> StreamConfig:
        dims = self.rope_axes_dim
        if dims and len(dims) != self.position_axes:
            raise ValueError(f"rope_axes_dim {list(dims)} must give one even number per position axis "
                             f"({self.position_axes}), or be [] for no RoPE")
        if self.rope_periods is not None and len(self.rope_periods) != self.position_axes:
            raise ValueError(f"rope_periods {list(self.rope_periods)} must give one period (or null) per position axis "
                             f"({self.position_axes})")
        if self.sincos_position is not None and self.position_axes != 2:
            raise ValueError("sincos_position needs position_axes: 2 (row, col)")
        return self

    @property
    def velocity_channels(self) -> int:
        return self.in_channels if self.out_channels is None else self.out_channels


class TransformerOptions(Options):
    """Width, depths and conditioning of the backbone: everything but its streams.

    hidden_size      D, the token width in every block (num_heads * head_dim)
    depth_double     blocks with separate weights per stream and one joint attention (MMDiT)
    depth_single     blocks with shared weights over the joint sequence (Flux)
    rope_theta       base of the rotary frequencies
    global_cond_dim  G of an optional global conditioning vector cond [B, G]; 0 = none
    guidance_embed   embed a guidance scale [B] like Flux-dev (forward's ``guidance``)
    qk_norm          RMSNorm with a learned scale on queries and keys
    checkpointing    which blocks recompute their activations in backward (less memory in training,
                     one more forward of those blocks): false / "none", true / "all", "every_N"
                     (blocks 0, N, 2N, ...), or a list of block indices; blocks are counted double
                     ones first, then single ones
    """

    model_config = ConfigDict(frozen=True)

    hidden_size: int = Field(256, ge=1)
    num_heads: int = Field(4, ge=1)
    depth_double: int = Field(2, ge=0)
    depth_single: int = Field(2, ge=0)
    mlp_ratio: Number = Field(4.0, gt=0)
    rope_theta: Number = Field(10000.0, gt=0)
    global_cond_dim: int = Field(0, ge=0)
    guidance_embed: bool = False
    qk_norm: bool = True
    checkpointing: Checkpointing = False
    #: sinusoids come in (cos, sin) pairs
    frequency_dim: int = Field(256, ge=2, multiple_of=2)
    #: t (and MeanFlow's interval h) is multiplied by it before the sinusoids: 1000 (Flux's) has
    #: periods down to 0.006 in t; 1 (SiT's) keeps the network smooth in t (flowcore.nn.embeddings)
    time_scale: Number = Field(1000.0, gt=0)

    @model_validator(mode="after")
    def _sizes_fit(self) -> TransformerOptions:
        if self.hidden_size % self.num_heads or (self.hidden_size // self.num_heads) % 2:
            raise ValueError(f"hidden_size {self.hidden_size} must be num_heads ({self.num_heads}) times an even "
                             "head dim")
        if self.depth_double + self.depth_single == 0:
            raise ValueError("depth_double + depth_single must be >= 1")
        blocks = self.depth_double + self.depth_single
        if isinstance(self.checkpointing, list) and any(i >= blocks for i in self.checkpointing):
            raise ValueError(f"checkpointing {self.checkpointing}: block indices run from 0 to {blocks - 1} "
                             f"(depth_double + depth_single = {blocks})")
        if self.mlp_hidden < 1:
            raise ValueError(f"mlp_ratio {self.mlp_ratio} leaves the blocks' MLPs no width (hidden_size x mlp_ratio "
                             "must be >= 1)")
        return self

    def checkpointed(self, block: int) -> bool:
        """Whether block ``block`` (double blocks first, then single) recomputes in backward."""
        c = self.checkpointing
        if isinstance(c, bool):
            return c
        if isinstance(c, list):
            return block in c
        if c == "none" or c == "all":
            return c == "all"
        return block % int(c.removeprefix("every_")) == 0

    @property
    def head_dim(self) -> int:
        return self.hidden_size // self.num_heads

    @property
    def mlp_hidden(self) -> int:
        return int(self.hidden_size * self.mlp_ratio)


class TransformerSection(TransformerOptions):
    """The run config's ``model.transformer``: the backbone's options and per-stream options.

    Each stream's ``in_channels`` and ``position_axes`` come from its modality's tokenizer
    when the network is built, so a config names only what :class:`StreamOptions` holds.
    """

    streams: dict[str, StreamOptions] = Field(default_factory=dict)


class FlowTransformerConfig(TransformerOptions):
    """The whole backbone: streams, width, depths, and the conditioning it accepts."""

    streams: Mapping[str, StreamConfig]

    @model_validator(mode="after")
    def _streams_fit(self) -> FlowTransformerConfig:
        if not self.streams:
            raise ValueError("streams: name at least one modality stream")
        for name in self.streams:
            check_name(name, "model stream")
        if not any(s.velocity_channels > 0 for s in self.streams.values()):
            raise ValueError("streams: at least one stream must predict a velocity (out_channels != 0)")
        claimed = sum(sum(s.rope_axes_dim) for s in self.streams.values() if s.rope_axes_dim is not None)
        if claimed > self.head_dim:
            raise ValueError(f"streams: rope_axes_dim claim {claimed} head dims, more than {self.head_dim}")
        return self

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
        """Build from a YAML section; a bad value or an unknown key raises ConfigError naming it."""
        return validate(cls, data, where)

    def to_dict(self) -> dict[str, Any]:
        """Plain data (YAML-safe) that :meth:`from_dict` reads back."""
        return self.model_dump(mode="json")


__all__ = ["FlowTransformerConfig", "TransformerSection", "TransformerOptions", "StreamConfig", "StreamOptions",
           "SincosPosition"]
