"""FlowModule: the Lightning stage that trains a velocity network over the configured modalities.

One training step (DESIGN.md "Per-modality time"):

1. each modality's batch -> tokens x0 (through its frozen autoencoder and tokenizer);
2. each modality gets a state per sample: noised (t from the timestep sampler, then shifted),
   clean (t = 0: a condition) or absent (t = 1, pure prior noise: a dropped condition or an
   any-to-any modality left out). ``generate`` modalities are noised; ``condition`` ones are
   clean, dropped with probability ``dropout``; ``any`` ones draw a state per sample
   (OmniFlow: clean with ``p_clean``, absent with ``p_absent``), keeping one noised per sample;
3. x_t = path.interpolate(x0, eps, t) for every modality; the network sees all of them;
4. the loss is the squared velocity error of the noised modalities only, plus, for a
   modality that defines one, its ``auxiliary_loss`` on the clean tokens the predicted
   velocity points back to (``path.clean_estimate``).
"""

from __future__ import annotations

import copy
import math
from typing import Any, Mapping

import lightning as L
import torch
from torch import nn

from flowcore.flow.guidance import condition_dropout
from flowcore.flow.reflow import ot_coupling
from flowcore.flow.timesteps import make_loss_weight, make_timestep_sampler, shift_time
from flowcore.modality import Modality, Tokens
from flowcore.train.bundle import Bundle, build_bundles
from flowcore.train.config import Config, from_dict
from flowcore.train.data import latent_names
from flowcore.train.networks import build_network

NOISED, CLEAN, ABSENT = 0, 1, 2


class EMA(nn.Module):
    """An exponential moving average of a network's weights, itself a usable network.

    Living inside the LightningModule, it is saved in every checkpoint and restored on resume.
    The decay warms up as min(decay, (1 + n) / (10 + n)) so early averages are not stuck at init.
    """

    def __init__(self, net: nn.Module, decay: float):
        super().__init__()
        self.decay = decay
        self.net = copy.deepcopy(net).requires_grad_(False)
        self.register_buffer("updates", torch.zeros((), dtype=torch.long))

    @torch.no_grad()
    def update(self, net: nn.Module) -> None:
        n = int(self.updates)
        d = min(self.decay, (1 + n) / (10 + n))
        for avg, p in zip(self.net.parameters(), net.parameters()):
            avg.lerp_(p.detach().to(avg.dtype), 1 - d)
        for avg, b in zip(self.net.buffers(), net.buffers()):
            avg.copy_(b)
        self.updates += 1


def lr_lambda(step: int, warmup: int, total: int, schedule: str) -> float:
    """Multiplier of the peak lr at ``step``: linear warm-up, then constant / cosine / linear to 0."""
    if step < warmup:
        return (step + 1) / warmup
    if schedule == "constant":
        return 1.0
    frac = min(1.0, (step - warmup) / max(1, total - warmup))
    return 0.5 * (1 + math.cos(math.pi * frac)) if schedule == "cosine" else 1.0 - frac


class FlowModule(L.LightningModule):
    """Trains ``config.model`` on ``config.modalities`` (see the module docstring for the step).

    ``config`` is plain data (the validated config's ``to_dict()``) so Lightning stores it in
    every checkpoint's hyper-parameters.
    """

    def __init__(self, config: Mapping[str, Any], registry=None, load_autoencoders: bool = True):
        super().__init__()
        self.save_hyperparameters({"config": dict(config)})
        from flowcore.registry import get_registry

        registry = registry or get_registry()
        self.config: Config = from_dict(config, source=str(config.get("out_dir", "<run>")) + "/config.yaml")
        self.bundles: dict[str, Bundle] = build_bundles(self.config, registry, load_autoencoders)
        self.autoencoders = nn.ModuleDict({n: b.autoencoder for n, b in self.bundles.items()
                                           if b.autoencoder is not None})
        self.net = build_network(self.config, {n: b.modality for n, b in self.bundles.items()})
        self.ema = EMA(self.net, self.config.train.ema) if self.config.train.ema > 0 else None
        tr = self.config.train
        if tr.compile is not False:
            # In place (Module.compile), after the EMA copy: parameter names and checkpoints stay
            # those of the eager network, and sampling runs the EMA network eagerly.
            self.net.compile(backend=tr.compile_backend, mode=None if tr.compile is True else tr.compile)
        self.latent = set(latent_names(self.config, self.bundles))  # batches that arrive encoded
        flow = self.config.flow
        self.timesteps = make_timestep_sampler(flow.timesteps, **flow.timestep_options)
        self.loss_weight = make_loss_weight(flow.loss_weight)
        self.distiller = None
        if self.config.distill.start_step is not None:
            from flowcore.train.distill import OnPolicyDistillation

            self.distiller = OnPolicyDistillation(self.config, self.bundles)
        self._resumed_teacher: dict[str, torch.Tensor] | None = None

    # -- the network used for sampling --------------------------------------------------

    @property
    def sampler_net(self) -> nn.Module:
        """EMA weights when EMA is on, else the trained weights."""
        return self.ema.net if self.ema is not None else self.net

    def train(self, mode: bool = True):
        super().train(mode)
        self.autoencoders.eval()  # frozen: keep dropout / batch-norm in inference mode
        return self

    # -- training ------------------------------------------------------------------------

    def states(self, batch_size: int) -> dict[str, torch.Tensor]:
        """Per modality, each sample's state [B]: NOISED, CLEAN or ABSENT (module docstring, step 2)."""
        device = self.device
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

    def flow_loss(self, x0: Mapping[str, Tokens], eps: Mapping[str, torch.Tensor] | None = None,
                  ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """Loss on clean tokens x0 (and, for reflow, fixed noise ``eps``); also per-modality losses."""
        b = next(iter(x0.values())).batch_size
        states = self.states(b)
        t_noised = {n: shift_time(self.timesteps(b, device=self.device), self.config.flow.shift) for n in x0}
        inputs, times, targets = {}, {}, {}
        for name, tokens in x0.items():
            path = self.bundles[name].path
            noise = eps[name] if eps is not None else path.masked_prior(
                tokens.values.shape, tokens.mask, device=self.device, dtype=tokens.values.dtype)
            if eps is None and self.config.flow.ot_coupling and self.config.modalities[name].role == "generate":
                noise = ot_coupling(tokens.values, noise, method=self.config.flow.ot_coupling)
            s = states[name]
            t = torch.where(s == NOISED, t_noised[name], torch.where(s == CLEAN, 0.0, 1.0))
            sample = path.interpolate(tokens.values, noise, t)
            inputs[name], times[name], targets[name] = tokens.with_values(sample.x_t), t, sample.v
        pred = self.net(inputs, times)
        total = torch.zeros((), device=self.device)
        count = torch.zeros((), device=self.device)
        parts = {}
        for name, v in targets.items():
            mask = inputs[name].mask.to(v.dtype)
            sq = ((pred[name].float() - v.float()) ** 2).mean(-1)  # [B, L]
            per_sample = (sq * mask).sum(-1) / mask.sum(-1).clamp_min(1)
            modality = self.bundles[name].modality
            if type(modality).auxiliary_loss is not Modality.auxiliary_loss:
                x0_hat = self.bundles[name].path.clean_estimate(inputs[name].values, pred[name].float(), times[name])
                aux = modality.auxiliary_loss(x0[name].with_values(x0_hat), x0[name], times[name])
                if aux is not None:
                    per_sample = per_sample + aux
            noised = (states[name] == NOISED).to(per_sample.dtype)
            weight = noised * self.loss_weight(times[name]) * self.config.modalities[name].loss_weight
            total = total + (weight * per_sample).sum()
            count = count + noised.sum()
            if self.config.modalities[name].role != "condition":
                parts[name] = (noised * per_sample).sum() / noised.sum().clamp_min(1)
        return total / count.clamp_min(1), parts

    def training_step(self, batch: Mapping[str, Any], batch_idx: int) -> torch.Tensor:
        x0 = {name: b.tokens(batch[name], encoded=name in self.latent) for name, b in self.bundles.items()}
        loss, parts = self.flow_loss(x0)
        self.log("train/loss", loss, prog_bar=True)
        if len(parts) > 1:
            self.log_dict({f"train/loss_{n}": v for n, v in parts.items()})
        self.log("train/lr", self.trainer.optimizers[0].param_groups[0]["lr"])
        if self.distiller is not None and self.global_step >= self.config.distill.start_step:
            distill = self.distill_loss(x0)
            self.log("train/distill", distill, prog_bar=True)
            loss = loss + self.config.distill.weight * distill
        return loss

    def distill_loss(self, x0: Mapping[str, Tokens]) -> torch.Tensor:
        """On-policy distillation (``flowcore.train.distill``): freezes the teacher at the first call."""
        if self.distiller.teacher is None:  # the first distilled step of this process (also after a resume)
            self.distiller.start(self.sampler_net, self._resumed_teacher)
            if self.ema is not None and self.config.distill.ema is not None:
                self.ema.decay = self.config.distill.ema
        return self.distiller.loss(self.net, x0, self.device)

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        if self.distiller is not None and self.distiller.teacher is not None:
            checkpoint["distill_teacher"] = self.distiller.teacher.state_dict()
            checkpoint["distill_state"] = self.distiller.state_dict()

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        # a run resumed after distill.start_step keeps the teacher it froze, not the EMA of now, and
        # goes on with the rollouts it had queued and the random draws it would have made
        self._resumed_teacher = checkpoint.get("distill_teacher")
        if self.distiller is not None and "distill_state" in checkpoint:
            self.distiller.load_state_dict(checkpoint["distill_state"])

    def on_train_batch_end(self, outputs: Any, batch: Any, batch_idx: int) -> None:
        if self.ema is not None:
            self.ema.update(self.net)

    def configure_optimizers(self):
        return make_optimizer(self.net.parameters(), self.config)


def make_optimizer(params, config: Config) -> dict[str, Any]:
    """Optimizer and per-step LR schedule from ``config.train`` (Lightning's dict form)."""
    tr = config.train
    if tr.optimizer == "sgd":
        opt = torch.optim.SGD(params, lr=tr.lr, momentum=tr.betas[0], weight_decay=tr.weight_decay,
                              foreach=True)
    else:
        cls = torch.optim.AdamW if tr.optimizer == "adamw" else torch.optim.Adam
        opt = cls(params, lr=tr.lr, betas=tuple(tr.betas), weight_decay=tr.weight_decay, foreach=True)
    d = config.distill
    distill_lr = None if d.start_step is None or d.lr is None else d.lr / tr.lr

    def multiplier(step: int) -> float:
        if distill_lr is not None and step >= d.start_step:
            return distill_lr  # the distillation phase's own, constant lr
        return lr_lambda(step, tr.warmup_steps, tr.steps, tr.schedule)

    sched = torch.optim.lr_scheduler.LambdaLR(opt, multiplier)
    return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "step"}}
