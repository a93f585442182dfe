"""A trained run loaded for inference: ``flowcore.load(run_dir)`` -> :class:`FlowPipeline`.

The pipeline holds what sampling needs and nothing of training: the sampling network (the EMA
weights a run exports), the modality bundles with their autoencoders, the run's config and its
:class:`SamplingOptions`. It never builds the Lightning module, an optimizer, an EMA copy or a
distiller. ``flowcore sample``, ``flowcore eval``, ``flowcore invert``, ``flowcore edit`` and the
plugins' scoring commands are thin layers over it::

    pipe = flowcore.load("runs/mnist", device="cuda")
    images = pipe.generate(make="image", given={"label": [3, 1, 4]}, steps=8, cfg=2.0)["image"]
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Sequence

import torch
from torch import nn
from tqdm import tqdm

from flowcore.errors import ConfigError, DataError, NonFiniteError
from flowcore.modality import Tokens
from flowcore.registry import get_registry
from flowcore.train import checkpoint as ckpt
from flowcore.train.bundle import Bundle, build_bundles
from flowcore.train.config import Config, parse_direction
from flowcore.train.edit import edit
from flowcore.train.networks import build_network
from flowcore.train.objective import FlowObjective
from flowcore.train.sampling import SamplingOptions, generate, invert, read_given, tokens_of


def device_for(name: str | torch.device | None) -> torch.device:
    """``name``, else CUDA when there is one, else the CPU. A CUDA device this machine lacks is a ConfigError."""
    if name:
        device = torch.device(name)
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if device.type == "cuda" and (device.index or 0) >= count:
            raise ConfigError(f"device {str(name)!r}: this machine has {count or 'no'} CUDA device"
                              f"{'s' if count != 1 else ''}; use device='cpu' (or leave it out: CUDA when present)")
        return device
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


@dataclass
class Inversion:
    """What :meth:`FlowPipeline.invert` returns: the noise, the regeneration from it, its RMS error."""

    noise: torch.Tensor  # [B, L, C] tokens of prior noise
    reconstruction: list[Any]  # samples regenerated from ``noise``
    rms_error: float


class FlowPipeline:
    """A flow run's sampling network, modality bundles and sampling options (module docstring)."""

    def __init__(self, config: Config, net: nn.Module, bundles: Mapping[str, Bundle], directory: Path,
                 device: torch.device):
        self.config, self.net, self.bundles = config, net, dict(bundles)
        self.directory, self.device = directory, device
        self.options = SamplingOptions.from_config(config)

    @property
    def modalities(self) -> list[str]:
        return list(self.bundles)

    # -- per-modality codec path -------------------------------------------------------

    def encode(self, modality: str, samples: Any) -> Tokens:
        """Samples (a list, one sample, or a file / literal the CLI's ``--given`` takes) -> tokens."""
        return tokens_of(self._bundle(modality), self.read(modality, samples), self.device)

    def decode(self, modality: str, tokens: Tokens) -> list[Any]:
        """Tokens -> samples on the CPU (what the modality's codec writes)."""
        return self._bundle(modality).samples(tokens)

    def read(self, modality: str, samples: Any) -> list[Any]:
        """A list of samples as given; a str/Path read as ``--given`` reads it; anything else is one sample."""
        bundle = self._bundle(modality)
        if isinstance(samples, (str, Path)):
            return read_given(bundle, str(samples))
        if isinstance(samples, (list, tuple)):
            return [bundle.modality.validate(s, f"{modality} sample {i}") for i, s in enumerate(samples)]
        return [bundle.modality.validate(samples, modality)]

    # -- generation and inversion ------------------------------------------------------

    def sampling_options(self, **overrides: Any) -> SamplingOptions:
        """The run's sampling options with ``overrides`` (None keeps the run's value)."""
        return self.options.replace(**overrides)

    def direction_cfg(self, make: Sequence[str], given: Sequence[str]) -> float | dict[str, float] | None:
        """``sample.cfg_by_direction``'s guidance for making ``make`` given ``given``; None: ``sample.cfg``."""
        def key(m: Sequence[str], g: Sequence[str]) -> tuple[frozenset, frozenset]:
            return frozenset(m), frozenset(g)

        by_key = {key(*parse_direction(k)): w for k, w in self.config.sample.cfg_by_direction.items()}
        return by_key.get(key(make, given))

    def given_tokens(self, given: Mapping[str, Sequence[Any]], start: int, stop: int) -> dict[str, Tokens]:
        """Tokens of samples ``start:stop`` of each given modality (a single sample is repeated)."""
        return {n: tokens_of(self.bundles[n], list(s) * (stop - start) if len(s) == 1 else list(s[start:stop]),
                             self.device) for n, s in given.items()}

    def generate(self, make: str | Sequence[str], given: Mapping[str, Any] | None = None,
                 count: int | None = None, *, via: str | Sequence[str] = (), batch_size: int | None = None,
                 progress: bool = False, decode: bool = True,
                 **overrides: Any) -> dict[str, list[Any]] | dict[str, Tokens]:
        """``{modality: samples}`` for each of ``make``, given ``{modality: samples}``.

        ``given`` values: a list of samples (one is repeated ``count`` times), one sample, or a
        file the modality's codec reads. ``count``: default the given samples' count, else
        ``sample.count``. ``overrides``: any :class:`SamplingOptions` field (steps, solver,
        solver_options, cfg as a number or ``{condition: weight}`` (default: ``sample.cfg_by_direction``'s
        for this direction, else ``sample.cfg``; with ``via``, each pass its own), shift, seed, unaided).
        ``batch_size``: samples per network batch (default all at once); batch k is drawn with
        seed ``seed + k * batch_size``. ``decode=False`` returns the made tokens in one batch.

        ``via``: modalities made first, from ``given`` alone, then given (as their decoded
        samples, re-encoded) while ``make`` is made: audio from an image via the label the image
        reads as. They are returned beside ``make``; their pass draws with seed ``seed + 2**32``.
        """
        make = [make] if isinstance(make, str) else list(make)
        via = [via] if isinstance(via, str) else list(via)
        given_samples = {n: self.read(n, s) for n, s in (given or {}).items()}
        options = self.sampling_options(**overrides)
        own_cfg = overrides.get("cfg") is None  # each pass takes its direction's sample.cfg_by_direction
        self.check_roles(make + via, list(given_samples))
        if set(via) & set(make):
            raise ConfigError(f"modality {sorted(set(via) & set(make))[0]!r} is both made and made via")
        if count is None:
            count = max((len(s) for s in given_samples.values()), default=self.config.sample.count)
        for name, samples in given_samples.items():
            if len(samples) not in (1, count):
                raise DataError(f"given {name!r}: {len(samples)} samples, but {count} are to be generated "
                                f"(give 1 or {count})")
        if not decode:
            return self._made(make, via, self.given_tokens(given_samples, 0, count), count, options, own_cfg)
        batch_size = batch_size or count
        made: dict[str, list[Any]] = {m: [] for m in via + make}
        with tqdm(total=count, desc="sampling", unit="sample", disable=not progress, file=sys.stderr) as bar:
            for start in range(0, count, batch_size):
                stop = min(count, start + batch_size)
                out = self._made(make, via, self.given_tokens(given_samples, start, stop), stop - start,
                                 options.replace(seed=options.seed + start), own_cfg)
                for m in via + make:
                    made[m] += self.bundles[m].samples(out[m])
                bar.update(stop - start)
        return made

    def _made(self, make: list[str], via: list[str], given: dict[str, Tokens], count: int,
              options: SamplingOptions, own_cfg: bool = False) -> dict[str, Tokens]:
        """One batch of ``make`` (and first ``via``, then given as the codec would read it back).

        ``own_cfg``: each pass is guided as ``sample.cfg_by_direction`` sets for its own direction
        (``via`` given ``given``, then ``make`` given both), where it does."""
        def guided(m: list[str], g: list[str], o: SamplingOptions) -> SamplingOptions:
            cfg = self.direction_cfg(m, g) if own_cfg else None
            return o if cfg is None else o.replace(cfg=cfg)

        out: dict[str, Tokens] = {}
        if via:
            first = guided(via, list(given), options.replace(seed=options.seed + 2**32))
            out = self.finite(generate(self.net, self.bundles, via, given, count, first, self.device), first)
            given = {**given, **{v: tokens_of(self.bundles[v], self.bundles[v].samples(out[v]), self.device)
                                 for v in via}}
        then = guided(make, list(given), options)
        return {**out, **self.finite(generate(self.net, self.bundles, make, given, count, then, self.device), then)}

    def finite(self, made: dict[str, Tokens], options: SamplingOptions) -> dict[str, Tokens]:
        """``made``, unless the real tokens of a modality hold NaN or infinity (:class:`NonFiniteError`)."""
        for m, tokens in made.items():
            if not bool(tokens.values[tokens.mask].isfinite().all()):
                raise NonFiniteError(f"{self.directory}: the generated {m!r} samples hold NaN or infinite values "
                                     f"(solver {options.solver}, {options.steps} steps, cfg {options.cfg}): the "
                                     "network's velocities blow up. Check the run's training loss (logs/metrics.csv; "
                                     "a run that diverged needs training again), or try a lower --cfg, more --steps "
                                     "or another --solver")
        return made

    def invert(self, modality: str, samples: Any, given: Mapping[str, Any] | None = None,
               **overrides: Any) -> Inversion:
        """Samples -> the noise the flow maps to them, and the regeneration from that noise."""
        bundle = self._bundle(modality)
        items = self.read(modality, samples)
        given_samples = {n: self.read(n, s) for n, s in (given or {}).items()}
        for name, cond in given_samples.items():
            if len(cond) not in (1, len(items)):
                raise DataError(f"given {name!r}: {len(cond)} samples for {len(items)} to invert "
                                f"(give 1 or {len(items)})")
        data = {modality: tokens_of(bundle, items, self.device)}
        given_tokens = self.given_tokens(given_samples, 0, len(items))
        eps, back, errors = invert(self.net, self.bundles, data, given_tokens, self.sampling_options(**overrides))
        return Inversion(eps[modality], bundle.samples(back[modality]), errors[modality])

    def edit(self, modality: str, samples: Any, source: Mapping[str, Any], target: Mapping[str, Any], *,
             strength: float = 1.0, inject: int = 0, inject_modules: Sequence[str] = (), method: str = "inversion",
             average: int = 1, decode: bool = True, **overrides: Any) -> list[Any] | Tokens:
        """``samples`` of ``modality`` inverted under the conditions ``source`` and regenerated under ``target``
        (flowcore.train.edit): ``{condition: samples}`` each, one sample (repeated) or one per input.

        ``overrides``: steps, solver (euler, rf_solver, fireflow, ...), cfg (applied to the target
        only), shift, seed. ``strength`` in (0, 1]: the time the inversion reaches. ``inject``: the
        first denoising steps that get the source outputs of ``inject_modules`` (submodule names
        of ``self.net``). ``method``: ``inversion`` or ``flowedit`` (no inversion; ``average`` noise
        draws per step). Returns the edited samples (tokens with ``decode=False``).
        """
        bundle = self._bundle(modality)
        items = self.read(modality, samples)
        sides = []
        for side, given in (("source", source), ("target", target)):
            read = {n: self.read(n, s) for n, s in given.items()}
            self.check_roles([modality], list(read))
            for name, cond in read.items():
                if len(cond) not in (1, len(items)):
                    raise DataError(f"edit {side} {name!r}: {len(cond)} samples for {len(items)} to edit "
                                    f"(give 1 or {len(items)})")
            sides.append(self.given_tokens(read, 0, len(items)))
        if set(sides[0]) != set(sides[1]):
            raise ConfigError(f"edit: source conditions {sorted(sides[0])} and target conditions {sorted(sides[1])} "
                              "must name the same modalities")
        data = {modality: tokens_of(bundle, items, self.device)}
        options = self.sampling_options(**overrides)
        out, _ = edit(self.net, self.bundles, data, sides[0], sides[1], options, strength=strength, inject=inject,
                      inject_modules=inject_modules, method=method, average=average)
        made = self.finite(out, options)
        return bundle.samples(made[modality]) if decode else made[modality]

    @torch.no_grad()
    def loss(self, items: Mapping[str, Sequence[Any]], seed: int = 0) -> float:
        """The training loss (``flowcore.flow.loss``) of the sampling network on ``{modality: samples}``,
        with noise and times drawn from ``seed``."""
        torch.manual_seed(seed)
        x0 = {n: tokens_of(b, items[n], self.device) for n, b in self.bundles.items()}
        return float(FlowObjective(self.config, self.bundles)(self.net, x0).loss)

    def check_roles(self, make: Sequence[str], given: Sequence[str]) -> None:
        """``make`` were trained to be generated and ``given`` to be given; none is both."""
        roles = {n: m.role for n, m in self.config.modalities.items()}
        for name in [*make, *given]:
            self._bundle(name)
        for name in make:
            if roles[name] == "condition":
                raise ConfigError(f"{self.directory}: {name!r} has role 'condition' in this run; it was never "
                                  "generated (train it with role 'generate' or 'any')")
        for name in given:
            if roles[name] == "generate":
                raise ConfigError(f"{self.directory}: {name!r} has role 'generate' in this run; it was never given "
                                  "as a condition (train it with role 'condition' or 'any')")
        overlap = set(make) & set(given)
        if overlap:
            raise ConfigError(f"modality {sorted(overlap)[0]!r} is both made and given")

    def _bundle(self, name: str) -> Bundle:
        if name not in self.bundles:
            raise ConfigError(f"{self.directory}: the run has no modality {name!r}; it has {list(self.bundles)}")
        return self.bundles[name]


def load(run_dir: str | Path, device: str | torch.device | None = None, registry=None,
         trust_run_code: bool = False) -> FlowPipeline:
    """A flow run directory (``model.safetensors`` + ``config.yaml``) as a :class:`FlowPipeline`.

    ``device``: default CUDA when there is one. No Lightning checkpoint is needed or read.
    ``trust_run_code``: run the ``plugins:`` the run's config names that are not installed plugins
    (code that came with the run); without it such a run is a ConfigError naming them.
    """
    registry = registry or get_registry()
    run_dir = ckpt.run_directory(run_dir)
    config = ckpt.run_config(run_dir, registry, trust_run_code=trust_run_code)
    if config.stage == "autoencoder":
        raise ConfigError(f"{run_dir}: an autoencoder run has no flow to sample; point at a flow run")
    weights = run_dir / ckpt.WEIGHTS
    if not weights.is_file():
        raise ConfigError(f"{weights} does not exist; the run has not exported weights yet")
    ckpt.check_versions(run_dir, registry)
    bundles = build_bundles(config, registry, load_autoencoders=False)
    for name, b in bundles.items():
        if b.autoencoder is not None:
            b.autoencoder.load_state_dict(ckpt.read_weights(weights, f"autoencoders.{name}."))
    net = build_network(config, {n: b.modality for n, b in bundles.items()})
    net.load_state_dict(ckpt.read_weights(weights, "net."))
    bad = ckpt.first_nonfinite({"net": net.state_dict(), "autoencoders": {
        n: b.autoencoder.state_dict() for n, b in bundles.items() if b.autoencoder is not None}})
    if bad is not None:
        raise NonFiniteError(f"{weights}: {bad} holds NaN or infinite values: the run diverged in training and "
                             "has nothing to sample. Train it again with a lower train.lr (flowcore train stops at "
                             "a non-finite loss before it writes such weights)")
    dev = device_for(device)
    net.to(dev).eval().requires_grad_(False)
    for b in bundles.values():
        if b.autoencoder is not None:
            b.autoencoder.to(dev)
    return FlowPipeline(config, net, bundles, run_dir, dev)
