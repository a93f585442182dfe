"""Run configuration: YAML -> validated dataclasses, once, at the edge.

An unknown key, a value of the wrong type, or a modality nobody registered is a
:class:`~flowcore.errors.ConfigError` naming the key and the file. ``--set key=value``
overrides are applied to the YAML before validation, so they are checked the same way.
This module imports no torch: the CLI validates a config before paying for it.
docs/config.md is the reference for every key below.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Mapping, Sequence, Union

import yaml

from flowcore.errors import ConfigError

Role = Literal["generate", "condition", "any"]
COMPILE_MODES = ("default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs")
#: keys of a ``modalities.<name>`` section that the core reads; the rest go to the modality's factory
MODALITY_KEYS = ("role", "dropout", "size", "loss_weight", "autoencoder")


@dataclass
class ModalityConfig:
    """How one modality takes part in the run (``modalities.<name>``)."""

    role: Role = "generate"
    dropout: float = 0.0
    size: Any = None
    loss_weight: float = 1.0
    autoencoder: str | None = None
    options: dict[str, Any] = field(default_factory=dict)


@dataclass
class DataConfig:
    dataset: str | None = None
    options: dict[str, Any] = field(default_factory=dict)
    path: str | None = None
    modality: str | None = None
    val_fraction: float = 0.05
    test_fraction: float = 0.05
    num_workers: int = 0
    limit: int | None = None
    cache_latents: bool = False


@dataclass
class ModelConfig:
    #: "mlp", "transformer", or a plugin network as "package.module:attr": a factory called
    #: as ``factory(shapes, **options)`` with shapes {modality: (L, C)} (fixed token counts)
    network: str = "mlp"
    #: keyword arguments of a plugin network's factory
    options: dict[str, Any] = field(default_factory=dict)
    hidden: int = 256
    depth: int = 3
    time_dim: int = 64
    #: FlowTransformerConfig fields (``network: transformer``), checked by the backbone itself
    transformer: dict[str, Any] = field(default_factory=dict)


@dataclass
class FlowConfig:
    timesteps: Literal["uniform", "logit_normal", "mode", "grid"] = "logit_normal"
    timestep_options: dict[str, float] = field(default_factory=dict)
    shift: float = 1.0
    loss_weight: Literal["none", "cosmap"] = "none"
    ot_coupling: Literal["exact", "sinkhorn"] | None = None
    p_clean: float = 0.2
    p_absent: float = 0.2


@dataclass
class TrainConfig:
    steps: int = 2000
    batch_size: int = 256
    #: batch by length: items of similar length together, count x longest <= batch_tokens
    #: (batch_size then caps the count); needs a dataset with per-item ``lengths``
    batch_tokens: int | None = None
    lr: float = 1e-3
    optimizer: Literal["adamw", "adam", "sgd"] = "adamw"
    weight_decay: float = 0.0
    betas: list[float] = field(default_factory=lambda: [0.9, 0.999])
    schedule: Literal["constant", "cosine", "linear"] = "constant"
    warmup_steps: int = 0
    grad_clip: float = 1.0
    ema: float = 0.999
    precision: str = "auto"
    accelerator: str = "auto"
    devices: Union[int, str] = 1
    strategy: str = "auto"
    num_nodes: int = 1
    checkpoint_every: int = 500
    sample_every: int = 0
    log_every: int = 10
    progress_bar: bool = True
    cpu_threads: int | None = None
    #: torch.compile the trained network: false, true (torch's default mode) or a mode name,
    #: e.g. "reduce-overhead" (CUDA graphs: for small models whose steps are bound by launches)
    compile: Union[bool, str] = False
    #: the torch.compile backend ("inductor"; "aot_eager" traces without generating code)
    compile_backend: str = "inductor"


@dataclass
class SampleConfig:
    steps: int = 32
    solver: str = "euler"
    cfg: float = 1.0
    count: int = 1000
    shift: float = 1.0
    #: the solver's keyword arguments, e.g. {churn: 1.0, noise_scale: 0.5} for euler_sde
    solver_options: dict[str, Any] = field(default_factory=dict)
    #: sample the network without its sampling-only aids (its ``unaided()``): for a run that distilled them
    unaided: bool = False

    def options_for(self, solver: str) -> dict[str, Any]:
        """``solver_options`` when ``solver`` is this section's solver, else none (a --solver override)."""
        return dict(self.solver_options) if solver == self.solver else {}


@dataclass
class EvalConfig:
    split: Literal["val", "test"] = "test"
    count: int = 2000
    batch_size: int = 1000


@dataclass
class ReflowConfig:
    teacher: str | None = None
    pairs: int = 10000
    steps: int = 32
    solver: str = "euler"
    #: guidance weight of the teacher when it makes the pairs of a conditional run (None: sample.cfg)
    cfg: float | None = None
    init_from_teacher: bool = True


@dataclass
class DistillConfig:
    """On-policy distillation of the sampler into the network (flowcore/train/distill.py)."""

    #: the training step at which it starts (null: off); the teacher is the EMA network then
    start_step: int | None = None
    #: samples per rollout: the first this many items of the step's data batch give the layout
    samples: int = 4
    #: gradient steps fed by one rollout (its states at that many random grid times <= t_max)
    states: int = 12
    #: only states at t <= t_max are learned (an aid that acts late needs no more)
    t_max: float = 0.5
    #: weight of the distillation loss, added to the flow loss on the data batch
    weight: float = 1.0
    #: EMA decay from start_step on (null: train.ema); a shorter average follows the short phase
    ema: float | None = None
    #: learning rate from start_step on, constant (null: train.lr's schedule goes on)
    lr: float | None = None


@dataclass
class Config:
    """A whole run. ``source`` is where it came from (for error messages), not a key."""

    modalities: dict[str, ModalityConfig]
    seed: int = 0
    out_dir: str = "runs/run"
    stage: Literal["flow", "autoencoder", "reflow"] = "flow"
    plugins: list[str] = field(default_factory=list)
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    flow: FlowConfig = field(default_factory=FlowConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    sample: SampleConfig = field(default_factory=SampleConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    reflow: ReflowConfig = field(default_factory=ReflowConfig)
    distill: DistillConfig = field(default_factory=DistillConfig)
    source: str = field(default="<dict>", compare=False, repr=False)

    # -- views the pipeline asks for ----------------------------------------------------

    def names(self, *roles: str) -> list[str]:
        """Modality names in config order, optionally only those with one of ``roles``."""
        return [n for n, m in self.modalities.items() if not roles or m.role in roles]

    def to_dict(self) -> dict[str, Any]:
        """Plain data that :func:`from_dict` reads back to an equal config (saved as config.yaml)."""
        out = dataclasses.asdict(self)
        out.pop("source")
        out["modalities"] = {n: _modality_to_dict(m) for n, m in self.modalities.items()}
        return out


def _modality_to_dict(m: ModalityConfig) -> dict[str, Any]:
    d = {k: getattr(m, k) for k in MODALITY_KEYS}
    d.update(m.options)
    return d


# ----------------------------------------------------------------------------- loading


def load_config(path: str | Path, overrides: Sequence[str] = (), registry=None) -> Config:
    """Read a YAML config, apply ``--set key=value`` overrides, validate it.

    ``registry`` (a :class:`flowcore.registry.Registry`) checks that every modality and
    dataset named exists; pass None to skip that check (it imports no plugin either way).
    """
    path = Path(path)
    try:
        raw = yaml.safe_load(path.read_text())
    except OSError as exc:
        raise ConfigError(f"cannot read config {path}: {exc}") from exc
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML: {exc}") from exc
    raw = {} if raw is None else raw
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: a config is a mapping of sections, got {type(raw).__name__}")
    apply_overrides(raw, overrides, str(path))
    _anchor_paths(raw, path.parent)
    if registry is not None:
        register_plugins(raw.get("plugins") or [], str(path), registry)
    return from_dict(raw, source=str(path), registry=registry)


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
    import importlib.util

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
                raise ConfigError(f"{source}: plugins[{i}]: {entry} failed to import: {type(exc).__name__}: {exc}") from exc
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
        try:
            value = yaml.safe_load(text)
        except yaml.YAMLError as exc:
            raise ConfigError(f"--set {item!r}: value is not valid YAML: {exc}") from exc
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
    if "modalities" not in raw or not raw["modalities"]:
        raise ConfigError(f"{source}: missing key 'modalities' (name at least one modality)")
    mods = raw["modalities"]
    if not isinstance(mods, dict):
        raise ConfigError(f"{source}: 'modalities' must map modality names to sections")
    modalities = {}
    for name, section in mods.items():
        section = {} if section is None else section
        if not isinstance(section, dict):
            raise ConfigError(f"{source}: modalities.{name} must be a mapping, got {section!r}")
        core = {k: v for k, v in section.items() if k in MODALITY_KEYS}
        options = {k: v for k, v in section.items() if k not in MODALITY_KEYS}
        m = _build(ModalityConfig, {**core, "options": options}, f"modalities.{name}", source)
        modalities[str(name)] = m
    rest = {k: v for k, v in raw.items() if k != "modalities"}
    config = _build(Config, {**rest, "modalities": modalities}, "", source, prebuilt={"modalities"})
    config.source = source
    check(config, registry)
    return config


def check(config: Config, registry=None) -> None:
    """Cross-key rules (and, with a registry, that named modalities and datasets exist)."""
    src = config.source
    for name, m in config.modalities.items():
        if not 0 <= m.dropout < 1:
            raise ConfigError(f"{src}: modalities.{name}.dropout must be in [0, 1), got {m.dropout}")
        if m.dropout and m.role != "condition":
            raise ConfigError(f"{src}: modalities.{name}.dropout only applies to role 'condition' (role is {m.role!r})")
    if config.stage != "autoencoder" and not config.names("generate", "any"):
        raise ConfigError(f"{src}: modalities: no modality has role 'generate' or 'any'; nothing to learn")
    if config.stage == "autoencoder" and len(config.modalities) != 1:
        raise ConfigError(f"{src}: modalities: the autoencoder stage trains exactly one modality, "
                          f"got {list(config.modalities)}")
    if (config.data.dataset is None) == (config.data.path is None):
        raise ConfigError(f"{src}: data: give exactly one of 'dataset' (a plugin dataset) or 'path' "
                          "(a folder or a .csv/.jsonl manifest)")
    f = config.flow
    if not (0 <= f.p_clean and 0 <= f.p_absent and f.p_clean + f.p_absent < 1):
        raise ConfigError(f"{src}: flow.p_clean + flow.p_absent must be < 1 (some samples must be noised)")
    fracs = config.data.val_fraction + config.data.test_fraction
    if not (0 <= config.data.val_fraction and 0 <= config.data.test_fraction and fracs < 1):
        raise ConfigError(f"{src}: data.val_fraction + data.test_fraction must be in [0, 1)")
    for key in ("steps", "batch_size"):
        if getattr(config.train, key) < 1:
            raise ConfigError(f"{src}: train.{key} must be >= 1")
    if config.train.batch_tokens is not None:
        tr = config.train
        if tr.batch_tokens < 1:
            raise ConfigError(f"{src}: train.batch_tokens must be >= 1 (or null), got {tr.batch_tokens}")
        if str(tr.devices) != "1" or tr.num_nodes != 1 or config.data.cache_latents:
            raise ConfigError(f"{src}: train.batch_tokens batches one process from the dataset's items: it needs "
                              "train.devices 1, train.num_nodes 1 and data.cache_latents false")
    net = config.model.network
    if net not in ("mlp", "transformer") and (":" not in net or net.startswith(":") or net.endswith(":")):
        raise ConfigError(f"{src}: model.network must be 'mlp', 'transformer' or a plugin network "
                          f"'package.module:attr', got {net!r}")
    if config.model.options and net in ("mlp", "transformer"):
        raise ConfigError(f"{src}: model.options: only for a plugin network ('package.module:attr'); "
                          f"network {net!r} takes its own keys")
    if isinstance(config.train.compile, str) and config.train.compile not in COMPILE_MODES:
        raise ConfigError(f"{src}: train.compile must be true, false or one of {list(COMPILE_MODES)}, "
                          f"got {config.train.compile!r}")
    if not 0 <= config.train.ema < 1:
        raise ConfigError(f"{src}: train.ema is a decay in [0, 1) (0 turns EMA off), got {config.train.ema}")
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
        if config.data.modality is not None and config.data.modality not in config.modalities:
            raise ConfigError(f"{src}: data.modality: {config.data.modality!r} is not one of the configured "
                              f"modalities {list(config.modalities)}")


def check_distill(config: Config) -> None:
    """The ``distill`` section of a run that turns it on (``distill.start_step`` set)."""
    src, d = config.source, config.distill
    if config.stage != "flow":
        raise ConfigError(f"{src}: distill.start_step: on-policy distillation is part of the flow stage, "
                          f"not stage {config.stage!r}")
    if d.start_step < 0 or d.samples < 1 or d.states < 1:
        raise ConfigError(f"{src}: distill.start_step must be >= 0 and distill.samples, distill.states >= 1, "
                          f"got {d.start_step}, {d.samples}, {d.states}")
    if not 0 < d.t_max <= 1 or d.weight < 0:
        raise ConfigError(f"{src}: distill.t_max must be in (0, 1] and distill.weight >= 0, got {d.t_max}, {d.weight}")
    if d.lr is not None and not d.lr > 0:
        raise ConfigError(f"{src}: distill.lr must be > 0 (or null: train.lr's schedule), got {d.lr}")
    if d.ema is not None and not 0 <= d.ema < 1:
        raise ConfigError(f"{src}: distill.ema is a decay in [0, 1) (or null: train.ema), got {d.ema}")
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
    for key in ("pairs", "steps"):
        if getattr(rf, key) < 1:
            raise ConfigError(f"{src}: reflow.{key} must be >= 1, got {getattr(rf, key)}")
    conditions, anys = config.names("condition"), config.names("any")
    if rf.cfg is not None:
        if not conditions:
            raise ConfigError(f"{src}: reflow.cfg: the run has no 'condition' modality, so there is nothing to "
                              "guide; remove reflow.cfg")
        if not rf.cfg > 0:
            raise ConfigError(f"{src}: reflow.cfg is the teacher's guidance weight and must be > 0 "
                              f"(1 = plain conditional), got {rf.cfg}")
    if conditions and anys:
        raise ConfigError(f"{src}: modalities.{anys[0]}.role: conditional reflow draws the 'condition' modalities "
                          f"from data and generates the rest jointly, which an 'any' modality does not fit (its "
                          f"other directions would train on noise that is not independent of what they are "
                          f"given); make {anys[0]!r} 'generate' or 'condition' for the reflow stage")


def dump(config: Config) -> str:
    return yaml.safe_dump(config.to_dict(), sort_keys=False)


# ----------------------------------------------------------------------------- typing


def _build(cls: type, raw: Mapping[str, Any], prefix: str, source: str, prebuilt: set[str] = frozenset()):
    if not isinstance(raw, Mapping):
        raise ConfigError(f"{source}: {prefix or 'the config'} must be a mapping, got {raw!r}")
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls) if f.name != "source"}
    kwargs = {}
    for key, value in raw.items():
        where = f"{prefix}.{key}" if prefix else str(key)
        if key not in fields:
            raise ConfigError(f"{source}: unknown key {where!r}; known keys here: {sorted(fields)}")
        if key in prebuilt:
            kwargs[key] = value
        elif dataclasses.is_dataclass(hints[key]):
            kwargs[key] = _build(hints[key], value if value is not None else {}, where, source)
        else:
            kwargs[key] = _coerce(value, hints[key], where, source)
    missing = [n for n, f in fields.items() if n not in kwargs and f.default is dataclasses.MISSING
               and f.default_factory is dataclasses.MISSING]
    if missing:
        where = f"{prefix}.{missing[0]}" if prefix else missing[0]
        raise ConfigError(f"{source}: missing key {where!r}")
    return cls(**kwargs)


def _coerce(value: Any, hint: Any, where: str, source: str) -> Any:
    """``value`` if it fits ``hint`` (ints are accepted as floats), else a ConfigError."""
    origin = typing.get_origin(hint)
    args = typing.get_args(hint)
    if hint is Any:
        return value
    if origin is Literal:
        if value not in args:
            raise ConfigError(f"{source}: {where} must be one of {list(args)}, got {value!r}")
        return value
    if origin in (Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        errors = []
        for arm in (a for a in args if a is not type(None)):
            try:
                return _coerce(value, arm, where, source)
            except ConfigError as exc:
                errors.append(exc)
        raise errors[0] if len(errors) == 1 else ConfigError(
            f"{source}: {where} must be {_describe(hint)}, got {value!r}")
    if origin is list:
        if not isinstance(value, list):
            raise ConfigError(f"{source}: {where} must be a list, got {value!r}")
        return [_coerce(v, args[0], f"{where}[{i}]", source) for i, v in enumerate(value)]
    if origin is dict:
        if value is None:
            return {}
        if not isinstance(value, dict):
            raise ConfigError(f"{source}: {where} must be a mapping, got {value!r}")
        return {str(k): _coerce(v, args[1], f"{where}.{k}", source) for k, v in value.items()}
    if hint is float:
        if isinstance(value, str):  # YAML 1.1 reads 1e-3 (no dot) as a string
            try:
                return float(value)
            except ValueError:
                pass
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{source}: {where} must be a number, got {value!r}")
        return float(value)
    if hint is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{source}: {where} must be an integer, got {value!r}")
        return value
    if hint is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{source}: {where} must be true or false, got {value!r}")
        return value
    if hint is str:
        if not isinstance(value, str):
            raise ConfigError(f"{source}: {where} must be a string, got {value!r}")
        return value
    raise ConfigError(f"{source}: {where}: cannot check type {hint!r}")  # a schema bug, not a user error


def _describe(hint: Any) -> str:
    args = [a for a in typing.get_args(hint) if a is not type(None)]
    names = {int: "an integer", float: "a number", str: "a string", bool: "true/false"}
    return " or ".join(names.get(a, str(a)) for a in args) + (" or null" if type(None) in typing.get_args(hint) else "")
