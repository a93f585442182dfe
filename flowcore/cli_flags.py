"""Flags of the command line, one definition for the core's commands and every plugin's.

    add_sampling_flags(parser)                              --steps --solver --seed --device
    add_sampling_flags(parser, SOLVE_FLAGS + ("cfg", "shift"))   ... --cfg --shift
    sampling_overrides(args) -> {"steps": 4}                only the flags the user gave
    add_trust_flag(parser)                                  --trust-run-code, for a command that opens a run

Every flag defaults to "not given" (None), so a run's ``sample`` section supplies the rest and
the overrides can be passed on as keyword arguments. Imports no torch: parsers are built for
``flowcore --help``.
"""

from __future__ import annotations

import argparse
from typing import Any, Sequence

from flowcore.flow.names import SOLVER_NAMES


def _device(name: str) -> str:
    """``--device``: a torch device name, and a CUDA device only where there is one."""
    kind, _, index = name.partition(":")
    if kind not in ("cpu", "cuda", "mps", "xpu") or (index and not index.isdigit()):
        raise argparse.ArgumentTypeError(f"{name!r}: give cpu, cuda, cuda:N or mps")
    if kind == "cuda":
        import torch  # lazy: only when a CUDA device is asked for, so --help stays torch-free

        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if int(index or 0) >= count:
            raise argparse.ArgumentTypeError(f"{name!r}: this machine has {count or 'no'} CUDA device"
                                             f"{'s' if count != 1 else ''}; use --device cpu"
                                             + (f" or cuda:0 … cuda:{count - 1}" if count else ""))
    return name


def _cfg(text: str) -> float | dict[str, float]:
    """``--cfg``: one weight for every given condition (``3``) or one per condition (``image=2,label=1``)."""
    try:
        if "=" not in text:
            return float(text)
        weights = {}
        for part in text.split(","):
            name, _, value = part.partition("=")
            if not name.strip() or name.strip() in weights:
                raise ValueError
            weights[name.strip()] = float(value)
        return weights
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r}: give one weight (3) or one per condition "
                                         "(image=2,label=1)") from None


#: the flags every sampling command takes
SOLVE_FLAGS = ("steps", "solver", "seed", "device")

_FLAGS: dict[str, dict[str, Any]] = {
    "steps": {"type": int, "help": "solver steps (default: the run's sample.steps)"},
    "solver": {"choices": SOLVER_NAMES, "metavar": "SOLVER",
               "help": f"{', '.join(SOLVER_NAMES)} (default: the run's sample.solver)"},
    "seed": {"type": int, "help": "noise seed; the same seed gives the same samples on CPU (default 0)"},
    "device": {"type": _device, "help": "cpu, cuda, cuda:1 … (default: cuda when available)"},
    "cfg": {"type": _cfg, "metavar": "W|MOD=W,...",
            "help": "guidance weight of every given condition (3), or per condition (image=2,label=1); "
                    "default: the run's sample.cfg"},
    "shift": {"type": float, "help": "time-grid shift (default: the run's sample.shift)"},
    "quiet": {"action": "store_true", "default": None, "help": "print no progress"},
}
#: every flag add_sampling_flags knows, in the order they are added
SAMPLING_FLAGS = tuple(_FLAGS)


def add_sampling_flags(parser: argparse.ArgumentParser, flags: Sequence[str] = SOLVE_FLAGS) -> None:
    """Add ``--<name>`` for each of ``flags`` (names from :data:`SAMPLING_FLAGS`) to ``parser``."""
    unknown = [name for name in flags if name not in _FLAGS]
    if unknown:
        raise ValueError(f"no sampling flag {unknown}; choose from {list(SAMPLING_FLAGS)}")
    for name in flags:
        parser.add_argument(f"--{name}", **_FLAGS[name])


def sampling_overrides(args: argparse.Namespace) -> dict[str, Any]:
    """``{flag: value}`` of the sampling flags the user gave, e.g. ``{"steps": 4, "solver": "heun"}``."""
    return {name: value for name in SAMPLING_FLAGS if (value := getattr(args, name, None)) is not None}


def add_trust_flag(parser: argparse.ArgumentParser, run: str | None = "checkpoint") -> None:
    """Add ``--trust-run-code`` to a command whose argument ``run`` (its dest) is a run directory.

    With the flag, ``flowcore.cli.main`` registers the plugins that run's config names before the
    command runs, so every ``flowcore.load`` of it in the command finds them; without it a run
    whose config names plugins that are not installed is refused with one line naming them.
    ``run=None``: the command gives the trust itself (``flowcore train`` to a reflow teacher).
    """
    parser.add_argument("--trust-run-code", action="store_true",
                        help="run the plugin code (.py files, modules) the run's config.yaml names under plugins:; "
                             "a run directory from elsewhere is code then, so only for runs you trust")
    parser.set_defaults(trusted_run=run)
