"""The run's flow objective: which modalities are noised, clean or absent, at which t, and the loss.

One training step (docs/design.md "Per-modality time"):

1. each modality's batch arrives as clean tokens x0 (through its frozen autoencoder and tokenizer);
2. each modality gets a state per sample: noised (t from the timestep sampler, then shifted),
   clean (t = 0: a condition) or absent (t = 1, pure prior noise: a dropped condition or an
   any-to-any modality left out). ``generate`` modalities are noised; ``condition`` ones are
   clean, dropped with probability ``dropout``; ``any`` ones draw a state per sample
   (OmniFlow: clean with ``p_clean``, absent with ``p_absent``, the flow section's or the
   modality's own), keeping one noised per sample, or, in a ``p_task`` share of the samples,
   a pair task from ``flow.tasks`` ("audio|image": audio noised, image clean, the rest absent);
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

from flowcore.errors import ConfigError
from flowcore.flow.guidance import condition_dropout
from flowcore.flow.loss import FlowLoss, flow_matching_terms
from flowcore.flow.meanflow import (
    adaptive_weight,
    guided_target_velocity,
    lagrangian_target,
    mean_velocity_masked,
    meanflow_target,
    sample_interval,
)
from flowcore.flow.ot import ot_coupling
from flowcore.flow.path import expand_t
from flowcore.flow.timesteps import make_loss_weight, make_timestep_sampler, shift_time
from flowcore.modality import Modality, Tokens
from flowcore.train.bundle import Bundle
from flowcore.train.config import Config, parse_direction

NOISED, CLEAN, ABSENT = 0, 1, 2


class FlowObjective:
    """``objective(net, x0) -> FlowLoss`` for ``config``'s modalities and roles (module docstring)."""

    def __init__(self, config: Config, bundles: Mapping[str, Bundle]):
        self.config, self.bundles = config, bundles
        flow = config.flow
        self.timesteps = make_timestep_sampler(flow.timesteps, **flow.timestep_options)
        self.loss_weight = make_loss_weight(flow.loss_weight)
        self.teacher: nn.Module | None = None  # flow.meanflow.teacher, loaded at the first loss
        # flow.tasks as a table [task, 'any' modality] of states, built once
        anys = config.names("any")
        self.task_states = torch.full((len(flow.tasks), len(anys)), ABSENT, dtype=torch.long)
        for i, text in enumerate(flow.tasks):
            made, given = parse_direction(text)
            self.task_states[i, [anys.index(n) for n in given]] = CLEAN
            self.task_states[i, [anys.index(n) for n in made]] = NOISED

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
            p_clean, p_absent = (torch.tensor(p, device=device)[:, None]
                                 for p in zip(*(cfg.p_states(n) for n in anys)))
            s = torch.full_like(u, NOISED, dtype=torch.long)
            s[u < p_clean + p_absent] = CLEAN
            s[u < p_absent] = ABSENT
            if not cfg.names("generate"):
                # a sample with nothing noised teaches nothing: noise one of its modalities
                idle = (s != NOISED).all(0)
                pick = torch.randint(len(anys), (batch_size,), device=device)
                s[pick[idle], idle.nonzero().squeeze(1)] = NOISED
            if cfg.flow.tasks:
                self.draw_tasks(s)
            for i, name in enumerate(anys):
                states[name] = s[i]
        return states

    def draw_tasks(self, s: torch.Tensor) -> None:
        """Overwrite a ``flow.p_task`` share of the columns of ``s [any modality, B]`` with pair tasks (OmniFlow)."""
        flow = self.config.flow
        table = self.task_states.to(s.device)
        chosen = (torch.rand(s.shape[1], device=s.device) < flow.p_task).nonzero().squeeze(1)
        drawn = table[torch.randint(len(flow.tasks), (len(chosen),), device=s.device)].T
        dropped = (drawn == CLEAN) & (torch.rand(drawn.shape, device=s.device) < flow.task_dropout)
        s[:, chosen] = torch.where(dropped, ABSENT, drawn)

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

        if self.config.flow.objective == "meanflow":
            return self.meanflow(net, x0, noise, states)
        return flow_matching_terms(
            velocity, {n: tok.values for n, tok in x0.items()}, noise, times,
            paths={n: self.bundles[n].path for n in x0}, weight=self.loss_weight,
            mask={n: tok.mask for n, tok in x0.items()}, noised={n: s == NOISED for n, s in states.items()},
            scale={n: self.config.modalities[n].loss_weight for n in x0}, auxiliary=self.auxiliaries(x0),
            huber_c=self.config.flow.huber_c if self.config.flow.distance == "pseudo_huber" else None)

    def meanflow(self, net: nn.Module, x0: Mapping[str, Tokens], noise: Mapping[str, torch.Tensor],
                 states: Mapping[str, torch.Tensor]) -> FlowLoss:
        """The MeanFlow loss (flowcore.flow.meanflow) of an average-velocity ``net`` on x0.

        One (r, t) per sample, shared by the modalities it noises; a clean or absent modality
        stays at t = 0 / 1 with r = t and does not move in the JVP. The JVP runs on the samples
        with r < t only (where (t - r) du/dt is not zero), without a graph.
        """
        mf = self.config.flow.meanflow
        first = next(iter(x0.values()))
        b, device = first.batch_size, first.values.device
        t, r = sample_interval(self.timesteps, b, mf.p_equal, device=device, draw=mf.interval,
                               split_means=mf.split_means)
        t, r = shift_time(t, self.config.flow.shift), shift_time(r, self.config.flow.shift)
        moving = {n: states[n] == NOISED for n in x0}
        fixed = {n: torch.where(states[n] == CLEAN, 0.0, 1.0).to(device) for n in x0}
        x0v = {n: tok.values for n, tok in x0.items()}

        def times_of(n: str, tb: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
            return torch.where(moving[n][idx], tb, fixed[n][idx])

        def z_at(idx: torch.Tensor) -> dict[str, torch.Tensor]:
            return {n: (1 - expand_t(times_of(n, t[idx], idx), x0v[n])) * x0v[n][idx]
                    + expand_t(times_of(n, t[idx], idx), x0v[n]) * noise[n][idx] for n in x0}

        def u_on(idx: torch.Tensor, model: nn.Module = net, drop: frozenset = frozenset()):
            """u(z, t, r) on the samples ``idx``, conditions in ``drop`` made absent (t = 1, noise)."""
            def u(z: dict[str, torch.Tensor], tb: torch.Tensor, rb: torch.Tensor) -> dict[str, torch.Tensor]:
                tokens, tt, rr = {}, {}, {}
                for n in x0:
                    gone = n in drop and self.config.modalities[n].role == "condition"
                    tokens[n] = Tokens(noise[n][idx] if gone else z[n], x0[n].positions[idx], x0[n].mask[idx])
                    tt[n] = torch.ones_like(tb) if gone else times_of(n, tb, idx)
                    rr[n] = tt[n] if gone else torch.where(moving[n][idx], rb, tt[n])
                out = model(tokens, tt) if model is self.teacher else model(tokens, tt, rr)
                return {n: out[n] for n in z if n in out}
            return u

        everyone = torch.arange(b, device=device)
        z = z_at(everyone)
        pred = u_on(everyone)(z, t, r)
        interval = (t > r).nonzero().squeeze(1)
        own = None  # the network's own instantaneous velocity u(z, t, t), where something reads it
        if mf.cfg_kappa or mf.tangent == "model":  # kappa needs no teacher (the config refuses both)
            own = self.own_velocity(u_on, z, t, pred, interval)
        if mf.teacher is not None:
            v = self.teacher_velocity(u_on, z, t, states, everyone)
        else:
            v = {n: noise[n] - x0v[n] for n in x0}
            v = self.guided_target(u_on, z, v, t, states, own)

        def moving_only(field: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
            return {n: torch.where(expand_t(moving[n], field[n]).bool(), field[n], 0.0) if n in field
                    else torch.zeros_like(x0v[n]) for n in x0}

        v = moving_only(v)
        tangent = moving_only(own) if mf.tangent == "model" else v
        target = {n: v[n].clone() for n in x0}
        if len(interval):
            z_i = {n: z[n][interval] for n in x0}
            if mf.identity == "lagrangian":
                def velocity_at(end: dict[str, torch.Tensor], rb: torch.Tensor) -> dict[str, torch.Tensor]:
                    # a modality that does not move stays where it is; the teacher reads it at its own time
                    end = {n: torch.where(expand_t(moving[n][interval], z_i[n]).bool(), end[n], z_i[n]) for n in x0}
                    return self.teacher_velocity(u_on, end, rb, states, interval)
                sub = lagrangian_target(u_on(interval), z_i, t[interval], r[interval], velocity_at)
            else:
                sub = meanflow_target(u_on(interval), z_i, {n: v[n][interval] for n in x0}, t[interval], r[interval],
                                      tangent={n: tangent[n][interval] for n in x0},
                                      step=mf.difference_step if mf.derivative == "difference" else None)
            for n in x0:
                if n in sub:
                    target[n][interval] = sub[n].to(target[n].dtype)
        total = torch.zeros((), device=device)
        count = torch.zeros((), device=device)
        parts = {}
        for n, tok in x0.items():
            if n not in pred:
                continue
            sq = ((pred[n].float() - target[n].float()) ** 2).mean(-1)
            per_sample = mean_velocity_masked(sq, tok.mask)
            on = moving[n].to(per_sample.dtype)
            w = on * self.config.modalities[n].loss_weight * adaptive_weight(per_sample, mf.norm_p, mf.norm_eps)
            total = total + (w * per_sample).sum()
            count = count + on.sum()
            parts[n] = (on * per_sample).sum() / on.sum().clamp_min(1)
        return FlowLoss(total / count.clamp_min(1), parts)

    @torch.no_grad()
    def own_velocity(self, u_on, z, t, pred, interval) -> dict[str, torch.Tensor]:
        """The network's u(z, t, t) under each sample's own conditions, without a graph.

        ``pred`` is its u(z, t, r) on the whole batch: where r = t that already is the velocity,
        so only the ``interval`` samples take another pass.
        """
        own = {n: p.detach().clone() for n, p in pred.items()}
        if len(interval):
            sub = u_on(interval)({n: z[n][interval] for n in z}, t[interval], t[interval])
            for n in own:
                own[n][interval] = sub[n].to(own[n].dtype)
        return own

    @torch.no_grad()
    def guided_target(self, u_on, z, v, t, states, own) -> dict[str, torch.Tensor]:
        """v_g of the samples that keep every condition (flowcore.flow.meanflow.guided_target_velocity);
        ``own``: the network's u(z, t, t) (:meth:`own_velocity`), which kappa reads as u_cond."""
        mf = self.config.flow.meanflow
        conditions = self.config.names("condition")
        if (mf.cfg == 1 and not mf.cfg_kappa) or not conditions:
            return v
        keep = torch.stack([states[n] == CLEAN for n in conditions]).all(0)
        everyone = torch.arange(len(t), device=t.device)
        u_uncond = u_on(everyone, drop=frozenset(conditions))(z, t, t)
        u_cond = {n: own[n] for n in u_uncond} if mf.cfg_kappa else None
        guided = guided_target_velocity({n: v[n] for n in u_uncond}, u_cond, u_uncond, keep, mf.cfg, mf.cfg_kappa)
        return {**v, **guided}

    @torch.no_grad()
    def teacher_velocity(self, u_on, z, t, states, idx) -> dict[str, torch.Tensor]:
        """``flow.meanflow.teacher``'s velocity at z (the samples ``idx``) and time t, guided at ``cfg``
        where every condition is kept.

        The teacher is a velocity network (no r), loaded from its run at the first call and frozen.
        """
        mf = self.config.flow.meanflow
        if self.teacher is None:
            from flowcore.train.inference import load  # lazy: inference imports this module

            teacher = load(mf.teacher, device=t.device)
            if teacher.config.flow.objective != "flow_matching" or set(teacher.config.modalities) != set(self.bundles):
                raise ConfigError(f"{self.config.source}: flow.meanflow.teacher: {mf.teacher} must be a velocity "
                                  f"(flow_matching) run over the modalities {sorted(self.bundles)}")
            self.teacher = teacher.net
        v = u_on(idx, model=self.teacher)(z, t, t)
        conditions = self.config.names("condition")
        if mf.cfg == 1 or not conditions:
            return v
        keep = torch.stack([states[n][idx] == CLEAN for n in conditions]).all(0)
        v_uncond = u_on(idx, model=self.teacher, drop=frozenset(conditions))(z, t, t)
        return {n: torch.where(expand_t(keep, v[n]).bool(), v_uncond[n] + mf.cfg * (v[n] - v_uncond[n]), v[n])
                for n in v}

    def auxiliaries(self, x0: Mapping[str, Tokens]) -> dict:
        """Each modality's ``auxiliary_loss`` on the clean estimate, where it overrides the default."""
        out = {}
        for name, tokens in x0.items():
            modality = self.bundles[name].modality
            if type(modality).auxiliary_loss is not Modality.auxiliary_loss:
                out[name] = (lambda x0_hat, t, m=modality, tok=tokens:
                             m.auxiliary_loss(tok.with_values(x0_hat), tok, t))
        return out
