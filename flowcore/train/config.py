"""Run configuration: YAML -> one validated pydantic schema, once, at the edge.

Every value is checked before torch is imported: the core sections by the models below, the
``model.transformer`` section by :class:`flowcore.nn.config.TransformerSection`, and, given a
registry, each modality's options and ``data.options`` by the models the plugin declares on
its specs. A bad value or an unknown key is one :class:`~flowcore.errors.ConfigError` line
naming the dotted key, the file (or ``--set`` for an override) and what was expected
(flowcore/schema.py). docs/config.md is the reference for every key below.
"""

from __future__ import annotations

import importlib.util
import math
from pathlib import Path
from typing import Annotated, Any, Literal, Mapping, Sequence

import yaml
from pydantic import BaseModel, BeforeValidator, Field, PrivateAttr, ValidationInfo, field_validator, model_validator

from flowcore.errors import ConfigError
from flowcore.flow.names import SOLVER_NAMES
from flowcore.nn.config import TransformerSection
from flowcore.schema import Number, Options, validate
from flowcore.spec import checked_options

Role = Literal["generate", "condition", "any"]
CompileMode = Literal["default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs"]
#: ``train.compile``: off, on in torch's default mode, a mode, or ``auto`` (default mode on CUDA, off elsewhere)
CompileSetting = bool | Literal["auto"] | CompileMode
Solver = Literal[SOLVER_NAMES]
#: Lightning's precision names; YAML's ``precision: 32`` is the int 32, taken as "32"
Precision = Annotated[Literal["auto", "32-true", "32", "16-mixed", "16", "bf16-mixed", "bf16", "bf16-true",
                              "16-true", "64-true", "64"],
                      BeforeValidator(lambda v: str(v) if type(v) is int else v)]
Accelerator = Literal["auto", "cpu", "gpu", "cuda", "mps", "tpu"]
#: a probability that leaves some of the rest: in [0, 1)
Fraction = Annotated[Number, Field(ge=0, lt=1)]
Weight = Annotated[Number, Field(ge=0)]
#: keys of a ``modalities.<name>`` section that the core reads; the rest go to the modality's factory
MODALITY_KEYS = ("role", "dropout", "size", "loss_weight", "autoencoder", "p_clean", "p_absent")
#: the training budget when a config gives neither ``train.steps`` nor ``train.epochs``
DEFAULT_STEPS = 2000


def epoch_steps(items: int, epochs: float, batch_size: int, min_steps: int = 1, batches: int | None = None) -> int:
    """Optimizer steps of ``epochs`` passes over ``items`` items: max(min_steps, ceil(items x epochs /
    batch_size)); with length batching, ``batches`` per pass: max(min_steps, ceil(batches x epochs))."""
    if items < 1 or not epochs > 0 or batch_size < 1 or min_steps < 1:
        raise ConfigError(f"an epoch budget needs items >= 1, epochs > 0, batch_size >= 1 and min_steps >= 1; got "
                          f"items={items}, epochs={epochs}, batch_size={batch_size}, min_steps={min_steps}")
    passes = batches * epochs if batches is not None else items * epochs / batch_size
    return max(min_steps, math.ceil(passes))


class ModalityConfig(Options):
    """How one modality takes part in the run (``modalities.<name>``)."""

    role: Role = "generate"
    dropout: Fraction = 0.0
    #: what generation lays out (tokenizer.layout): a length, a shape such as [32, 32], lengths taken in
    #: turn, or a duration in seconds (audio); the modality's tokenizer reads it
    size: int | Number | list[int | Number] | None = None
    loss_weight: Number = Field(1.0, ge=0)
    autoencoder: str | None = None
    #: role ``any``: this modality's own probabilities of being clean / absent in a training sample
    #: (default: ``flow.p_clean`` / ``flow.p_absent``)
    p_clean: Fraction | None = None
    p_absent: Fraction | None = None
    #: the factory's keyword arguments: the section's other keys, checked by the plugin's options model
    options: dict[str, Any] = Field(default_factory=dict)


    @field_validator("size")
    @classmethod
    def _sizes(cls, size: float | list[float] | None) -> float | list[float] | None:
        if size is not None and (size == [] or not min([size] if not isinstance(size, list) else size) > 0):
            raise ValueError(f"must be a size > 0 or a list of them (a shape such as [32, 32], lengths taken in turn, "
                             f"seconds), got {size!r}")
        return size


class PairedSource(Options):
    """One dataset of ``data.paired``: its name and its factory's keyword arguments."""

    dataset: str
    options: dict[str, Any] = Field(default_factory=dict)


class DataConfig(Options):
    dataset: str | None = None
    #: the dataset factory's keyword arguments, checked by the dataset's options model
    options: dict[str, Any] = Field(default_factory=dict)
    path: str | None = None
    #: datasets of different plugins joined into one: each item of the first is paired with a random
    #: item of every other that has the same ``pair_by`` sample (e.g. an MNIST digit with a spoken one)
    paired: list[PairedSource] = Field(default_factory=list)
    pair_by: str = "label"
    #: train items draw a new partner of the same ``pair_by`` sample each time they are read (more
    #: distinct pairs); held-out splits keep the one seeded draw
    fresh_pairs: bool = False
    modality: str | None = None
    val_fraction: Fraction = 0.05
    test_fraction: Fraction = 0.05
    num_workers: int = Field(0, ge=0)
    limit: int | None = Field(None, ge=1)
    cache_latents: bool = False


class ModelConfig(Options):
    #: "mlp", "transformer", or a plugin network as "package.module:attr": a factory called
    #: as ``factory(shapes, **options)`` with shapes {modality: (L, C)} (fixed token counts)
    network: str = "mlp"
    #: keyword arguments of a plugin network's factory
    options: dict[str, Any] = Field(default_factory=dict)
    hidden: int = Field(256, ge=1)
    depth: int = Field(3, ge=1)
    #: sinusoids come in (cos, sin) pairs
    time_dim: int = Field(64, ge=2, multiple_of=2)
    #: ``network: mlp``: t is multiplied by it before the sinusoids (1000: Flux's; 1: smooth in t, for meanflow)
    time_scale: Number = Field(1000.0, gt=0)
    #: ``network: transformer``'s settings, checked by flowcore.nn.config.TransformerSection
    transformer: dict[str, Any] = Field(default_factory=dict)
    #: what the network outputs: the velocity, or ``x``, a clean estimate turned into the velocity
    #: (z_t - x) / t (flowcore.train.networks.velocity_from_clean)
    prediction: Literal["velocity", "x"] = "velocity"

    @field_validator("network")
    @classmethod
    def _network_name(cls, network: str) -> str:
        if network not in ("mlp", "transformer") and (
                ":" not in network or network.startswith(":") or network.endswith(":")):
            raise ValueError(f"must be 'mlp', 'transformer' or a plugin network 'package.module:attr', "
                             f"got {network!r}")
        return network


class LogitNormalOptions(Options):
    """``flow.timestep_options`` of ``logit_normal``: t = sigmoid(n), n ~ N(m, s^2)."""

    m: Number = 0.0
    s: Number = Field(1.0, gt=0)
    #: the share of draws taken from U(0, 1) instead, so the ends of the path are trained too
    uniform: Number = Field(0.0, ge=0, le=1)


class ModeOptions(Options):
    """``flow.timestep_options`` of ``mode``: beyond [-1, 1 / (pi / 2 - 1)] its map leaves [0, 1]."""

    s: Number = Field(1.29, ge=-1, le=1 / (math.pi / 2 - 1))


class GridOptions(Options):
    """``flow.timestep_options`` of ``grid``: the k points of a k-step sampling grid with its shift."""

    #: a whole float too: configs saved before this model kept k as a number (4.0)
    k: Annotated[int, BeforeValidator(lambda v: int(v) if isinstance(v, float) and v.is_integer() else v)] = Field(ge=1)
    shift: Number = Field(1.0, gt=0)


#: the options model of each timestep sampler (flowcore.flow.timesteps.SAMPLERS); uniform takes none
TIMESTEP_OPTIONS: dict[str, type[Options]] = {"uniform": Options, "logit_normal": LogitNormalOptions,
                                              "mode": ModeOptions, "grid": GridOptions}


class Dopri5Options(Options):
    """``sample.solver_options`` of ``dopri5``: the error tolerances and a cap on its steps."""

    rtol: Number = Field(1e-5, gt=0)
    atol: Number = Field(1e-5, gt=0)
    max_steps: int = Field(10_000, ge=1)


class EulerSDEOptions(Options):
    """``sample.solver_options`` of ``euler_sde``: 0 churn is the Euler ODE; noise_scale < 1 a lower temperature."""

    churn: Number = Field(1.0, ge=0)
    noise_scale: Number = Field(1.0, ge=0)


#: the options model of each solver (flowcore.flow.solvers.SOLVERS); the others take none
SOLVER_OPTIONS: dict[str, type[Options]] = {"dopri5": Dopri5Options, "euler_sde": EulerSDEOptions}


class MeanFlowOptions(Options):
    """``flow.meanflow``: the average-velocity objective's (r, t) draw, guidance and loss weight."""

    #: fraction of samples with r = t (plain flow matching); the rest draw an interval r < t
    p_equal: Number = Field(0.75, ge=0, le=1)
    #: how the intervals are drawn: two draws of ``flow.timesteps``, sorted (the paper's), or ``gap``:
    #: length h uniform on (0, 1), t uniform on [h, 1] (long intervals, the one-step map, drawn often)
    #: or ``split``: t and r from logit-normals of means ``split_means``, sorted (Decoupled MeanFlow)
    interval: Literal["sorted", "gap", "split"] = "sorted"
    #: ``interval: split``: the logit-normal means of t (noise side) and r (data side), unit scale
    split_means: list[Number] = Field(default_factory=lambda: [0.4, -1.2], min_length=2, max_length=2)
    #: guidance scale w inside the target, on samples that keep their condition (1: none)
    cfg: Number = Field(1.0, ge=0)
    #: the conditional network's share kappa of the target (effective scale cfg / (1 - kappa))
    cfg_kappa: Number = Field(0.0, ge=0, lt=1)
    #: adaptive weight 1 / (l + norm_eps)^norm_p of each sample's loss l (0: plain squared error)
    norm_p: Number = Field(1.0, ge=0)
    norm_eps: Number = Field(1e-3, gt=0)
    #: a trained flow run whose velocity (guided at ``cfg``) replaces the one-sample velocity eps - x0
    #: in the target: the same identity with a far less noisy v (a distillation of that run)
    teacher: str | None = None
    #: the identity the target comes from: MeanFlow's (``eulerian``: d/dt u along the flow, a JVP in z and t)
    #: or its ``lagrangian`` form (the map's end point follows the teacher's velocity: a JVP in r; needs ``teacher``)
    identity: Literal["eulerian", "lagrangian"] = "eulerian"
    #: the direction the target's total derivative du/dt follows: the target's velocity (``sample``: eps - x0,
    #: guided; the paper's) or the network's own u(z, t, t) (``model``: improved MeanFlow's; far less noisy)
    tangent: Literal["sample", "model"] = "sample"
    #: how du/dt is taken: ``jvp`` (forward-mode, exact) or ``difference`` (central, of ``difference_step``:
    #: two plain passes, any attention kernel; several times cheaper than the JVP on the CPU)
    derivative: Literal["jvp", "difference"] = "jvp"
    difference_step: Number = Field(1e-4, gt=0, le=0.1)


class FlowConfig(Options):
    #: what the network learns: the velocity (flow_matching) or the average velocity over [r, t] (meanflow)
    objective: Literal["flow_matching", "meanflow"] = "flow_matching"
    meanflow: MeanFlowOptions = Field(default_factory=MeanFlowOptions)
    timesteps: Literal["uniform", "logit_normal", "mode", "grid"] = "logit_normal"
    #: the sampler's parameters, checked by its model in TIMESTEP_OPTIONS
    timestep_options: dict[str, Any] = Field(default_factory=dict)
    shift: Number = Field(1.0, gt=0)
    loss_weight: Literal["none", "cosmap"] = "none"
    #: the distance between predicted and true velocity: the squared error, or pseudo-Huber with
    #: constant huber_c on the per-value mean (flowcore.flow.loss; Lee et al. 2024 and R2Flow's 2-RF)
    distance: Literal["squared", "pseudo_huber"] = "squared"
    huber_c: Number = Field(0.00054, gt=0)
    ot_coupling: Literal["exact", "sinkhorn"] | None = None
    p_clean: Fraction = 0.2
    p_absent: Fraction = 0.2
    #: pair tasks over the 'any' modalities, each "made|given" (as eval.directions): a ``p_task`` share of
    #: the samples draws one (made noised, given clean, the others absent), the rest draw states one by one
    tasks: list[str] = Field(default_factory=list)
    p_task: Number = Field(0.5, ge=0, le=1)
    #: a task's given modality is absent this often instead (OmniFlow: clean ~0.8 on pair tasks), so the
    #: unguided branch of each task is practised too
    task_dropout: Fraction = 0.2


class TrainConfig(Options):
    #: the budget in optimizer steps, or ``epochs`` in passes over the train split (fractions allowed;
    #: ``epoch_steps`` turns them into steps, at least ``min_steps``, when training starts): at most
    #: one of them; neither means DEFAULT_STEPS steps (so a loaded config always has one set)
    steps: int | None = Field(None, ge=1)
    epochs: Number | None = Field(None, gt=0)
    min_steps: int = Field(1, ge=1)
    batch_size: int = Field(256, ge=1)
    #: batch by length: items of similar length together, count x longest <= batch_tokens
    #: (batch_size then caps the count); needs a dataset with per-item ``lengths``
    batch_tokens: int | None = Field(None, ge=1)
    lr: Number = Field(1e-3, gt=0)
    optimizer: Literal["adamw", "adam", "sgd"] = "adamw"
    weight_decay: Number = Field(0.0, ge=0)
    #: Adam's (beta1, beta2); SGD's momentum is betas[0]
    betas: list[Fraction] = Field(default_factory=lambda: [0.9, 0.999], min_length=2, max_length=2)
    schedule: Literal["constant", "cosine", "linear"] = "constant"
    warmup_steps: int = Field(0, ge=0)
    #: 0 turns clipping off
    grad_clip: Number = Field(1.0, ge=0)
    #: steps whose loss or gradient norm is NaN or infinite that are skipped (update not applied)
    #: before training stops on the next one
    skip_nonfinite: int = Field(0, ge=0)
    #: EMA decay in [0, 1); 0 turns EMA off
    ema: Number = Field(0.999, ge=0, lt=1)
    #: a power-function EMA instead, of this relative width (EDM2's sigma_rel, e.g. 0.05-0.2): it
    #: averages the same share of any run's length; ``ema`` is then unused
    ema_width: Number | None = Field(None, gt=0, le=0.2886)
    #: a finished run whose network weights start this one (a warm start; its folder, as ``flowcore
    #: sample`` takes it): the same network, which may have more weights (the interval embedding of
    #: flow.objective meanflow), never other ones
    init_from: str | None = None
    precision: Precision = "auto"
    accelerator: Accelerator = "auto"
    #: devices per node: a count, -1 or "auto" (all), or device indices as "0,1"
    devices: int | str = 1
    #: Lightning's strategy name: "ddp", "fsdp", ... (Lightning's registry is open, so any name passes here)
    strategy: str = Field("auto", min_length=1)
    num_nodes: int = Field(1, ge=1)
    checkpoint_every: int = Field(500, ge=1)
    #: steps between training-time samples and previews (``samples/step_N/``); null: ten times a
    #: run (every tenth of its steps, at least checkpoint_every) when a made modality draws a
    #: preview, else never; 0: never
    sample_every: int | None = Field(None, ge=0)
    log_every: int = Field(10, ge=1)
    progress_bar: bool = True
    cpu_threads: int | None = Field(None, ge=1)
    #: torch.compile the trained network: "auto" (torch's default mode when training on CUDA, off
    #: elsewhere), false, true (torch's default mode) or a mode name, e.g. "reduce-overhead" (CUDA
    #: graphs: for steps whose shapes stay fixed and that are bound by launches)
    compile: CompileSetting = "auto"
    #: the torch.compile backend ("inductor"; "aot_eager" traces without generating code)
    compile_backend: str = Field("inductor", min_length=1)
    #: what is compiled: "blocks" (each block of the network's block lists, one graph shared by the
    #: blocks of a kind, so compile time does not grow with depth; the rest runs eagerly) or "network"
    compile_scope: Literal["blocks", "network"] = "blocks"
    #: the backbone's fused elementwise ops (flowcore.kernels): "auto" (Triton on CUDA in eager steps,
    #: inductor's own fusion under compile; FLOWCORE_KERNELS may choose otherwise), "triton" (Triton
    #: also inside compiled graphs), "reference"
    kernels: Literal["auto", "triton", "reference"] = "auto"
    #: the optimizer's single fused kernel: "auto" (fused when every parameter is on CUDA, else the
    #: foreach implementation), true (fused, CUDA or CPU), false (foreach)
    fused_optimizer: bool | Literal["auto"] = "auto"

    @field_validator("devices")
    @classmethod
    def _devices(cls, devices: int | str) -> int | str:
        if isinstance(devices, int):
            ok = devices >= 1 or devices == -1
        else:
            ids = [i.strip() for i in devices.split(",") if i.strip()]
            ok = devices in ("auto", "-1") or (bool(ids) and all(i.isdigit() for i in ids))
        if not ok:
            raise ValueError(f"must be a count >= 1, -1 or 'auto' (all devices), or device indices like '0,1'; "
                             f"got {devices!r}")
        return devices

    @field_validator("epochs")
    @classmethod
    def _one_budget(cls, epochs: float | None, info: ValidationInfo) -> float | None:
        if epochs is not None and info.data.get("steps") is not None:
            raise ValueError("give train.steps or train.epochs, not both (set the other to null)")
        return epochs

    @model_validator(mode="after")
    def _default_budget(self) -> TrainConfig:
        if self.steps is None and self.epochs is None:
            self.steps = DEFAULT_STEPS
        return self


class SampleConfig(Options):
    steps: int = Field(32, ge=1)
    solver: Solver = "euler"
    #: guidance weight: 1 = plain conditional, 0 = unconditional, > 1 guided
    cfg: Number = Field(1.0, ge=0)
    #: guidance of a direction ("made|given", as eval.directions) where it differs from ``cfg``: a weight,
    #: or {condition: weight}; an explicit cfg (``--cfg``, ``generate(cfg=...)``) wins over both
    cfg_by_direction: dict[str, Weight | dict[str, Weight]] = Field(default_factory=dict)
    count: int = Field(1000, ge=1)
    shift: Number = Field(1.0, gt=0)
    #: the solver's keyword arguments, e.g. {churn: 1.0, noise_scale: 0.5} for euler_sde
    solver_options: dict[str, Any] = Field(default_factory=dict)
    #: sample the network without its sampling-only aids (its ``unaided()``): for a run that distilled them
    unaided: bool = False

    def options_for(self, solver: str) -> dict[str, Any]:
        """``solver_options`` when ``solver`` is this section's solver, else none (a --solver override)."""
        return dict(self.solver_options) if solver == self.solver else {}


class EvalConfig(Options):
    split: Literal["val", "test"] = "test"
    count: int = Field(2000, ge=1)
    batch_size: int = Field(1000, ge=1)
    #: what ``flowcore eval`` measures, each "made|given": "image|label", "label|audio", "image,audio|label"
    #: (joint), "image" (given nothing). None: each generated modality given the run's conditions, and
    #: each 'any' modality given all the others
    directions: list[str] | None = None
    #: the modality holding each item's class: generated samples of a modality that classifies
    #: (``Modality.classify``) are scored against it (``class_accuracy``)
    class_by: str = "label"


def parse_direction(text: str) -> tuple[list[str], list[str]]:
    """ "image,audio|label" -> (["image", "audio"], ["label"]); "image" -> (["image"], [])."""
    made, _, given = text.partition("|")
    names = [[n.strip() for n in part.split(",") if n.strip()] for part in (made, given)]
    if not names[0] or ("|" in text and not names[1]) or text.count("|") > 1:
        raise ValueError(f"a direction is 'made|given' with comma-separated modalities (e.g. 'image|label', "
                         f"'image,audio|label', 'image'), got {text!r}")
    return names[0], names[1]


def direction_key(made: Sequence[str], given: Sequence[str]) -> str:
    """ "image,audio|label": the key of a direction in eval reports and ``sample.cfg_by_direction``."""
    return ",".join(made) + (f"|{','.join(given)}" if given else "")


class ReflowConfig(Options):
    teacher: str | None = None
    pairs: int = Field(10000, ge=1)
    steps: int = Field(32, ge=1)
    solver: Solver = "euler"
    #: guidance weight of the teacher when it makes the pairs of a conditional run (None: sample.cfg;
    #: 1 = plain conditional)
    cfg: Number | None = Field(None, gt=0)
    init_from_teacher: bool = True


class DistillConfig(Options):
    """On-policy distillation of the sampler into the network (flowcore/train/distill.py)."""

    #: the training step at which it starts (null: off); the teacher is the EMA network then
    start_step: int | None = Field(None, ge=0)
    #: samples per rollout: the first this many items of the step's data batch give the layout
    samples: int = Field(4, ge=1)
    #: gradient steps fed by one rollout (its states at that many random grid times <= t_max)
    states: int = Field(12, ge=1)
    #: only states at t <= t_max are learned (an aid that acts late needs no more)
    t_max: Number = Field(0.5, gt=0, le=1)
    #: weight of the distillation loss, added to the flow loss on the data batch
    weight: Number = Field(1.0, ge=0)
    #: EMA decay from start_step on (null: train.ema); a shorter average follows the short phase
    ema: Number | None = Field(None, ge=0, lt=1)
    #: learning rate from start_step on, constant (null: train.lr's schedule goes on)
    lr: Number | None = Field(None, gt=0)


class Config(Options):
    """A whole run. ``source`` is where it came from (for error messages), not a key."""

    modalities: dict[str, ModalityConfig]
    #: numpy's seeds are 32-bit
    seed: int = Field(0, ge=0, lt=2**32)
    out_dir: str = Field("runs/run", min_length=1)
    stage: Literal["flow", "autoencoder", "reflow"] = "flow"
    plugins: list[str] = Field(default_factory=list)
    data: DataConfig = Field(default_factory=DataConfig)
    model: ModelConfig = Field(default_factory=ModelConfig)
    flow: FlowConfig = Field(default_factory=FlowConfig)
    train: TrainConfig = Field(default_factory=TrainConfig)
    sample: SampleConfig = Field(default_factory=SampleConfig)
    eval: EvalConfig = Field(default_factory=EvalConfig)
    reflow: ReflowConfig = Field(default_factory=ReflowConfig)
    distill: DistillConfig = Field(default_factory=DistillConfig)
    _source: str = PrivateAttr("<dict>")

    @model_validator(mode="before")
    @classmethod
    def _empty_sections(cls, raw: Any) -> Any:
        # `train:` with nothing under it is YAML's null: the section's defaults
        if isinstance(raw, Mapping):
            return {k: v for k, v in raw.items() if not (v is None and _is_section(cls.model_fields.get(k)))}
        return raw

    @property
    def source(self) -> str:
        return self._source

    def __eq__(self, other: object) -> bool:
        # where a config was read from is not part of it (pydantic would compare private attributes)
        return type(other) is type(self) and self.__dict__ == other.__dict__

    # -- views the pipeline asks for ----------------------------------------------------

    def names(self, *roles: str) -> list[str]:
        """Modality names in config order, optionally only those with one of ``roles``."""
        return [n for n, m in self.modalities.items() if not roles or m.role in roles]

    def p_states(self, name: str) -> tuple[float, float]:
        """(p_clean, p_absent) of an ``any`` modality: its own, else the flow section's."""
        m = self.modalities[name]
        return (self.flow.p_clean if m.p_clean is None else m.p_clean,
                self.flow.p_absent if m.p_absent is None else m.p_absent)

    def to_dict(self) -> dict[str, Any]:
        """Plain data that :func:`from_dict` reads back to an equal config (saved as config.yaml)."""
        out = self.model_dump(mode="json")
        out["modalities"] = {n: _modality_to_dict(m) for n, m in self.modalities.items()}
        return out


def _is_section(field: Any) -> bool:
    return field is not None and isinstance(field.annotation, type) and issubclass(field.annotation, BaseModel)


def _modality_to_dict(m: ModalityConfig) -> dict[str, Any]:
    d = m.model_dump(mode="json", include=set(MODALITY_KEYS))
    d.update(m.options)
    return d


# ----------------------------------------------------------------------------- loading


def load_config(path: str | Path, overrides: Sequence[str] = (), registry=None) -> Config:
    """Read a YAML config, apply ``--set key=value`` overrides, validate it.

    ``registry`` (a :class:`flowcore.registry.Registry`) checks that every modality and
    dataset named exists and checks their options against the models their specs declare
    (which imports only the plugins' entry-point modules); pass None to skip those checks.
    """
    path = Path(path)
    try:
        raw = read_yaml(path)
    except OSError as exc:
        raise ConfigError(f"cannot read config {path}: {exc}") from exc
    raw = {} if raw is None else raw
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: a config is a mapping of sections, got {type(raw).__name__}")
    apply_overrides(raw, overrides, str(path))
    _anchor_paths(raw, path.parent)
    if registry is not None:
        register_plugins(raw.get("plugins") or [], str(path), registry)
    overridden = tuple(item.partition("=")[0] for item in overrides)
    return _validated(raw, str(path), registry, overridden)


def read_yaml(path: str | Path) -> Any:
    """The plain data of a YAML config file; an OSError if it cannot be read.

    Stricter than ``yaml.safe_load``: a key given twice in one mapping (YAML would keep the
    last silently) and any tag such as ``!!python/object`` are refused, and a YAML error is
    one :class:`ConfigError` line naming the file and the line.
    """
    try:
        text = Path(path).read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{path}: not a UTF-8 text file ({exc.reason} at byte {exc.start})") from None
    return parse_yaml(text, str(path))


def parse_yaml(text: str, source: str) -> Any:
    """:func:`read_yaml` of ``text``, its errors naming ``source``."""
    loader = _ConfigLoader(text)
    try:
        node = loader.get_single_node()
        if node is None:
            return None
        _refuse_duplicate_keys(node, source)
        return loader.construct_document(node)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark is not None else ""
        words = "; ".join(str(part) for part in (exc.context, exc.problem) if part)
        what = "" if isinstance(exc, yaml.constructor.ConstructorError) else "not valid YAML: "
        raise ConfigError(f"{source}: {where}{what}{' '.join(words.split())}") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"{source}: not valid YAML: {' '.join(str(exc).split())}") from None
    finally:
        loader.dispose()


class _ConfigLoader(yaml.SafeLoader):
    """SafeLoader whose unknown tags say that a config is plain data."""

    def construct_undefined(self, node: yaml.Node) -> Any:
        raise yaml.constructor.ConstructorError(
            None, None, f"the tag {node.tag.replace('tag:yaml.org,2002:', '!!')!r} is not allowed: a config is plain "
            "data (mappings, lists, strings, numbers, true/false, null)", node.start_mark)


_ConfigLoader.add_constructor(None, _ConfigLoader.construct_undefined)


def _refuse_duplicate_keys(node: yaml.Node, source: str, key: str = "", seen: set[int] | None = None) -> None:
    """A ConfigError naming the line and the dotted key of the first key given twice in a mapping."""
    seen = set() if seen is None else seen
    if id(node) in seen:  # an alias repeats a node (a recursive one would loop)
        return
    seen.add(id(node))
    if isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            _refuse_duplicate_keys(item, source, f"{key}[{i}]", seen)
    if not isinstance(node, yaml.MappingNode):
        return
    first: dict[tuple[str, str], yaml.Node] = {}
    for key_node, value_node in node.value:
        if key_node.tag == "tag:yaml.org,2002:merge":  # `<<: *base` keys may be overridden, by design
            continue
        dotted = ".".join(filter(None, [key, str(key_node.value) if isinstance(key_node, yaml.ScalarNode) else "?"]))
        if isinstance(key_node, yaml.ScalarNode):
            earlier = first.setdefault((key_node.tag, key_node.value), key_node)
            if earlier is not key_node:
                raise ConfigError(f"{source}: line {key_node.start_mark.line + 1}: {dotted}: duplicate key (first "
                                  f"given on line {earlier.start_mark.line + 1}); YAML would keep only the last, "
                                  "so give it once")
        _refuse_duplicate_keys(value_node, source, dotted, seen)


def _anchor_paths(raw: dict[str, Any], base: Path) -> None:
    """``data.path`` and ``.py`` plugin files are relative to the config file: make them absolute."""
    data = raw.get("data")
    if isinstance(data, dict) and isinstance(data.get("path"), str):
        data["path"] = str((base / data["path"]).resolve())
    plugins = raw.get("plugins")
    if isinstance(plugins, list):
        raw["plugins"] = [str((base / p).resolve()) if isinstance(p, str) and p.endswith(".py") else p
                          for p in plugins]


def register_plugins(plugins: Sequence[Any], source: str, registry) -> None:
    """Register the config's ``plugins`` (module names or .py files) in ``registry``, once each."""

    loaded = {p.source for p in registry.plugins}
    for i, entry in enumerate(plugins):
        if not isinstance(entry, str):
            raise ConfigError(f"{source}: plugins[{i}] must be a module name or a .py file, got {entry!r}")
        if any(entry in s for s in loaded):
            continue
        if entry.endswith(".py"):
            name = "flowcore_local_" + Path(entry).stem
            spec = importlib.util.spec_from_file_location(name, entry)
            if spec is None or not Path(entry).is_file():
                raise ConfigError(f"{source}: plugins[{i}]: no such file {entry}")
            module = importlib.util.module_from_spec(spec)
            try:
                spec.loader.exec_module(module)
            except Exception as exc:
                raise ConfigError(f"{source}: plugins[{i}]: {entry} failed to import: "
                                  f"{type(exc).__name__}: {exc}") from exc
            record = registry.register(module, name=Path(entry).stem)
            record.source = f"in-process {entry}"
        else:
            record = registry.register(entry)
        if not record.ok:
            raise ConfigError(f"{source}: plugins[{i}]: {entry} did not load: {record.error}")


def apply_overrides(raw: dict[str, Any], overrides: Sequence[str], source: str) -> dict[str, Any]:
    """``["train.steps=100", "modalities.label.role=condition"]`` -> edits ``raw`` in place.

    The value is parsed as YAML (``100`` is an int, ``[1, 2]`` a list, ``null`` None).
    """
    for item in overrides:
        key, sep, text = item.partition("=")
        if not sep or not key:
            raise ConfigError(f"--set {item!r}: write it as key=value (e.g. train.steps=100)")
        value = parse_yaml(text, f"--set {item!r}")
        node = raw
        parts = key.split(".")
        for depth, part in enumerate(parts[:-1]):
            child = node.setdefault(part, {})
            if not isinstance(child, dict):
                raise ConfigError(f"--set {item!r}: {'.'.join(parts[:depth + 1])} in {source} is not a section")
            node = child
        node[parts[-1]] = value
    return raw


def from_dict(raw: Mapping[str, Any], source: str = "<dict>", registry=None) -> Config:
    """Validate plain data (a parsed YAML file) into a :class:`Config`."""
    return _validated(raw, source, registry, ())


def _validated(raw: Mapping[str, Any], source: str, registry, overridden: tuple[str, ...]) -> Config:
    """:func:`from_dict`, naming ``--set`` for a bad value under one of the ``overridden`` keys."""
    if not isinstance(raw, Mapping):
        raise ConfigError(f"{source}: a config is a mapping of sections, got {type(raw).__name__}")
    if not raw.get("modalities"):
        raise ConfigError(f"{source}: missing key 'modalities' (name at least one modality)")
    if not isinstance(raw["modalities"], Mapping):
        raise ConfigError(f"{source}: 'modalities' must map modality names to sections")
    modalities = {}
    for name, section in raw["modalities"].items():
        section = {} if section is None else section
        if not isinstance(section, Mapping):
            raise ConfigError(f"{source}: modalities.{name} must be a mapping, got {section!r}")
        core = {k: v for k, v in section.items() if k in MODALITY_KEYS}
        modalities[str(name)] = {**core, "options": {k: v for k, v in section.items() if k not in MODALITY_KEYS}}
    config = validate(Config, {**raw, "modalities": modalities}, source, overridden=overridden)
    config._source = source
    config.model.transformer = checked_options(TransformerSection, config.model.transformer, source,
                                               "model.transformer", overridden)
    flow, sample = config.flow, config.sample
    flow.timestep_options = _parameters(TIMESTEP_OPTIONS[flow.timesteps], flow.timestep_options, source,
                                        "flow.timestep_options", overridden)
    sample.solver_options = _parameters(SOLVER_OPTIONS.get(sample.solver, Options), sample.solver_options, source,
                                        "sample.solver_options", overridden)
    check(config, registry)
    if registry is not None:
        check_options(config, registry, overridden)
    return config


def _parameters(model: type[Options], given: Mapping[str, Any], source: str, prefix: str,
                overridden: tuple[str, ...]) -> dict[str, Any]:
    """``given`` checked by ``model``: the keys given, their values as the model reads them (no defaults added)."""
    return validate(model, dict(given), source, prefix, overridden).model_dump(mode="json", exclude_unset=True)


def check_options(config: Config, registry, overridden: tuple[str, ...] = ()) -> None:
    """Each modality's options and ``data.options``, checked by the models the plugins declare on their
    specs (no plugin module beyond its entry point is imported); the defaults are filled in."""
    for name, section in config.modalities.items():
        section.options = checked_options(registry.spec(name).options, section.options, config.source,
                                          f"modalities.{name}", overridden)
    data = config.data
    if data.dataset is not None:
        spec = registry.datasets()[data.dataset]
        data.options = checked_options(spec.options, data.options, config.source, "data.options", overridden)
    for i, source in enumerate(data.paired):
        spec = registry.datasets()[source.dataset]
        source.options = checked_options(spec.options, source.options, config.source,
                                         f"data.paired[{i}].options", overridden)


def check(config: Config, registry=None) -> None:
    """Cross-key rules (and, with a registry, that named modalities and datasets exist)."""
    src = config.source
    for name, m in config.modalities.items():
        if m.dropout and m.role != "condition":
            raise ConfigError(f"{src}: modalities.{name}.dropout only applies to role 'condition' (role is {m.role!r})")
        if (m.p_clean is not None or m.p_absent is not None) and m.role != "any":
            raise ConfigError(f"{src}: modalities.{name}.p_clean / p_absent only apply to role 'any' "
                              f"(role is {m.role!r})")
        if m.role == "any" and sum(config.p_states(name)) >= 1:
            raise ConfigError(f"{src}: modalities.{name}: p_clean + p_absent must be < 1 "
                              "(some samples must be noised)")
    if config.stage != "autoencoder" and not config.names("generate", "any"):
        raise ConfigError(f"{src}: modalities: no modality has role 'generate' or 'any'; nothing to learn")
    if config.stage == "autoencoder" and len(config.modalities) != 1:
        raise ConfigError(f"{src}: modalities: the autoencoder stage trains exactly one modality, "
                          f"got {list(config.modalities)}")
    if [config.data.dataset is not None, config.data.path is not None, bool(config.data.paired)].count(True) != 1:
        raise ConfigError(f"{src}: data: give exactly one of 'dataset' (a plugin dataset), 'path' "
                          "(a folder or a .csv/.jsonl manifest) or 'paired' (datasets joined by a shared sample)")
    if len(config.data.paired) == 1:
        raise ConfigError(f"{src}: data.paired: pairing needs two datasets or more; use data.dataset for one")
    f = config.flow
    if f.p_clean + f.p_absent >= 1:
        raise ConfigError(f"{src}: flow.p_clean + flow.p_absent must be < 1 (some samples must be noised)")
    if f.objective == "meanflow":
        check_meanflow(config)
    if config.data.val_fraction + config.data.test_fraction >= 1:
        raise ConfigError(f"{src}: data.val_fraction + data.test_fraction must be < 1 (some data must train)")
    tr = config.train
    if tr.init_from is not None and config.stage != "flow":
        raise ConfigError(f"{src}: train.init_from warm-starts the flow stage's network; the {config.stage} stage "
                          "starts from its own weights (reflow: reflow.init_from_teacher)")
    if tr.batch_tokens is not None and (str(tr.devices) != "1" or tr.num_nodes != 1 or config.data.cache_latents):
        raise ConfigError(f"{src}: train.batch_tokens batches one process from the dataset's items: it needs "
                          "train.devices 1, train.num_nodes 1 and data.cache_latents false")
    if tr.strategy == "fsdp" and (config.stage == "autoencoder" or config.distill.start_step is not None):
        what = "the autoencoder stage" if config.stage == "autoencoder" else "distill.start_step"
        raise ConfigError(f"{src}: train.strategy: fsdp shards the flow network; {what} is not sharded: "
                          "use strategy ddp (or auto) for it")
    net = config.model.network
    if config.model.options and net in ("mlp", "transformer"):
        raise ConfigError(f"{src}: model.options: only for a plugin network ('package.module:attr'); "
                          f"network {net!r} takes its own keys")
    for i, text in enumerate(config.eval.directions or []):
        check_direction(config, text, f"{src}: eval.directions[{i}]")
    for text, weights in config.sample.cfg_by_direction.items():
        check_direction(config, text, f"{src}: sample.cfg_by_direction[{text!r}]")
        unknown = sorted(set(weights) - set(parse_direction(text)[1])) if isinstance(weights, dict) else []
        if unknown:
            raise ConfigError(f"{src}: sample.cfg_by_direction[{text!r}]: {unknown[0]!r} is not given in this "
                              "direction; weigh its given modalities")
    for i, text in enumerate(config.flow.tasks):
        check_direction(config, text, f"{src}: flow.tasks[{i}]")
        other = [n for n in sum(parse_direction(text), []) if config.modalities[n].role != "any"]
        if other:
            raise ConfigError(f"{src}: flow.tasks[{i}]: {text!r}: {other[0]!r} has role "
                              f"{config.modalities[other[0]].role!r}; tasks are over role 'any' modalities")
    if config.stage == "reflow":
        check_reflow(config)
    if config.distill.start_step is not None:
        check_distill(config)
    if registry is not None:
        for name in config.modalities:
            if name not in registry.modalities:
                raise ConfigError(f"{src}: modalities.{name}: no modality named {name!r} is installed; "
                                  f"installed: {sorted(registry.modalities)} (see `flowcore plugins`)")
        if config.data.dataset is not None:
            found = registry.datasets()
            if config.data.dataset not in found:
                raise ConfigError(f"{src}: data.dataset: no dataset named {config.data.dataset!r}; "
                                  f"installed: {sorted(found)}")
            provided = set(found[config.data.dataset].modalities)
            missing = [n for n in config.modalities if n not in provided]
            if missing:
                raise ConfigError(f"{src}: data.dataset: {config.data.dataset!r} provides {sorted(provided)}, "
                                  f"not the configured modality {missing[0]!r} (modalities.{missing[0]})")
        if config.data.paired:
            check_paired(config, registry.datasets())
        if config.data.modality is not None and config.data.modality not in config.modalities:
            raise ConfigError(f"{src}: data.modality: {config.data.modality!r} is not one of the configured "
                              f"modalities {list(config.modalities)}")


def check_direction(config: Config, text: str, where: str) -> None:
    """An ``eval.directions`` entry: made modalities the run generates, given ones it can condition on."""
    try:
        made, given = parse_direction(text)
    except ValueError as exc:
        raise ConfigError(f"{where}: {exc}") from None
    for name in made + given:
        if name not in config.modalities:
            raise ConfigError(f"{where}: {text!r}: no modality {name!r} in this run ({list(config.modalities)})")
    overlap = set(made) & set(given)
    if overlap:
        raise ConfigError(f"{where}: {text!r}: {sorted(overlap)[0]!r} is both made and given")
    for name in made:
        if config.modalities[name].role == "condition":
            raise ConfigError(f"{where}: {text!r}: {name!r} has role 'condition'; it cannot be made")
    for name in given:
        if config.modalities[name].role == "generate":
            raise ConfigError(f"{where}: {text!r}: {name!r} has role 'generate'; it cannot be given")


def check_paired(config: Config, found: Mapping[str, Any]) -> None:
    """``data.paired``: the datasets exist, each provides ``pair_by``, and together they provide every modality."""
    src, data = config.source, config.data
    provided: set[str] = set()
    for i, source in enumerate(data.paired):
        if source.dataset not in found:
            raise ConfigError(f"{src}: data.paired[{i}].dataset: no dataset named {source.dataset!r}; "
                              f"installed: {sorted(found)}")
        modalities = set(found[source.dataset].modalities)
        if data.pair_by not in modalities:
            raise ConfigError(f"{src}: data.pair_by: dataset {source.dataset!r} (data.paired[{i}]) provides "
                              f"{sorted(modalities)}, not {data.pair_by!r} to pair by")
        provided |= modalities
    missing = [n for n in config.modalities if n not in provided]
    if missing:
        raise ConfigError(f"{src}: data.paired: the datasets provide {sorted(provided)}, not the configured "
                          f"modality {missing[0]!r} (modalities.{missing[0]})")


def check_distill(config: Config) -> None:
    """The ``distill`` section of a run that turns it on (``distill.start_step`` set)."""
    src = config.source
    if config.stage != "flow":
        raise ConfigError(f"{src}: distill.start_step: on-policy distillation is part of the flow stage, "
                          f"not stage {config.stage!r}")
    others = config.names("condition", "any")
    if others:
        raise ConfigError(f"{src}: distill.start_step: on-policy distillation rolls out unconditional samples, but "
                          f"modalities.{others[0]}.role is {config.modalities[others[0]].role!r}; it needs every "
                          "modality to be 'generate'")


def check_reflow(config: Config) -> None:
    """The ``reflow`` section of a ``stage: reflow`` run, and the roles reflow can straighten."""
    src, rf = config.source, config.reflow
    if not rf.teacher:
        raise ConfigError(f"{src}: reflow.teacher: the reflow stage needs the run directory of the model to straighten")
    conditions, anys = config.names("condition"), config.names("any")
    if rf.cfg is not None and not conditions:
        raise ConfigError(f"{src}: reflow.cfg: the run has no 'condition' modality, so there is nothing to "
                          "guide; remove reflow.cfg")
    if conditions and anys:
        raise ConfigError(f"{src}: modalities.{anys[0]}.role: conditional reflow draws the 'condition' modalities "
                          f"from data and generates the rest jointly, which an 'any' modality does not fit (its "
                          f"other directions would train on noise that is not independent of what they are "
                          f"given); make {anys[0]!r} 'generate' or 'condition' for the reflow stage")


def dump(config: Config) -> str:
    return yaml.safe_dump(config.to_dict(), sort_keys=False)


def check_meanflow(config: Config) -> None:
    """``flow.objective: meanflow``: guidance in the target needs a dropped condition to learn u(z | none);
    reflow and on-policy distillation train velocities, not average velocities."""
    src, mf = config.source, config.flow.meanflow
    if config.stage == "reflow" or config.distill.start_step is not None:
        raise ConfigError(f"{src}: flow.objective: meanflow trains a one-step sampler itself; it does not "
                          "combine with the reflow stage or distill.start_step")
    if config.flow.distance != "squared":
        raise ConfigError(f"{src}: flow.distance: {config.flow.distance} is a flow_matching option; meanflow's "
                          "loss weighs samples by flow.meanflow.norm_p (0.5 is the pseudo-Huber's weighting)")
    if mf.identity == "lagrangian" and mf.teacher is None:
        raise ConfigError(f"{src}: flow.meanflow.identity: lagrangian reads the velocity at the map's end point, "
                          "which only a trained flow can give: set flow.meanflow.teacher to a flow_matching run")
    if mf.identity == "lagrangian" and mf.derivative == "difference":
        raise ConfigError(f"{src}: flow.meanflow.derivative: difference takes du/dt of the eulerian identity; "
                          "the lagrangian form's du/dr is a JVP: set derivative: jvp")
    if mf.teacher is not None and mf.cfg_kappa:
        raise ConfigError(f"{src}: flow.meanflow.cfg_kappa mixes the network's own conditional velocity into the "
                          "target; with flow.meanflow.teacher the target is the teacher's, guided at cfg: set it 0")
    if (mf.cfg != 1 or mf.cfg_kappa) and mf.teacher is None:
        dropped = [n for n in config.names("condition") if config.modalities[n].dropout > 0]
        if not dropped:
            raise ConfigError(f"{src}: flow.meanflow.cfg / cfg_kappa guide the target with the unconditional "
                              "velocity: give a modality role 'condition' with dropout > 0 (e.g. 0.1)")
