"""Velocity networks the pipeline trains. Both take and return the same dicts:

    net(tokens: {modality: Tokens}, t: {modality: t [B]}, r=None) -> {modality: v [B, L, C]}

A network built with ``interval=True`` (``flow.objective: meanflow``) also embeds the interval
h = t - r of ``r: {modality: r [B]}``, the start of the interval its average velocity spans
(flowcore.flow.meanflow); without r, h = 0 and it returns the instantaneous velocity. Built
without it, a network has no such weights (runs saved before load unchanged) and rejects r.

``mlp`` flattens every modality's fixed-length token values into one vector (toy2d points,
labels, tabular rows: RecTable's shape of model); ``transformer`` is the FlowTransformer.
"""

from __future__ import annotations

from typing import Mapping

import torch
from torch import nn

from flowcore.errors import ConfigError, DataError
from flowcore.flow.path import expand_t
from flowcore.modality import Modality, Tokens
from flowcore.nn.config import FlowTransformerConfig
from flowcore.nn.embeddings import timestep_frequencies
from flowcore.nn.interval import interval_lengths
from flowcore.nn.transformer import FlowTransformer
from flowcore.spec import resolve
from flowcore.train.config import Config


class ResidualBlock(nn.Module):
    """h + MLP(LN(h) + time): one pre-norm residual block, time added as a bias."""

    def __init__(self, hidden: int):
        super().__init__()
        self.norm = nn.LayerNorm(hidden)
        self.mlp = nn.Sequential(nn.Linear(hidden, 2 * hidden), nn.SiLU(), nn.Linear(2 * hidden, hidden))

    def forward(self, h: torch.Tensor, temb: torch.Tensor) -> torch.Tensor:
        return h + self.mlp(self.norm(h) + temb)


class FlowMLP(nn.Module):
    """A time-conditioned residual MLP over the concatenated token values of all modalities.

    Each modality m has a fixed token count L_m and channels C_m; the input is
    ``[x_1 (L_1 C_1) | x_2 (L_2 C_2) | ...]`` and each modality's time gets its own
    sinusoidal embedding. The output head starts at zero, like the FlowTransformer's.
    """

    def __init__(self, shapes: Mapping[str, tuple[int, int]], hidden: int = 256, depth: int = 3,
                 time_dim: int = 64, interval: bool = False, time_scale: float = 1000.0):
        super().__init__()
        self.shapes = dict(shapes)
        self.time_dim, self.time_scale = time_dim, time_scale
        width = sum(l * c for l, c in self.shapes.values())
        self.inp = nn.Linear(width, hidden)
        self.time = nn.Sequential(nn.Linear(time_dim * len(self.shapes), hidden), nn.SiLU(), nn.Linear(hidden, hidden))
        self.interval = nn.Sequential(nn.Linear(time_dim * len(self.shapes), hidden), nn.SiLU(),
                                      nn.Linear(hidden, hidden)) if interval else None
        self.blocks = nn.ModuleList(ResidualBlock(hidden) for _ in range(depth))
        self.out = nn.Sequential(nn.LayerNorm(hidden), nn.Linear(hidden, width))
        nn.init.zeros_(self.out[1].weight)
        nn.init.zeros_(self.out[1].bias)
        if self.interval is not None:  # zero interval embedding: a warm start from a velocity run is that field
            nn.init.zeros_(self.interval[2].weight)
            nn.init.zeros_(self.interval[2].bias)

    def forward(self, tokens: Mapping[str, Tokens], t: Mapping[str, torch.Tensor],
                r: Mapping[str, torch.Tensor] | None = None) -> dict[str, torch.Tensor]:
        parts = []
        for name, (length, channels) in self.shapes.items():
            v = tokens[name].values
            if v.shape[1:] != (length, channels):
                raise DataError(f"model.network mlp: {name} tokens are {tuple(v.shape[1:])}, the network was "
                                f"built for ({length}, {channels}); variable-length modalities need "
                                "model.network: transformer")
            parts.append(v.reshape(v.shape[0], -1))
        x = torch.cat(parts, -1)
        temb = self.time(torch.cat([timestep_frequencies(t[n], self.time_dim, scale=self.time_scale)
                                    for n in self.shapes], -1).to(x.dtype))
        h = interval_lengths(t, r, self.interval is not None, "model.network mlp")
        if h is not None:
            temb = temb + self.interval(torch.cat([timestep_frequencies(h[n], self.time_dim, scale=self.time_scale)
                                                   for n in self.shapes], -1).to(x.dtype))
        h = self.inp(x)
        for block in self.blocks:
            h = block(h, temb)
        flat = self.out(h)
        out, start = {}, 0
        for name, (length, channels) in self.shapes.items():
            size = length * channels
            out[name] = flat[:, start:start + size].reshape(-1, length, channels)
            start += size
        return out


class TransformerNet(nn.Module):
    """The FlowTransformer behind the same ``(tokens, t, r=None) -> v`` call as :class:`FlowMLP`."""

    def __init__(self, transformer: nn.Module):
        super().__init__()
        self.transformer = transformer

    def forward(self, tokens: Mapping[str, Tokens], t: Mapping[str, torch.Tensor],
                r: Mapping[str, torch.Tensor] | None = None) -> dict[str, torch.Tensor]:
        return self.transformer(dict(tokens), dict(t), r=None if r is None else dict(r))


def build_network(config: Config, modalities: Mapping[str, Modality]) -> nn.Module:
    """The network ``config.model`` names, shaped by the modalities' tokenizers.

    With ``model.prediction: x`` the network's output is read as a clean estimate and handed on as
    the velocity it implies (:func:`velocity_from_clean`), so every objective and solver sees a
    velocity as before and the weights keep their names.
    """
    net = _build(config, modalities)
    if config.model.prediction == "x":
        net.register_forward_hook(velocity_from_clean, with_kwargs=True)
    return net


def velocity_from_clean(module: nn.Module, args: tuple, kwargs: dict, x: dict[str, torch.Tensor]) -> dict:
    """u = (z_t - x) / t from the network's clean estimate x (pixel MeanFlow's x-prediction, Lu et al. 2026).

    A velocity network must pass its noisy input through with a gain of exactly 1 / t to cancel it,
    and at a time it has hardly trained (t = 1, where one-step sampling starts) the gain drifts and
    the noise shows; a clean estimate lies on the data and carries no such pass-through. Over an
    interval, z_r = z_t - (t - r) u = (r / t) z_t + (1 - r / t) x: a DDIM step. t is floored at
    ``X_PREDICTION_T_MIN`` (as JiT does) so clean and nearly clean samples stay finite.
    """
    tokens = args[0] if args else kwargs["tokens"]
    t = args[1] if len(args) > 1 else kwargs["t"]
    out = {}
    for name, xn in x.items():
        tn = expand_t(t[name].clamp_min(X_PREDICTION_T_MIN), xn)
        out[name] = (tokens[name].values.to(xn.dtype) - xn) / tn
    return out


#: the floor on t in u = (z_t - x) / t
X_PREDICTION_T_MIN = 0.05


def _build(config: Config, modalities: Mapping[str, Modality]) -> nn.Module:
    model = config.model
    interval = config.flow.objective == "meanflow"
    if model.network != "transformer":
        shapes = {}
        for name, m in modalities.items():
            blank = m.tokenizer.layout(1, config.modalities[name].size)
            shapes[name] = (blank.values.shape[1], blank.values.shape[2])
        if model.network == "mlp":
            return FlowMLP(shapes, hidden=model.hidden, depth=model.depth, time_dim=model.time_dim, interval=interval,
                           time_scale=model.time_scale)
        return _plugin_network(config, shapes, interval)
    section = dict(model.transformer)
    extra = section.pop("streams", None) or {}
    unknown = sorted(set(extra) - set(modalities))
    if unknown:
        raise ConfigError(f"{config.source}: model.transformer.streams.{unknown[0]}: not a configured modality "
                          f"({list(modalities)})")
    streams = {name: {"in_channels": m.tokenizer.channels, "position_axes": m.tokenizer.position_axes,
                      "rope_periods": getattr(m.tokenizer, "position_periods", None), **dict(extra.get(name) or {})}
               for name, m in modalities.items()}
    cfg = FlowTransformerConfig.from_dict({**section, "streams": streams},
                                          where=f"{config.source}: model.transformer")
    return TransformerNet(FlowTransformer(cfg, interval=interval))


def _plugin_network(config: Config, shapes: Mapping[str, tuple[int, int]], interval: bool = False) -> nn.Module:
    """A network a plugin ships, named ``package.module:attr`` in ``model.network``; for
    ``flow.objective: meanflow`` its factory is also given ``interval=True``."""
    where = f"{config.source}: model.network"
    try:
        factory = resolve(config.model.network)
    except Exception as exc:
        raise ConfigError(f"{where}: {exc}") from exc
    if interval:
        try:
            return _checked(factory(shapes, **config.model.options, interval=True), where, config)
        except TypeError as exc:
            if "interval" not in str(exc):
                raise ConfigError(f"{where}: {config.model.network} does not take model.options "
                                  f"{sorted(config.model.options)}: {exc}") from exc
            raise ConfigError(f"{where}: {config.model.network} takes no second time input (interval=True), "
                              f"which flow.objective meanflow needs: {exc}") from exc
    try:
        net = factory(shapes, **config.model.options)
    except TypeError as exc:
        raise ConfigError(f"{where}: {config.model.network} does not take model.options "
                          f"{sorted(config.model.options)}: {exc}") from exc
    return _checked(net, where, config)


def _checked(net: object, where: str, config: Config) -> nn.Module:
    if not isinstance(net, nn.Module):
        raise ConfigError(f"{where}: {config.model.network} returned {type(net).__name__}, not a torch nn.Module")
    return net
