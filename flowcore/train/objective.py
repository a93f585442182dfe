"""The run's flow objective: which modalities are noised, clean or absent, at which t, and the loss.

One training step (docs/design.md "Per-modality time"):

1. each modality's batch arrives as clean tokens x0 (through its frozen autoencoder and tokenizer);
2. each modality gets a state per sample: noised (t from the timestep sampler, then shifted),
   clean (t = 0: a condition) or absent (t = 1, pure prior noise: a dropped condition or an
   any-to-any modality left out). ``generate`` modalities are noised; ``condition`` ones are
   clean, dropped with probability ``dropout``; ``any`` ones draw a state per sample
   (OmniFlow: clean with ``p_clean``, absent with ``p_absent``), keeping one noised per sample;
3. ``flowcore.flow.loss.flow_matching_terms`` interpolates every modality, runs the network on
   all of them and takes the loss on the noised ones (plus a modality's ``auxiliary_loss`` on
   the clean estimate, where it defines one).

The training module, held-out evaluation and reflow all call :class:`FlowObjective`, so the
loss they report is the loss in ``flowcore/flow/loss.py``.
"""

from __future__ import annotations

from typing import Mapping

import torch
from torch import nn

from flowcore.flow.guidance import condition_dropout
from flowcore.flow.loss import FlowLoss, flow_matching_terms
from flowcore.flow.ot import ot_coupling
from flowcore.flow.timesteps import make_loss_weight, make_timestep_sampler, shift_time
from flowcore.modality import Modality, Tokens
from flowcore.train.bundle import Bundle
from flowcore.train.config import Config

NOISED, CLEAN, ABSENT = 0, 1, 2


class FlowObjective:
    """``objective(net, x0) -> FlowLoss`` for ``config``'s modalities and roles (module docstring)."""

    def __init__(self, config: Config, bundles: Mapping[str, Bundle]):
        self.config, self.bundles = config, bundles
        flow = config.flow
        self.timesteps = make_timestep_sampler(flow.timesteps, **flow.timestep_options)
        self.loss_weight = make_loss_weight(flow.loss_weight)

    def states(self, batch_size: int, device: torch.device) -> dict[str, torch.Tensor]:
        """Per modality, each sample's state [B]: NOISED, CLEAN or ABSENT (module docstring, step 2)."""
        cfg = self.config
        states = {}
        for name in cfg.names("generate"):
            states[name] = torch.full((batch_size,), NOISED, device=device)
        conditions = cfg.names("condition")
        if conditions:
            drop = condition_dropout(batch_size, conditions, {n: cfg.modalities[n].dropout for n in conditions},
                                     device=device)
            for name in conditions:
                states[name] = torch.where(drop[name], ABSENT, CLEAN).to(device)
        anys = cfg.names("any")
        if anys:
            u = torch.rand(len(anys), batch_size, device=device)
            s = torch.full_like(u, NOISED, dtype=torch.long)
            s[u < cfg.flow.p_clean + cfg.flow.p_absent] = CLEAN
            s[u < cfg.flow.p_absent] = ABSENT
            if not cfg.names("generate"):
                # a sample with nothing noised teaches nothing: noise one of its modalities
                idle = (s != NOISED).all(0)
                pick = torch.randint(len(anys), (batch_size,), device=device)
                s[pick[idle], idle.nonzero().squeeze(1)] = NOISED
            for i, name in enumerate(anys):
                states[name] = s[i]
        return states

    def __call__(self, net: nn.Module, x0: Mapping[str, Tokens],
                 eps: Mapping[str, torch.Tensor] | None = None) -> FlowLoss:
        """The loss of ``net`` on clean tokens x0 (and, for reflow, the fixed noise ``eps`` of each modality)."""
        first = next(iter(x0.values()))
        b, device = first.batch_size, first.values.device
        states = self.states(b, device)
        t_noised = {n: shift_time(self.timesteps(b, device=device), self.config.flow.shift) for n in x0}
        noise, times = {}, {}
        for name, tokens in x0.items():
            path = self.bundles[name].path
            noise[name] = eps[name] if eps is not None else path.masked_prior(
                tokens.values.shape, tokens.mask, device=device, dtype=tokens.values.dtype)
            if eps is None and self.config.flow.ot_coupling and self.config.modalities[name].role == "generate":
                noise[name] = ot_coupling(tokens.values, noise[name], method=self.config.flow.ot_coupling)
            s = states[name]
            times[name] = torch.where(s == NOISED, t_noised[name], torch.where(s == CLEAN, 0.0, 1.0))

        def velocity(x_t: Mapping[str, torch.Tensor], t: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
            return net({n: x0[n].with_values(x_t[n]) for n in x0}, t)

        return flow_matching_terms(
            velocity, {n: tok.values for n, tok in x0.items()}, noise, times,
            paths={n: self.bundles[n].path for n in x0}, weight=self.loss_weight,
            mask={n: tok.mask for n, tok in x0.items()}, noised={n: s == NOISED for n, s in states.items()},
            scale={n: self.config.modalities[n].loss_weight for n in x0}, auxiliary=self.auxiliaries(x0))

    def auxiliaries(self, x0: Mapping[str, Tokens]) -> dict:
        """Each modality's ``auxiliary_loss`` on the clean estimate, where it overrides the default."""
        out = {}
        for name, tokens in x0.items():
            modality = self.bundles[name].modality
            if type(modality).auxiliary_loss is not Modality.auxiliary_loss:
                out[name] = (lambda x0_hat, t, m=modality, tok=tokens:
                             m.auxiliary_loss(tok.with_values(x0_hat), tok, t))
        return out
