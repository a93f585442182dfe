"""Name tables: how configs pick a solver, a timestep sampler or a loss weight by name.

One lookup for all of them, so an unknown name or a bad option reads the same everywhere.
"""

from __future__ import annotations

from typing import Callable, Mapping, TypeVar

from flowcore.errors import ConfigError, UnknownNameError

T = TypeVar("T")

#: the keys of flowcore.flow.solvers.SOLVERS, importable without torch (command-line help and
#: choices); tests/test_cli_flags.py keeps the two equal
SOLVER_NAMES = ("euler", "midpoint", "heun", "rk4", "dopri5", "fireflow", "euler_sde", "meanflow", "rf_solver")


def lookup(table: Mapping[str, T], kind: str, name: str) -> T:
    """``table[name]``; an unknown name raises UnknownNameError listing the ``kind``'s choices."""
    if name not in table:
        raise UnknownNameError(f"unknown {kind} {name!r}; choose one of {sorted(table)}")
    return table[name]


def build_by_name(table: Mapping[str, Callable[..., T]], kind: str, name: str, **options) -> T:
    """``table[name](**options)``; options the factory does not take raise ConfigError."""
    factory = lookup(table, kind, name)
    try:
        return factory(**options)
    except TypeError as exc:
        raise ConfigError(f"{kind} {name!r}: bad options {options}: {exc}") from exc
