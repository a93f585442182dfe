"""What the CLI runs: train (flow, autoencoder, reflow stages), sample, eval, invert.

Training goes through Lightning; sample, eval and invert go through ``flowcore.load``'s
:class:`~flowcore.train.inference.FlowPipeline` and never build the training module.
Scale-out is Lightning's: ``train.strategy`` / ``devices`` / ``num_nodes`` go to the Trainer
as they are (``fsdp`` as flowcore.train.sharding's FSDP2 strategy); nothing here knows about
ranks beyond writing files on rank zero (after gathering sharded weights on every rank).
"""

from __future__ import annotations

import sys
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Sequence

import lightning as L
import torch
from safetensors.torch import save_file

from flowcore import kernels
from flowcore.errors import ConfigError
from flowcore.io import atomic_path, dumps_json, finite_or_none, remove_stale_temps, write_text_atomic
from flowcore.modality import Modality
from flowcore.registry import get_registry
from flowcore.train import checkpoint as ckpt
from flowcore.train.autoencoder import AutoencoderModule
from flowcore.train.bundle import Bundle, build_bundles
from flowcore.train.callbacks import (
    ExportWeights,
    LastCheckpoint,
    MetricsCSV,
    RandomState,
    ResumeLog,
    SampleEvery,
    StopNonFinite,
)
from flowcore.train.config import Config, check_direction, direction_key, epoch_steps, parse_direction
from flowcore.train.data import FlowDataModule, build_split
from flowcore.train.inference import FlowPipeline, load
from flowcore.train.module import FlowModule
from flowcore.train.reflow import ReflowDataModule, ReflowModule, prepare_reflow
from flowcore.train.sampling import SamplingOptions, generate, tokens_of, write_samples
from flowcore.train.sharding import FullyShardedDataParallel

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


def run_steps(config: Config, data: L.LightningDataModule) -> int:
    """``train.steps``, or the steps ``train.epochs`` passes over the train split take (``epoch_steps``)."""
    tr = config.train
    if tr.steps is not None:
        return tr.steps
    data.setup("fit")
    loader = data.train_dataloader()
    batches = len(loader) if tr.batch_tokens is not None else None
    return epoch_steps(len(loader.dataset), tr.epochs, tr.batch_size, tr.min_steps, batches)


def make_trainer(config: Config, out_dir: Path, callbacks: list[L.Callback], steps: int,
                 ) -> tuple[L.Trainer, MetricsCSV]:
    """Lightning's Trainer for ``steps`` optimizer steps (the LR schedule spans them too); it stops on a
    non-finite loss (``StopNonFinite``) and its checkpoints hold the random states (``RandomState``)."""
    tr = config.train
    metrics = MetricsCSV(out_dir / "logs")
    loggers: list[Any] = [metrics]
    try:
        import tensorboard  # noqa: F401  (lazy and optional: a TensorBoard log when it is installed)
        from lightning.pytorch.loggers import TensorBoardLogger

        loggers.append(TensorBoardLogger(str(out_dir / "logs"), name="tensorboard", version=""))
    except ImportError:
        pass
    last = LastCheckpoint(dirpath=out_dir / "checkpoints", filename="step{step}", save_top_k=0, save_last=True,
                           every_n_train_steps=tr.checkpoint_every, save_on_train_epoch_end=False,
                           enable_version_counter=False)
    trainer = L.Trainer(
        max_steps=steps, max_epochs=-1, accelerator=tr.accelerator, devices=tr.devices,
        strategy=FullyShardedDataParallel() if tr.strategy == "fsdp" else tr.strategy,
        num_nodes=tr.num_nodes, precision=resolve_precision(tr.precision, tr.accelerator),
        gradient_clip_val=tr.grad_clip or None, log_every_n_steps=tr.log_every,
        enable_progress_bar=tr.progress_bar, enable_model_summary=False, logger=loggers,
        callbacks=[last, ResumeLog(metrics), StopNonFinite(tr.skip_nonfinite), RandomState(), *callbacks],
        plugins=[ckpt.AtomicCheckpointIO()],
        default_root_dir=str(out_dir), limit_val_batches=0, num_sanity_val_steps=0)
    return trainer, metrics


def train(config: Config, registry=None, resume: bool = True) -> L.LightningModule:
    """Train the stage ``config.stage`` into ``config.out_dir``; resume from its last checkpoint."""
    registry = registry or get_registry()
    if config.stage == "reflow":
        prepare_reflow(config, registry)
    out_dir = Path(config.out_dir)
    if config.train.cpu_threads:
        torch.set_num_threads(config.train.cpu_threads)
    if config.train.kernels != "auto":  # auto leaves FLOWCORE_KERNELS's (or a set_backend) choice
        kernels.set_backend(config.train.kernels)
    L.seed_everything(config.seed, workers=True, verbose=False)
    if config.stage == "autoencoder":
        module: L.LightningModule = AutoencoderModule(config, registry)
        bundles = build_bundles(config, registry)

        def export(m):
            if m.trainer.is_global_zero:
                ckpt.write_run_files(out_dir, config, m.export_state(), registry)
        callbacks = [ExportWeights(export, config.train.checkpoint_every, out_dir / ckpt.LAST)]
    else:
        module = ReflowModule(config, registry) if config.stage == "reflow" else FlowModule(config, registry)
        if config.stage == "reflow" and config.reflow.init_from_teacher:
            teacher = ckpt.read_weights(Path(config.reflow.teacher) / ckpt.WEIGHTS, "net.")
            module.net.load_state_dict(teacher)
            if module.ema is not None:
                module.ema.net.load_state_dict(teacher)
        last = out_dir / ckpt.LAST
        if config.train.init_from and not (resume and last.is_file()):  # a resume restores its own weights
            warm_start(module, Path(config.train.init_from))
        bundles = module.bundles

        def export(m):
            state = ckpt.flow_state(m)  # every process under fsdp: gathering the shards is a collective
            if m.trainer.is_global_zero:
                ckpt.write_run_files(out_dir, config, state, registry)
        callbacks = [ExportWeights(export, config.train.checkpoint_every, out_dir / ckpt.LAST)]
        if previews_on(config, bundles):
            callbacks.append(SampleEvery(lambda m, d: sample_files(m, d, config, registry), out_dir,
                                         config.train.sample_every, least=config.train.checkpoint_every))
    data = ReflowDataModule(config, bundles) if config.stage == "reflow" else FlowDataModule(config, bundles, registry)
    trainer, _ = make_trainer(config, out_dir, callbacks, run_steps(config, data))
    if trainer.is_global_zero:  # what writes killed before their rename left behind
        for folder in (out_dir, out_dir / "checkpoints", out_dir / "logs", out_dir / "latents"):
            remove_stale_temps(folder)
    last = out_dir / ckpt.LAST
    resume_from = str(last) if resume and last.exists() else None  # a folder of shards under fsdp
    if resume_from and last.is_file():
        ckpt.check_resumable(last, module)  # one line on what does not fit, not Lightning's dump of it
        if trainer.is_global_zero:
            print(f"resuming from {last}", file=sys.stderr)
    with warnings.catch_warnings():
        if isinstance(data, FlowDataModule) and trainer.world_size == 1:  # its sampler resumes mid-epoch
            warnings.filterwarnings("ignore", "You're resuming from a checkpoint that ended before the epoch ended")
        trainer.fit(module, datamodule=data, ckpt_path=resume_from)
    return module


def warm_start(module: FlowModule, run: Path) -> list[str]:
    """Load the network weights of the finished run ``run`` into ``module``'s network and its EMA.

    The network may have weights the run lacks (they keep their initialisation; returned, sorted)
    but no others, and every shared tensor must have the same shape: anything else is a
    ConfigError naming ``train.init_from``.
    """
    path = run / ckpt.WEIGHTS
    if not path.is_file():
        raise ConfigError(f"train.init_from: {path} not found (give the folder of a finished run)")
    weights = ckpt.read_weights(path, "net.")
    own = module.net.state_dict()
    extra = sorted(set(weights) - set(own))
    if not weights or extra:
        what = "it has no network weights" if not weights else "weights this network lacks: " + ", ".join(extra[:5])
        raise ConfigError(f"train.init_from: {run}'s network is not this run's (model section): {what}")
    other = [f"{k} {tuple(v.shape)} vs {tuple(own[k].shape)}" for k, v in weights.items() if v.shape != own[k].shape]
    if other:
        raise ConfigError(f"train.init_from: {run}'s network has other shapes than this run's (model section): "
                          + "; ".join(other[:3]))
    nets = [module.net] + ([module.ema.net] if module.ema is not None else [])
    for net in nets:
        net.load_state_dict(weights, strict=False)
    return sorted(set(own) - set(weights))


def previews_on(config: Config, bundles: Mapping[str, Bundle]) -> bool:
    """Training-time samples: ``train.sample_every`` > 0, or left unset and a made modality draws a preview."""
    every = config.train.sample_every
    if every is not None:
        return every > 0
    made = config.names("generate") or config.names("any")
    return any(type(bundles[m].modality).preview is not Modality.preview for m in made)


def sample_files(module: FlowModule, out_dir: Path, config: Config, registry) -> list[Path]:
    """Training-time samples of every generated modality, written to ``out_dir``.

    They are drawn as ``flowcore sample`` draws them (the run's sampling options, seed ``config.seed``)
    from the EMA network; a run with conditions takes them from held-out (val) items spread over the split.
    """
    net = module.whole_sampler_net()  # every process under fsdp, which then samples on rank zero alone
    if not module.trainer.is_global_zero:
        return []
    make = config.names("generate") or config.names("any")
    conditions = config.names("condition")
    count = config.sample.count
    given = {}
    if conditions:
        items = held_out(config, module.bundles, "val", count, registry, spread=True)
        count = len(items[conditions[0]])
        given = {n: tokens_of(module.bundles[n], items[n], module.device) for n in conditions}
    options = SamplingOptions.from_config(config, seed=config.seed)
    out = generate(net, module.bundles, make, given, count, options, module.device)
    return [p for m in make for p in write_samples(module.bundles[m], module.bundles[m].samples(out[m]), out_dir / m)]


def held_out(config: Config, bundles: Mapping[str, Bundle], split: str, count: int, registry,
             spread: bool = False) -> dict[str, list]:
    """The first ``count`` items of a held-out split (``spread``: ``count`` items evenly spaced over
    it, so a split stored class by class still shows every class), as ``{modality: [samples]}``."""
    dataset = build_split(config, dict(bundles), split, registry)
    n = min(count, len(dataset))
    index = torch.linspace(0, len(dataset) - 1, n).round().long().tolist() if spread else range(n)
    items = [dataset[i] for i in index]
    return {name: [item[name] for item in items] for name in bundles}


# ----------------------------------------------------------------------------- sample


@dataclass
class SampleReport:
    """What ``flowcore sample`` wrote: per modality, the sample files and the preview (if any)."""

    out_dir: Path
    count: int
    files: dict[str, list[Path]]
    previews: dict[str, Path | None]

    @property
    def paths(self) -> list[Path]:
        """Every file written, previews included."""
        return [p for m, files in self.files.items()
                for p in [*files, *([self.previews[m]] if self.previews[m] else [])]]

    def summary(self) -> str:
        lines = [f"{self.count} samples in {self.out_dir}"]
        for m, files in self.files.items():
            preview = f"; preview {self.previews[m]}" if self.previews.get(m) else ""
            lines.append(f"  {m}: {len(files)} file{'s' if len(files) != 1 else ''} in {self.out_dir / m}{preview}")
        return "\n".join(lines)


def sample(run_dir: str | Path, make: Sequence[str], given: Mapping[str, str], out_dir: str | Path, *,
           count: int | None = None, device: str | None = None, registry=None, progress: bool = False,
           via: Sequence[str] = (), **overrides) -> SampleReport:
    """``flowcore sample``: generate ``make`` given files/values, write native files and previews.

    ``via``: modalities made first and then given (:meth:`FlowPipeline.generate`); their samples
    are written too. ``overrides``: :class:`SamplingOptions` fields (steps, solver, cfg, shift,
    seed, …); None keeps the run's ``sample`` section.
    """
    pipe = load(run_dir, device=device, registry=registry)
    out = pipe.generate(make, given, count, via=via, batch_size=pipe.config.eval.batch_size, progress=progress,
                        **overrides)
    out_dir = Path(out_dir)
    files, previews = {}, {}
    for m, samples in out.items():
        written = write_samples(pipe.bundles[m], samples, out_dir / m)
        previews[m] = next((p for p in written if p.name.endswith("_preview.png")), None)
        files[m] = [p for p in written if p != previews[m]]
    return SampleReport(out_dir, len(next(iter(out.values()))), files, previews)


# ----------------------------------------------------------------------------- eval


def evaluate(run_dir: str | Path, out: str | Path | None = None, *, split: str | None = None,
             count: int | None = None, device: str | None = None, registry=None, progress: bool = False,
             directions: Sequence[str] | None = None, via: Sequence[str] = (), **overrides) -> dict[str, Any]:
    """``flowcore eval``: each direction's metrics against held-out data, and the held-out loss.

    The directions are ``directions`` or ``eval.directions`` ("made|given"), by default each
    ``generate`` modality given the run's conditions and each ``any`` modality given all the
    others. When the run has a class modality (``eval.class_by``), each made modality that
    classifies (:meth:`~flowcore.modality.Modality.classify`) gets ``class_accuracy`` against the
    class of the item it was made for, a joint direction gets ``class_agreement`` (its made
    samples' classes all agree), and ``ceilings`` holds what the same classifiers score on the
    real held-out samples. ``via``: in each direction that neither makes nor gives them, these
    modalities are made first and then given (:meth:`FlowPipeline.generate`); the report lists
    them under ``via``. ``overrides``: :class:`SamplingOptions` fields (``seed`` default 0;
    batch k is drawn with seed + its first index). Writes JSON to ``out`` (default
    ``<run>/eval.json``). The ``count`` held-out items are spread evenly over the split. A metric or
    loss that is NaN or infinite is None (null in the JSON).
    """
    registry = registry or get_registry()
    pipe = load(run_dir, device=device, registry=registry)
    config = pipe.config
    tasks = eval_tasks(config, directions)
    options = pipe.sampling_options(**overrides)
    split = split or config.eval.split
    # spread over the split: a split stored class by class (MNIST-5k's) would otherwise give its first classes only
    items = held_out(config, pipe.bundles, split, count or config.eval.count, registry, spread=True)
    n = len(next(iter(items.values())))
    started = time.perf_counter()
    report: dict[str, Any] = {"run": str(pipe.directory), "split": split, "count": n, "steps": options.steps,
                              "solver": options.solver, "cfg": options.cfg, "seed": options.seed, "metrics": {}}
    if via:
        report["via"] = list(via)
    scorer = ClassScorer(pipe, items, config.eval.class_by)
    for made, given in tasks:
        generated = pipe.generate(made, {c: items[c] for c in given}, n, batch_size=config.eval.batch_size,
                                  via=[v for v in via if v not in made + given], progress=progress, **overrides)
        scores = {m: scorer.scores(m, generated[m], conditioned=bool(given)) for m in made}
        key = direction_key(made, given)
        report["metrics"][key] = scores[made[0]] if len(made) == 1 else scores
        through = [v for v in via if v not in made + given]  # a chained direction: its last pass's weights
        if overrides.get("cfg") is None and pipe.direction_cfg(made, given + through) is not None:
            report.setdefault("cfg_by_direction", {})[key] = pipe.direction_cfg(made, given + through)
        agreement = scorer.agreement({m: generated[m] for m in made})
        if agreement is not None:
            report["metrics"][key]["class_agreement"] = agreement
    if scorer.ceilings(tasks):
        report["ceilings"] = scorer.ceilings(tasks)
    report["flow_loss"] = pipe.loss(items, options.seed)
    report["seconds"] = round(time.perf_counter() - started, 3)
    report = finite_or_none(report)
    path = Path(out) if out else pipe.directory / "eval.json"
    write_text_atomic(path, dumps_json(report, indent=1) + "\n")
    report["path"] = str(path)
    return report


class ClassScorer:
    """Each made modality's metrics, plus class accuracy / agreement under the modalities' classifiers."""

    def __init__(self, pipe: FlowPipeline, items: Mapping[str, list], class_by: str):
        self.pipe, self.items = pipe, items
        self.classes = torch.as_tensor(items[class_by]).long() if class_by in items else None
        self.class_by = class_by
        self.real: dict[str, torch.Tensor | None] = {}

    def classify(self, name: str, samples: Sequence[Any]) -> torch.Tensor | None:
        predicted = self.pipe.bundles[name].modality.classify(samples)
        return None if predicted is None else torch.as_tensor(list(predicted)).long()

    def scores(self, name: str, generated: Sequence[Any], conditioned: bool = True) -> dict[str, Any]:
        """The modality's metrics of ``generated``; and, made given something (``conditioned``),
        their class accuracy against the items' classes."""
        metrics = self.pipe.bundles[name].modality.metrics()
        out = {metric_name: metric(self.items[name], generated) for metric_name, metric in metrics.items()}
        if conditioned and self.classes is not None and name != self.class_by:
            predicted = self.classify(name, generated)
            if predicted is not None:
                out["class_accuracy"] = float((predicted == self.classes).float().mean())
        return out

    def agreement(self, samples: Mapping[str, Sequence[Any]]) -> float | None:
        """Fraction of items whose samples of every classifying modality get one class (None: under two)."""
        predicted = [p for p in (self.classify(n, s) for n, s in samples.items()) if p is not None]
        if len(predicted) < 2:
            return None
        return float(torch.stack([p == predicted[0] for p in predicted[1:]]).all(0).float().mean())

    def _real(self, name: str) -> torch.Tensor | None:
        if name not in self.real:
            self.real[name] = self.classify(name, self.items[name])
        return self.real[name]

    def ceilings(self, tasks: Sequence[tuple[list[str], list[str]]]) -> dict[str, float]:
        """What the classifiers score on the real held-out samples: each made modality's class accuracy,
        and each joint direction's agreement ('image,audio')."""
        out: dict[str, float] = {}
        for made, given in tasks:
            for name in made if given else []:
                real = self._real(name) if name != self.class_by else None
                if real is not None and self.classes is not None:
                    out[f"{name}.class_accuracy"] = float((real == self.classes).float().mean())
            agreement = self.agreement({m: self.items[m] for m in made}) if len(made) > 1 else None
            if agreement is not None:
                out[f"{','.join(made)}.class_agreement"] = agreement
        return out


def eval_tasks(config: Config, directions: Sequence[str] | None = None) -> list[tuple[list[str], list[str]]]:
    """(made, given) of each direction ``eval`` measures: ``directions``, else ``eval.directions``, else
    each generated modality given the run's conditions and each 'any' modality given all the others."""
    chosen = directions if directions is not None else config.eval.directions
    if chosen is not None:
        for i, text in enumerate(chosen):
            check_direction(config, text, f"direction {i + 1}")
        return [parse_direction(text) for text in chosen]
    tasks = [([m], config.names("condition")) for m in config.names("generate")]
    tasks += [([m], [o for o in config.names("condition", "any") if o != m]) for m in config.names("any")]
    return tasks


# ----------------------------------------------------------------------------- invert


def invert(run_dir: str | Path, modality: str, input_file: str | Path, out_dir: str | Path, *,
           given: Mapping[str, str] | None = None, device: str | None = None, registry=None,
           **overrides) -> dict[str, Any]:
    """``flowcore invert``: a native file -> its noise (safetensors) and the regeneration from it."""
    pipe = load(run_dir, device=device, registry=registry)
    if modality in pipe.bundles and pipe.bundles[modality].modality.codec is None:
        raise ConfigError(f"modality {modality!r} has no codec: there is no file to invert")
    result = pipe.invert(modality, str(input_file), given, **overrides)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    noise_path = out_dir / f"{modality}_noise.safetensors"
    with atomic_path(noise_path) as tmp:
        save_file({modality: result.noise.cpu().contiguous()}, str(tmp))
    files = write_samples(pipe.bundles[modality], result.reconstruction, out_dir / "reconstruction")
    report = {"modality": modality, "input": str(input_file), "count": len(result.reconstruction),
              "rms_error": finite_or_none(result.rms_error), "noise": str(noise_path),
              "reconstruction": [str(p) for p in files]}
    write_text_atomic(out_dir / "invert.json", dumps_json(report, indent=1) + "\n")
    return report
