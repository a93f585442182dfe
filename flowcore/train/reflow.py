"""The reflow stage: the teacher's pairs on disk, then a student trained on them.

``prepare_reflow`` integrates the teacher (a trained run) from noise to data and stores the
pairs (``flowcore.flow.reflow.generate_pairs``); :class:`ReflowModule` trains the student on
them with the same objective as the flow stage. ``flowcore reflow`` runs both.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Mapping, Sequence

import lightning as L
import torch
from torch.utils.data import DataLoader

from flowcore.errors import ConfigError, DataError, UnknownNameError
from flowcore.flow.reflow import MANIFEST, PairDataset, generate_pairs, prior_noise
from flowcore.modality import Tokens
from flowcore.train import checkpoint as ckpt
from flowcore.train.bundle import Bundle
from flowcore.train.config import Config, apply_overrides, from_dict, load_config
from flowcore.train.data import build_split
from flowcore.train.inference import load
from flowcore.train.module import FlowModule
from flowcore.train.sampling import SamplingOptions, make_velocity, tokens_of


def pairs_dir(config: Config) -> Path:
    return Path(config.out_dir) / "pairs"


#: manifest key -> the config key that sets it (to name what differs from existing pairs)
PAIR_SETTINGS = {"count": "reflow.pairs", "steps": "reflow.steps", "solver": "reflow.solver",
                 "shift": "sample.shift", "seed": "seed", "conditions": "modalities.<name>.role", "cfg": "reflow.cfg"}


def reflow_guidance(config: Config) -> float | None:
    """The teacher's guidance weight for the pairs: ``reflow.cfg``, else ``sample.cfg``; None without conditions."""
    if not config.names("condition"):
        return None
    return config.reflow.cfg if config.reflow.cfg is not None else config.sample.cfg


def pair_sampling(config: Config) -> SamplingOptions:
    """How the teacher is sampled for the pairs: ``reflow.steps`` and ``reflow.solver`` (with no
    solver options), ``sample.shift``, guided with :func:`reflow_guidance`."""
    cfg = reflow_guidance(config)
    return SamplingOptions.from_config(config, steps=config.reflow.steps, solver=config.reflow.solver,
                                       solver_options={}, cfg=1.0 if cfg is None else cfg, seed=config.seed)


def prepare_reflow(config: Config, registry) -> Path:
    """Generate the teacher's pairs into ``<out>/pairs`` unless they are there (and were made alike).

    Unconditional run: (noise, ODE(noise)). With ``condition`` modalities (InstaFlow's recipe
    for text-to-image): the conditions of the pairs are the training split's, in a seeded
    shuffled order (cycled when there are more pairs than items), and each sample is the
    teacher's ODE solution from the noise given them, guided with ``reflow_guidance(config)``
    as ``flowcore sample`` guides; the condition tokens are stored with the pairs.
    """
    out = pairs_dir(config)
    conditions = config.names("condition")
    sampling = pair_sampling(config)
    settings = {"count": config.reflow.pairs, "steps": sampling.steps, "solver": sampling.solver,
                "shift": sampling.shift, "seed": sampling.seed, "conditions": sorted(conditions),
                "cfg": reflow_guidance(config)}
    if (out / MANIFEST).is_file():
        check_pairs(out, settings)
        return out
    rf = config.reflow
    teacher = load(rf.teacher, registry=registry)
    check_teacher_roles(config, teacher.config)
    make = config.names("generate", "any")
    net, bundles, device = teacher.net, teacher.bundles, teacher.device
    layouts = {m: bundles[m].layout(1) for m in make}
    for m in make:  # the pairs share one layout: a size list (samples of different sizes) has none
        several = bundles[m].layout(8)
        if several.values.shape[1:] != layouts[m].values.shape[1:] or not bool((several.mask == layouts[m].mask).all()):
            raise ConfigError(f"{config.source}: modalities.{m}.size: {config.modalities[m].size!r} "
                              "lays out samples of "
                              f"different sizes, but reflow pairs share one layout; give one size for the reflow stage")
    shapes = {m: tuple(layouts[m].values.shape[1:]) for m in make}
    noise = prior_noise(shapes, {m: bundles[m].path for m in make}, {m: layouts[m].mask[0].cpu() for m in make})

    def noise_on_device(b: int, g: torch.Generator) -> dict[str, torch.Tensor]:
        return {m: v.to(device) for m, v in noise(b, g).items()}

    def field(given, count: int, generator: torch.Generator):
        layouts = {m: bundles[m].layout(count, device) for m in make}
        return make_velocity(net, bundles, layouts, given, generator, sampling.cfg)

    try:
        generate_pairs(field, noise_on_device, rf.pairs, out, steps=sampling.steps, solver=sampling.solver,
                       solver_options=sampling.solver_options, shift=sampling.shift,
                       paths={m: bundles[m].path for m in make}, seed=sampling.seed,
                       conditions=TrainingConditions(config, bundles, registry, device), info={"cfg": settings["cfg"]},
                       progress=config.train.progress_bar)
    except UnknownNameError as exc:
        raise ConfigError(f"{config.source}: reflow.solver: {exc}") from exc
    return out


class TrainingConditions:
    """``conditions(start, count)`` of conditional pairs: condition tokens of training items.

    The items of the training split, in a shuffled order fixed by ``config.seed``, cycled when
    more pairs than items are asked for; ``{}`` for a run without conditions.
    """

    def __init__(self, config: Config, bundles: Mapping[str, Bundle], registry, device: torch.device):
        self.names = config.names("condition")
        self.bundles, self.device = bundles, device
        if self.names:
            self.items = build_split(config, {c: bundles[c] for c in self.names}, "train", registry)
            self.order = torch.randperm(len(self.items), generator=torch.Generator().manual_seed(config.seed))

    def __call__(self, start: int, count: int) -> dict[str, Any]:
        if not self.names:
            return {}
        items = [self.items[int(self.order[(start + j) % len(self.order)])] for j in range(count)]
        return {c: tokens_of(self.bundles[c], [item[c] for item in items], self.device) for c in self.names}


def check_teacher_roles(config: Config, teacher: Config) -> None:
    """The student's modalities are the teacher's; a condition was one the teacher was trained to take."""
    if set(config.modalities) != set(teacher.modalities):
        raise ConfigError(f"{config.source}: modalities: {sorted(config.modalities)}, but the teacher "
                          f"{config.reflow.teacher} has {sorted(teacher.modalities)}; reflow keeps the modalities")
    for name, m in config.modalities.items():
        was = teacher.modalities[name].role
        if m.role != was and was != "any":
            raise ConfigError(f"{config.source}: modalities.{name}.role is {m.role!r} but the teacher "
                              f"{config.reflow.teacher} was trained with {was!r}")


def check_pairs(out: Path, settings: Mapping[str, Any]) -> None:
    """Existing pairs were made as ``settings`` say (older manifests: unconditional, no cfg)."""
    try:
        manifest = json.loads((out / MANIFEST).read_text())
    except (OSError, ValueError) as exc:
        raise DataError(f"{out / MANIFEST}: cannot read the pair manifest ({exc}); "
                        f"delete {out} to make new pairs") from exc
    made = {"conditions": [], "cfg": None, **manifest}
    for key, value in settings.items():
        if made.get(key) != value:
            raise ConfigError(f"{out}: these pairs were made with {PAIR_SETTINGS[key]} = {made.get(key)!r}, the "
                              f"config asks for {value!r}; delete {out} (or reflow into another --out) "
                              "to make new ones")


class ReflowModule(FlowModule):
    """A FlowModule trained on the teacher's fixed pairs instead of data and fresh noise.

    The generated modalities start from the stored noise; the stored conditions are clean
    tokens, dropped (absent, fresh prior noise) with each condition's ``dropout`` exactly as
    in the base run, so guidance still works on the student.
    """

    def training_step(self, batch: Mapping[str, Any], batch_idx: int) -> torch.Tensor:
        x0 = {m: self.bundles[m].layout(v.shape[0], self.device).with_values(v) for m, v in batch["x0"].items()}
        eps = dict(batch["eps"])
        for name, c in batch.get("cond", {}).items():
            x0[name] = Tokens(c["values"], c["positions"], c["mask"])
            eps[name] = self.bundles[name].path.masked_prior(c["values"].shape, c["mask"], device=self.device,
                                                             dtype=c["values"].dtype)
        loss, _ = self.flow_loss(x0, eps=eps)
        self.log("train/loss", loss, prog_bar=True)
        self.log("train/lr", self.trainer.optimizers[0].param_groups[0]["lr"])
        return loss


class ReflowDataModule(L.LightningDataModule):
    def __init__(self, config: Config, bundles: Mapping[str, Bundle]):
        super().__init__()
        self.config = config

    def train_dataloader(self):
        pairs = PairDataset(pairs_dir(self.config))
        g = torch.Generator().manual_seed(self.config.seed)
        return DataLoader(pairs, batch_size=self.config.train.batch_size, shuffle=True, generator=g,
                          drop_last=len(pairs) > self.config.train.batch_size)


def reflow_config(run_dir: str | Path, registry, config_path: str | None = None, overrides: Sequence[str] = (),
                  out_dir: str | None = None, trust_run_code: bool = False) -> Config:
    """The config of ``flowcore reflow``: the given config, or the teacher's with ``stage: reflow``
    (and, for a conditional teacher, ``reflow.cfg`` = its ``sample.cfg``, ``sample.cfg`` = 1).

    ``trust_run_code``: register the plugins the teacher's config names (``ckpt.run_config``), so
    that the teacher loads; the given config's own plugins are the user's and always load.
    """
    run_dir = ckpt.run_directory(run_dir)
    if config_path:
        extra = [f"reflow.teacher={run_dir}", "stage=reflow", *overrides]
        if out_dir:
            extra.append(f"out_dir={out_dir}")
        config = load_config(config_path, extra, registry)
        ckpt.run_config(run_dir, registry, trust_run_code=trust_run_code)
        return config
    raw = ckpt.run_config(run_dir, registry, trust_run_code=trust_run_code).to_dict()
    raw.update(stage="reflow", out_dir=out_dir or f"{run_dir}_reflow")
    raw["reflow"]["teacher"] = str(run_dir)
    raw["distill"]["start_step"] = None  # a flow-stage phase: the student does not repeat it
    if any(m["role"] == "condition" for m in raw["modalities"].values()):
        # the pairs are made with the guidance the teacher is sampled with, and carry it: the
        # student is sampled unguided (docs/flow.md, "Conditional reflow")
        raw["reflow"]["cfg"] = raw["sample"]["cfg"]
        raw["sample"]["cfg"] = 1.0
    apply_overrides(raw, overrides, f"{run_dir}/config.yaml")
    return from_dict(raw, source=f"{run_dir}/config.yaml", registry=registry)

