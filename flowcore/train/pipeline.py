"""What the CLI runs: train (flow, autoencoder, reflow stages), sample, eval, reflow, invert.

Scale-out is Lightning's: ``train.strategy`` / ``devices`` / ``num_nodes`` go to the Trainer
as they are; nothing here knows about ranks beyond writing files on rank zero.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Any, Mapping, Sequence

import lightning as L
import torch

from flowcore.errors import ConfigError, DataError, UnknownNameError
from flowcore.io import write_text_atomic
from flowcore.modality import Tokens
from flowcore.train import checkpoint as ckpt
from flowcore.train.bundle import Bundle, build_bundles
from flowcore.train.callbacks import ExportWeights, MetricsCSV, ResumeLog, SampleEvery
from flowcore.train.config import Config
from flowcore.train.data import FlowDataModule, build_split
from flowcore.train.module import FlowModule
from flowcore.train.sampling import generate, invert as invert_tokens, read_given, tokens_of, write_samples


# ----------------------------------------------------------------------------- precision


def cpu_has_amx() -> bool:
    """True on CPUs with AMX bf16 tiles (Sapphire Rapids+), where bf16 matmuls beat fp32."""
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    return "amx_bf16" in flags


def resolve_precision(setting: str, accelerator: str) -> str:
    """``auto`` -> ``bf16-mixed`` on CUDA with bf16 or on an AMX CPU, else ``32-true``."""
    if setting != "auto":
        return setting
    on_gpu = accelerator in ("gpu", "cuda") or (accelerator == "auto" and torch.cuda.is_available())
    if on_gpu:
        return "bf16-mixed" if torch.cuda.is_available() and torch.cuda.is_bf16_supported() else "32-true"
    return "bf16-mixed" if cpu_has_amx() else "32-true"


# ----------------------------------------------------------------------------- train


def make_trainer(config: Config, out_dir: Path, callbacks: list[L.Callback]) -> tuple[L.Trainer, MetricsCSV]:
    from lightning.pytorch.callbacks import ModelCheckpoint

    tr = config.train
    metrics = MetricsCSV(out_dir / "logs")
    loggers: list[Any] = [metrics]
    try:
        import tensorboard  # noqa: F401  (optional: a TensorBoard log when it is installed)
        from lightning.pytorch.loggers import TensorBoardLogger

        loggers.append(TensorBoardLogger(str(out_dir / "logs"), name="tensorboard", version=""))
    except ImportError:
        pass
    last = ModelCheckpoint(dirpath=out_dir / "checkpoints", filename="step{step}", save_top_k=0, save_last=True,
                           every_n_train_steps=tr.checkpoint_every, save_on_train_epoch_end=False,
                           enable_version_counter=False)
    trainer = L.Trainer(
        max_steps=tr.steps, max_epochs=-1, accelerator=tr.accelerator, devices=tr.devices, strategy=tr.strategy,
        num_nodes=tr.num_nodes, precision=resolve_precision(tr.precision, tr.accelerator),
        gradient_clip_val=tr.grad_clip or None, log_every_n_steps=tr.log_every,
        enable_progress_bar=tr.progress_bar, enable_model_summary=False, logger=loggers,
        callbacks=[last, ResumeLog(metrics), *callbacks], plugins=[ckpt.AtomicCheckpointIO()],
        default_root_dir=str(out_dir), limit_val_batches=0, num_sanity_val_steps=0)
    return trainer, metrics


def train(config: Config, registry=None, resume: bool = True) -> L.LightningModule:
    """Train the stage ``config.stage`` into ``config.out_dir``; resume from its last checkpoint."""
    from flowcore.registry import get_registry

    registry = registry or get_registry()
    if config.stage == "reflow":
        prepare_reflow(config, registry)
    out_dir = Path(config.out_dir)
    if config.train.cpu_threads:
        torch.set_num_threads(config.train.cpu_threads)
    L.seed_everything(config.seed, workers=True, verbose=False)
    if config.stage == "autoencoder":
        from flowcore.train.autoencoder import AutoencoderModule

        module: L.LightningModule = AutoencoderModule(config.to_dict(), registry)
        bundles = build_bundles(config, registry)

        def export(m):
            ckpt.write_run_files(out_dir, config, m.export_state(), registry)
        callbacks = [ExportWeights(export, config.train.checkpoint_every, out_dir / ckpt.LAST)]
    else:
        module = ReflowModule(config.to_dict(), registry) if config.stage == "reflow" else \
            FlowModule(config.to_dict(), registry)
        if config.stage == "reflow" and config.reflow.init_from_teacher:
            teacher = ckpt.read_weights(Path(config.reflow.teacher) / ckpt.WEIGHTS, "net.")
            module.net.load_state_dict(teacher)
            if module.ema is not None:
                module.ema.net.load_state_dict(teacher)
        bundles = module.bundles

        def export(m):
            ckpt.write_run_files(out_dir, config, ckpt.flow_state(m), registry)
        callbacks = [ExportWeights(export, config.train.checkpoint_every, out_dir / ckpt.LAST)]
        if config.train.sample_every:
            callbacks.append(SampleEvery(lambda m, d: sample_files(m, d, config, registry), out_dir,
                                         config.train.sample_every))
    data = ReflowDataModule(config, bundles) if config.stage == "reflow" else FlowDataModule(config, bundles, registry)
    trainer, _ = make_trainer(config, out_dir, callbacks)
    last = out_dir / ckpt.LAST
    resume_from = str(last) if resume and last.is_file() else None
    if resume_from and trainer.is_global_zero:
        print(f"resuming from {last}", file=sys.stderr)
    trainer.fit(module, datamodule=data, ckpt_path=resume_from)
    return module


def sample_files(module: FlowModule, out_dir: Path, config: Config, registry) -> list[Path]:
    """Samples of every generated modality (conditions from held-out data) written to ``out_dir``."""
    make = config.names("generate") or config.names("any")
    conditions = config.names("condition")
    count = config.sample.count
    given = {}
    if conditions:
        items = held_out(config, module.bundles, "val", count, registry)
        count = len(items[conditions[0]])
        given = {n: tokens_of(module.bundles[n], items[n], module.device) for n in conditions}
    out = generate(module.sampler_net, module.bundles, make, given, count, steps=config.sample.steps,
                   solver=config.sample.solver, cfg=config.sample.cfg, seed=config.seed, shift=config.sample.shift,
                   device=module.device, solver_options=config.sample.solver_options,
                   unaided=config.sample.unaided)
    return [p for m in make for p in write_samples(module.bundles[m], module.bundles[m].samples(out[m]), out_dir / m)]


def held_out(config: Config, bundles: Mapping[str, Bundle], split: str, count: int, registry) -> dict[str, list]:
    """The first ``count`` items of a held-out split, as ``{modality: [samples]}``."""
    dataset = build_split(config, dict(bundles), split, registry)
    n = min(count, len(dataset))
    items = [dataset[i] for i in range(n)]
    return {name: [item[name] for item in items] for name in bundles}


# ----------------------------------------------------------------------------- sample


def device_for(name: str | None) -> torch.device:
    if name:
        return torch.device(name)
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def sample(run_dir: str | Path, make: Sequence[str], given: Mapping[str, str], out_dir: str | Path, *,
           count: int | None = None, steps: int | None = None, solver: str | None = None, cfg: float | None = None,
           seed: int = 0, shift: float | None = None, device: str | None = None, registry=None) -> list[Path]:
    """``flowcore sample``: generate ``make`` given files/values, write native files and previews."""
    dev = device_for(device)
    run = ckpt.load_run(run_dir, registry, dev)
    config = run.config
    for name in [*make, *given]:
        if name not in run.bundles:
            raise ConfigError(f"{run.directory}: the run has no modality {name!r}; it has {list(run.bundles)}")
    for name in make:
        if config.modalities[name].role == "condition":
            raise ConfigError(f"{run.directory}: {name!r} has role 'condition' in this run; it was never generated "
                              "(train it with role 'generate' or 'any')")
    for name in given:
        if config.modalities[name].role == "generate":
            raise ConfigError(f"{run.directory}: {name!r} has role 'generate' in this run; it was never given as a "
                              "condition (train it with role 'condition' or 'any')")
    overlap = set(make) & set(given)
    if overlap:
        raise ConfigError(f"modality {sorted(overlap)[0]!r} is both made (--make) and given (--given)")
    samples_given = {n: read_given(run.bundles[n], spec) for n, spec in given.items()}
    if count is None:
        count = max((len(s) for s in samples_given.values()), default=config.sample.count)
    for n, s in samples_given.items():
        if len(s) == 1:
            samples_given[n] = s * count
        elif len(s) != count:
            raise DataError(f"--given {n}: {len(s)} samples, but {count} are to be generated (give 1 or {count})")
    tokens = {n: tokens_of(run.bundles[n], s, dev) for n, s in samples_given.items()}
    solver = solver or config.sample.solver
    out = generate(run.net, run.bundles, list(make), tokens, count, steps=steps or config.sample.steps,
                   solver=solver, cfg=config.sample.cfg if cfg is None else cfg, seed=seed,
                   shift=config.sample.shift if shift is None else shift, device=dev,
                   solver_options=config.sample.options_for(solver))
    out_dir = Path(out_dir)
    return [p for m in make for p in write_samples(run.bundles[m], run.bundles[m].samples(out[m]), out_dir / m)]


# ----------------------------------------------------------------------------- eval


def evaluate(run_dir: str | Path, out: str | Path | None = None, *, split: str | None = None,
             count: int | None = None, steps: int | None = None, solver: str | None = None, seed: int = 0,
             device: str | None = None, registry=None) -> dict[str, Any]:
    """``flowcore eval``: each generated modality's metrics against held-out data, and the held-out loss.

    A ``generate`` modality is generated given the run's conditions; an ``any`` modality given
    all the others (any-to-any). Writes JSON to ``out`` (default ``<run>/eval.json``).
    """
    from flowcore.registry import get_registry

    registry = registry or get_registry()
    dev = device_for(device)
    run = ckpt.load_run(run_dir, registry, dev)
    config = run.config
    split = split or config.eval.split
    items = held_out(config, run.bundles, split, count or config.eval.count, registry)
    n = len(next(iter(items.values())))
    steps = steps or config.sample.steps
    solver = solver or config.sample.solver
    started = time.perf_counter()
    report: dict[str, Any] = {"run": str(run.directory), "split": split, "count": n, "steps": steps,
                              "solver": solver, "cfg": config.sample.cfg, "seed": seed, "metrics": {}}
    targets = config.names("generate") or []
    tasks = [(m, config.names("condition")) for m in targets]
    tasks += [(m, [o for o in config.names("condition", "any") if o != m]) for m in config.names("any")]
    batch = config.eval.batch_size
    for target, conditions in tasks:
        generated = []
        for start in range(0, n, batch):
            stop = min(n, start + batch)
            given = {c: tokens_of(run.bundles[c], items[c][start:stop], dev) for c in conditions}
            made = generate(run.net, run.bundles, [target], given, stop - start, steps=steps, solver=solver,
                            cfg=config.sample.cfg, seed=seed + start, shift=config.sample.shift, device=dev,
                            solver_options=config.sample.options_for(solver), unaided=config.sample.unaided)
            generated += run.bundles[target].samples(made[target])
        metrics = run.bundles[target].modality.metrics()
        key = target if not conditions else f"{target}|{','.join(conditions)}"
        report["metrics"][key] = {name: metric(items[target], generated) for name, metric in metrics.items()}
    report["flow_loss"] = held_out_loss(run.module, items, seed, dev)
    report["seconds"] = round(time.perf_counter() - started, 3)
    path = Path(out) if out else run.directory / "eval.json"
    write_text_atomic(path, json.dumps(report, indent=1) + "\n")
    report["path"] = str(path)
    return report


@torch.no_grad()
def held_out_loss(module: FlowModule, items: Mapping[str, list], seed: int, device: torch.device) -> float:
    """The training loss of the sampling weights on held-out items (fixed noise and times)."""
    torch.manual_seed(seed)
    net = module.net
    module.net = module.sampler_net
    try:
        x0 = {n: tokens_of(b, items[n], device) for n, b in module.bundles.items()}
        loss, _ = module.flow_loss(x0)
    finally:
        module.net = net
    return float(loss)


# ----------------------------------------------------------------------------- invert


def invert(run_dir: str | Path, modality: str, input_file: str | Path, out_dir: str | Path, *,
           given: Mapping[str, str] | None = None, steps: int | None = None, solver: str | None = None,
           shift: float | None = None, seed: int = 0, device: str | None = None, registry=None) -> dict[str, Any]:
    """``flowcore invert``: a native file -> its noise (safetensors) and the regeneration from it."""
    from safetensors.torch import save_file

    from flowcore.io import atomic_path

    dev = device_for(device)
    run = ckpt.load_run(run_dir, registry, dev)
    config = run.config
    if modality not in run.bundles:
        raise ConfigError(f"{run.directory}: the run has no modality {modality!r}; it has {list(run.bundles)}")
    bundle = run.bundles[modality]
    if bundle.modality.codec is None:
        raise ConfigError(f"modality {modality!r} has no codec: there is no file to invert")
    samples = read_given(bundle, str(input_file))
    data = {modality: tokens_of(bundle, samples, dev)}
    given_samples = {n: read_given(run.bundles[n], s) for n, s in (given or {}).items()}
    given_tokens = {n: tokens_of(run.bundles[n], s * len(samples) if len(s) == 1 else s, dev)
                    for n, s in given_samples.items()}
    eps, back, errors = invert_tokens(run.net, run.bundles, data, given_tokens, steps=steps or config.sample.steps,
                                      solver=solver or config.sample.solver,
                                      shift=config.sample.shift if shift is None else shift, seed=seed)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    noise_path = out_dir / f"{modality}_noise.safetensors"
    with atomic_path(noise_path) as tmp:
        save_file({modality: eps[modality].cpu().contiguous()}, str(tmp))
    files = write_samples(bundle, bundle.samples(back[modality]), out_dir / "reconstruction")
    report = {"modality": modality, "input": str(input_file), "count": len(samples), "rms_error": errors[modality],
              "noise": str(noise_path), "reconstruction": [str(p) for p in files]}
    write_text_atomic(out_dir / "invert.json", json.dumps(report, indent=1) + "\n")
    return report


# ----------------------------------------------------------------------------- reflow


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


def prepare_reflow(config: Config, registry) -> Path:
    """Generate the teacher's pairs into ``<out>/pairs`` unless they are there (and were made alike).

    Unconditional run: (noise, ODE(noise)). With ``condition`` modalities (InstaFlow's recipe
    for text-to-image): the conditions of the pairs are the training split's, in a seeded
    shuffled order (cycled when there are more pairs than items), and each sample is the
    teacher's ODE solution from the noise given them, guided with ``reflow_guidance(config)``
    as ``flowcore sample`` guides; the condition tokens are stored with the pairs.
    """
    from flowcore.flow.reflow import MANIFEST, generate_pairs, prior_noise
    from flowcore.train.sampling import make_velocity

    out = pairs_dir(config)
    conditions = config.names("condition")
    settings = {"count": config.reflow.pairs, "steps": config.reflow.steps, "solver": config.reflow.solver,
                "shift": config.sample.shift, "seed": config.seed, "conditions": sorted(conditions),
                "cfg": reflow_guidance(config)}
    if (out / MANIFEST).is_file():
        check_pairs(out, settings)
        return out
    rf = config.reflow
    teacher = ckpt.load_run(rf.teacher, registry, device_for(None))
    check_teacher_roles(config, teacher.config)
    make = config.names("generate", "any")
    net, bundles = teacher.net, teacher.bundles
    device = next(net.parameters()).device
    layouts = {m: bundles[m].layout(1) for m in make}
    for m in make:  # the pairs share one layout: a size list (samples of different sizes) has none
        several = bundles[m].layout(8)
        if several.values.shape[1:] != layouts[m].values.shape[1:] or not bool((several.mask == layouts[m].mask).all()):
            raise ConfigError(f"{config.source}: modalities.{m}.size: {config.modalities[m].size!r} lays out samples of "
                              f"different sizes, but reflow pairs share one layout; give one size for the reflow stage")
    shapes = {m: tuple(layouts[m].values.shape[1:]) for m in make}
    noise = prior_noise(shapes, {m: bundles[m].path for m in make}, {m: layouts[m].mask[0].cpu() for m in make})

    def noise_on_device(b: int, g: torch.Generator) -> dict[str, torch.Tensor]:
        return {m: v.to(device) for m, v in noise(b, g).items()}

    def field(given, count: int, generator: torch.Generator):
        layouts = {m: bundles[m].layout(count, device) for m in make}
        return make_velocity(net, bundles, layouts, given, generator, 1.0 if not given else settings["cfg"])

    try:
        generate_pairs(field, noise_on_device, rf.pairs, out, steps=rf.steps, solver=rf.solver,
                       shift=config.sample.shift, paths={m: bundles[m].path for m in make}, seed=config.seed,
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
    from flowcore.flow.reflow import MANIFEST

    try:
        manifest = json.loads((out / MANIFEST).read_text())
    except (OSError, ValueError) as exc:
        raise DataError(f"{out / MANIFEST}: cannot read the pair manifest ({exc}); delete {out} to make new pairs") from exc
    made = {"conditions": [], "cfg": None, **manifest}
    for key, value in settings.items():
        if made.get(key) != value:
            raise ConfigError(f"{out}: these pairs were made with {PAIR_SETTINGS[key]} = {made.get(key)!r}, the "
                              f"config asks for {value!r}; delete {out} (or reflow into another --out) to make new ones")


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
        from torch.utils.data import DataLoader

        from flowcore.flow.reflow import PairDataset

        pairs = PairDataset(pairs_dir(self.config))
        g = torch.Generator().manual_seed(self.config.seed)
        return DataLoader(pairs, batch_size=self.config.train.batch_size, shuffle=True, generator=g,
                          drop_last=len(pairs) > self.config.train.batch_size)


def reflow_config(run_dir: str | Path, registry, config_path: str | None = None, overrides: Sequence[str] = (),
                  out_dir: str | None = None) -> Config:
    """The config of ``flowcore reflow``: the given config, or the teacher's with ``stage: reflow``
    (and, for a conditional teacher, ``reflow.cfg`` = its ``sample.cfg``, ``sample.cfg`` = 1)."""
    from flowcore.train.config import apply_overrides, from_dict, load_config

    run_dir = ckpt.run_directory(run_dir)
    if config_path:
        extra = [f"reflow.teacher={run_dir}", "stage=reflow", *overrides]
        if out_dir:
            extra.append(f"out_dir={out_dir}")
        return load_config(config_path, extra, registry)
    raw = ckpt.run_config(run_dir, registry).to_dict()
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

