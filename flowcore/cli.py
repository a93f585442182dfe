"""The ``flowcore`` command. Subcommands import their heavy parts only when they run."""

from __future__ import annotations

import argparse
import sys
import traceback
from typing import Sequence

from flowcore import __version__
from flowcore.errors import FlowcoreError


def _plugins(args: argparse.Namespace) -> int:
    from flowcore.registry import get_registry

    registry = get_registry()
    if args.name:
        return _plugin_show(registry, args.name)
    rows = [("plugin", "version", "modalities", "datasets", "status")]
    for p in registry.plugins:
        rows.append((p.name, p.version or "-", ",".join(p.modalities) or "-",
                     ",".join(p.datasets) or "-", "ok" if p.failure is None else f"ERROR: {p.failure}"))
    widths = [max(len(r[i]) for r in rows) for i in range(4)]
    for r in rows:
        print("  ".join(c.ljust(w) for c, w in zip(r[:4], widths)) + "  " + r[4])
    return 0 if all(p.failure is None for p in registry.plugins) else 1


def _plugin_show(registry, name: str) -> int:
    matches = [p for p in registry.plugins if p.name == name or name in p.modalities]
    if not matches:
        print(f"no plugin or modality named {name!r}; see `flowcore plugins`", file=sys.stderr)
        return 2
    for p in matches:
        print(f"plugin      {p.name} {p.version}")
        print(f"source      {p.source}")
        print(f"status      {'ok' if p.failure is None else 'ERROR: ' + p.failure}")
        for m in p.modalities:
            spec = registry.modalities[m]
            print(f"\nmodality    {spec.name}: {spec.description}")
            print(f"  codec {'yes' if spec.has_codec else 'no'}, autoencoder {'yes' if spec.has_autoencoder else 'no'}")
            print(f"  metrics   {', '.join(spec.metrics) or '-'}")
            for d in spec.datasets:
                req = f" (needs {d.requires})" if d.requires else ""
                print(f"  dataset   {d.name} [{'+'.join(d.modalities)}]: {d.description}{req}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="flowcore", description="Rectified flows for any modality.")
    parser.add_argument("--version", action="version", version=f"flowcore {__version__}")
    parser.add_argument("--debug", action="store_true", help="print the traceback of an error")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    p = sub.add_parser("plugins", help="list installed plugins, their modalities and datasets")
    p.add_argument("action", nargs="?", choices=["show"], help="show one plugin in detail")
    p.add_argument("name", nargs="?", help="plugin or modality name (with 'show')")
    p.set_defaults(func=_plugins)

    from flowcore import commands

    commands.add_commands(sub)
    from flowcore import scaffold

    scaffold.add_command(sub)
    _plugin_commands(sub)
    for command in sub.choices.values():  # --debug after the command name too (SUPPRESS: no default there)
        try:
            command.add_argument("--debug", action="store_true", default=argparse.SUPPRESS, help=argparse.SUPPRESS)
        except argparse.ArgumentError:
            pass  # a plugin command with a --debug of its own keeps it
    return parser


def _plugin_commands(sub: argparse._SubParsersAction) -> None:
    """Let plugins add subcommands; a failing plugin is warned about in one line, not fatal."""
    from flowcore.registry import get_registry

    for record in get_registry().add_commands(sub):
        print(f"warning: plugin {record.name!r} could not add commands ({record.commands_error}); "
              "see `flowcore plugins`", file=sys.stderr)


def main(argv: Sequence[str] | None = None) -> int:
    """Run one command line; an error is one line on stderr and exit status 2 (a traceback with --debug)."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if getattr(args, "action", None) is None and getattr(args, "name", None) and args.command == "plugins":
        parser.error("use `flowcore plugins show NAME`")
    if not getattr(args, "func", None):
        parser.print_help()
        return 0
    try:
        if getattr(args, "trust_run_code", False) and getattr(args, "trusted_run", None):
            _trust_run(getattr(args, args.trusted_run))
        return int(args.func(args) or 0)
    except FlowcoreError as exc:
        return _error(str(exc), args.debug)
    except Exception as exc:  # a bug, or a bad input nobody turned into a FlowcoreError yet
        return _error(f"{type(exc).__name__}: {_one_line(str(exc))} (run with --debug for the traceback)", args.debug)


def _trust_run(run_dir: str) -> None:
    """``--trust-run-code``: register the plugins the run's config names, so the command can load it."""
    from flowcore.registry import get_registry
    from flowcore.train.checkpoint import run_config

    run_config(run_dir, get_registry(), trust_run_code=True)


def _error(message: str, debug: bool) -> int:
    if debug:
        traceback.print_exc()
    print(f"flowcore: error: {message}", file=sys.stderr)
    return 2


def _one_line(text: str, limit: int = 300) -> str:
    """``text`` on one line, cut at ``limit`` characters (a size-mismatch dump runs to pages)."""
    text = " ".join(text.split())
    return text if len(text) <= limit else text[:limit] + " ..."


if __name__ == "__main__":
    sys.exit(main())
