"""The plugin's CLI commands: ``flowcore tabular-train`` (epoch budgets) and ``flowcore tabular-impute``.

docs/plugins/tabular.md describes both.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import flowcore
from flowcore.cli_flags import sampling_overrides
from flowcore.errors import ConfigError
from flowcore.train.config import epoch_steps


def train_epochs(args: argparse.Namespace) -> int:
    """Train ``args.config`` for ``args.epochs`` passes over its train rows (at least ``args.min_steps`` steps)."""
    from flowcore.registry import get_registry
    from flowcore.train.pipeline import train
    from flowcore_tabular.budget import load_with_epochs

    registry = get_registry()
    config, rows, extra = load_with_epochs(args.config, args.set or [], args.epochs, args.min_steps, registry,
                                           batch_rule=args.batch_rule)
    tr = config.train
    steps = epoch_steps(rows, tr.epochs, tr.batch_size, tr.min_steps)
    print(f"{rows} train rows x {args.epochs:g} epochs / batch {tr.batch_size}: {steps} steps "
          f"(at least {args.min_steps}): {' '.join(extra)}", flush=True)
    module = train(config, registry, resume=not args.restart)
    if module.global_rank == 0:
        print(f"run directory: {config.out_dir}")
    return 0


def impute_csv(args: argparse.Namespace) -> int:
    """Rows of ``args.given`` (some columns) -> ``<out>/imputed.csv`` (every column)."""
    from flowcore_tabular.impute import impute

    flags = sampling_overrides(args)
    run = flowcore.load(args.checkpoint, device=flags.pop("device", None))
    if args.modality not in run.bundles:
        raise ConfigError(f"{run.directory}: the run has no modality {args.modality!r}; it has {list(run.bundles)}")
    if len(run.bundles) != 1:
        raise ConfigError(f"{run.directory}: tabular-impute needs a run whose only modality is the table; this one "
                          f"has {list(run.bundles)}")
    modality = run.bundles[args.modality].modality
    given, rows = modality.codec.read_columns(Path(args.given))
    flags.pop("quiet", None)
    out = impute(run.net, modality, rows, given, run.sampling_options(**flags), guidance=args.guidance,
                 method=args.method, name=args.modality, device=run.device)
    for path in modality.codec.write_all(out, Path(args.out), "imputed"):
        print(path)
    return 0
