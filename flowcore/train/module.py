"""FlowModule: the Lightning stage that trains a velocity network over the configured modalities.

A training step is :class:`flowcore.train.objective.FlowObjective` (per-modality states and
times, then ``flowcore.flow.loss``) on the step's batch, plus the on-policy distillation loss
from ``distill.start_step`` on. The module also keeps the EMA of the weights, which is what a
run exports and samples with. Inference never builds it (``flowcore.load``).
"""

from __future__ import annotations

import copy
import math
from typing import Any, Mapping

import lightning as L
import numpy as np
import torch
from torch import nn

from flowcore.modality import Tokens
from flowcore.nn.compile import compile_network
from flowcore.registry import get_registry
from flowcore.train.bundle import Bundle, build_bundles
from flowcore.train.config import Config
from flowcore.train.data import latent_names
from flowcore.train.distill import OnPolicyDistillation
from flowcore.train.networks import build_network
from flowcore.train.objective import FlowObjective
from flowcore.train.sharding import full_state, is_sharded, shard


def power_ema_exponent(width: float) -> float:
    """gamma of the power-function EMA whose profile k^gamma over [0, 1] has standard deviation
    ``width`` relative to its length (EDM2, Karras et al. 2024, eq. 3): the root of
    width^2 (gamma + 2)^2 (gamma + 3) = gamma + 1 with gamma >= 0, i.e. 0 < width <= 12^-1/2."""
    roots = np.roots([width**2, width**2 * 7, width**2 * 16 - 1, width**2 * 12 - 1])
    real = [r.real for r in roots if abs(r.imag) < 1e-9 and r.real >= -1e-9]
    if not real:
        raise ValueError(f"EMA width {width} gives no power profile: it must lie in (0, {12 ** -0.5:.4f}]")
    return max(0.0, max(real))


class EMA(nn.Module):
    """An exponential moving average of a network's weights, itself a usable network.

    Living inside the LightningModule, it is saved in every checkpoint and restored on resume.
    The decay warms up as min(decay, (1 + n) / (10 + n)) so early averages are not stuck at init.

    With ``width`` (EDM2's relative width sigma_rel) it is a power-function average instead: after
    n updates the decay is (1 - 1/n)^(gamma + 1), which weighs the weights of step k about as
    k^gamma, so the average spans the same share of any run's length.
    """

    def __init__(self, net: nn.Module, decay: float, width: float | None = None):
        super().__init__()
        self.decay = decay
        self.gamma = None if width is None else power_ema_exponent(width)
        self.net = copy.deepcopy(net).requires_grad_(False)
        self.register_buffer("updates", torch.zeros((), dtype=torch.long))

        self._count: int | None = None  # ``updates`` mirrored on the host: reading it every step would sync a GPU

    def _load_from_state_dict(self, *args, **kwargs) -> None:
        super()._load_from_state_dict(*args, **kwargs)
        self._count = None

    @torch.no_grad()
    def update(self, net: nn.Module) -> None:
        if self._count is None:
            self._count = int(self.updates)
        n = self._count
        if self.gamma is not None:
            d = (1 - 1 / (n + 1)) ** (self.gamma + 1)
        else:
            d = min(self.decay, (1 + n) / (10 + n))
        averages = list(self.net.parameters())
        weights = [p.detach().to(avg.dtype) for avg, p in zip(averages, net.parameters())]
        torch._foreach_lerp_(averages, weights, 1 - d)  # one kernel launch per group, not one per tensor
        for avg, b in zip(self.net.buffers(), net.buffers()):
            avg.copy_(b)
        self.updates += 1
        self._count += 1


def on_cuda(accelerator: str) -> bool:
    """Whether Lightning's ``train.accelerator`` setting trains on a CUDA device here."""
    return accelerator in ("gpu", "cuda") or (accelerator == "auto" and torch.cuda.is_available())


def compile_mode(setting: bool | str, accelerator: str) -> str | None:
    """``train.compile`` -> the torch.compile mode (``"default"`` for torch's), or None for eager.

    ``auto`` compiles in the default mode on CUDA, where a compiled FlowTransformer step measured
    about 2x the eager one, and leaves CPU training eager (there inductor needs a C++ compiler and
    the step is bound by matmuls).
    """
    if setting == "auto":
        return "default" if on_cuda(accelerator) else None
    if setting is False:
        return None
    return "default" if setting is True else setting


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

    Every checkpoint's hyper-parameters hold ``config.to_dict()``.
    """

    def __init__(self, config: Config, registry=None, load_autoencoders: bool = True):
        super().__init__()
        self.save_hyperparameters({"config": config.to_dict()})
        registry = registry or get_registry()
        self.config = config
        self.bundles: dict[str, Bundle] = build_bundles(config, registry, load_autoencoders)
        self.autoencoders = nn.ModuleDict({n: b.autoencoder for n, b in self.bundles.items()
                                           if b.autoencoder is not None})
        self.net = build_network(config, {n: b.modality for n, b in self.bundles.items()})
        tr = config.train
        self.ema = EMA(self.net, tr.ema, tr.ema_width) if tr.ema > 0 or tr.ema_width else None
        mode = compile_mode(tr.compile, tr.accelerator)
        if mode is not None:
            # In place, after the EMA copy: parameter names and checkpoints stay those of the eager
            # network, and sampling runs the EMA network eagerly.
            compile_network(self.net, mode, tr.compile_backend, tr.compile_scope)
        self.latent = set(latent_names(config, self.bundles))  # batches that arrive encoded
        self.objective = FlowObjective(config, self.bundles)
        self.distiller = OnPolicyDistillation(config, self.bundles) if config.distill.start_step is not None else None
        self._resumed_teacher: dict[str, torch.Tensor] | None = None
        #: the last training step's loss per modality (and distillation), detached
        self.step_losses: dict[str, torch.Tensor] = {}

    # -- the network used for sampling --------------------------------------------------

    @property
    def sampler_net(self) -> nn.Module:
        """EMA weights when EMA is on, else the trained weights."""
        return self.ema.net if self.ema is not None else self.net

    def whole_sampler_net(self) -> nn.Module:
        """:attr:`sampler_net`, or under ``train.strategy: fsdp`` an unsharded copy of it that one
        process can sample alone (gathering it is a collective: every process calls this)."""
        net = self.sampler_net
        if not is_sharded(net):
            return net
        with torch.random.fork_rng(devices=[]):  # its init must not move this process's random stream
            whole = build_network(self.config, {n: b.modality for n, b in self.bundles.items()})
        whole.load_state_dict(full_state(net))
        return whole.to(self.device).eval().requires_grad_(False)

    def configure_model(self) -> None:
        """Under ``train.strategy: fsdp`` Lightning gives the module a device mesh: shard the network and
        its EMA copy block by block (flowcore.train.sharding); bf16-mixed runs the blocks on bf16 copies
        of the fp32 shards."""
        if self.device_mesh is None or is_sharded(self.net):
            return
        mesh = self.device_mesh["data_parallel"]
        shard(self.net, mesh, bf16_compute=str(self.trainer.precision).startswith("bf16-mixed"))
        if self.ema is not None:
            shard(self.ema.net, mesh)

    def train(self, mode: bool = True):
        super().train(mode)
        self.autoencoders.eval()  # frozen: keep dropout / batch-norm in inference mode
        return self

    # -- training ------------------------------------------------------------------------

    def flow_loss(self, x0: Mapping[str, Tokens], eps: Mapping[str, torch.Tensor] | None = None,
                  ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """The objective's loss of the trained network, and the per-modality losses it logs."""
        out = self.objective(self.net, x0, eps)
        parts = {n: v for n, v in out.per_modality.items() if self.config.modalities[n].role != "condition"}
        self.step_losses = {n: v.detach() for n, v in parts.items()}  # what StopNonFinite names
        return out.loss, parts

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
            self.step_losses["distillation"] = distill.detach()
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

    def optimizer_step(self, *args: Any, **kwargs: Any) -> None:
        super().optimizer_step(*args, **kwargs)
        # here rather than in on_train_batch_end, which Lightning calls after the callbacks':
        # the checkpoint and the weights exported at this step then hold this step's average
        if self.ema is not None:
            self.ema.update(self.net)

    def configure_optimizers(self):
        return make_optimizer(self.net.parameters(), self.config, self.trainer.max_steps)


def make_optimizer(params, config: Config, total: int | None = None) -> dict[str, Any]:
    """Optimizer and per-step LR schedule from ``config.train`` (Lightning's dict form);
    ``total``: the steps the schedule spans (default ``train.steps``; the trainer's ``max_steps``
    when the budget is in epochs)."""
    tr = config.train
    total = total or tr.steps or 1
    params = list(params)
    fused = tr.fused_optimizer
    if fused == "auto":  # one kernel for the whole update where launches cost most
        fused = bool(params) and all(p.is_cuda for p in params)
    kind = {"fused": True} if fused else {"foreach": True}
    if tr.optimizer == "sgd":
        opt = torch.optim.SGD(params, lr=tr.lr, momentum=tr.betas[0], weight_decay=tr.weight_decay, **kind)
    else:
        cls = torch.optim.AdamW if tr.optimizer == "adamw" else torch.optim.Adam
        opt = cls(params, lr=tr.lr, betas=tuple(tr.betas), weight_decay=tr.weight_decay, **kind)
    d = config.distill
    distill_lr = None if d.start_step is None or d.lr is None else d.lr / tr.lr

    def multiplier(step: int) -> float:
        if distill_lr is not None and step >= d.start_step:
            return distill_lr  # the distillation phase's own, constant lr
        return lr_lambda(step, tr.warmup_steps, total, tr.schedule)

    sched = torch.optim.lr_scheduler.LambdaLR(opt, multiplier)
    return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "step"}}
