"""Sampling flags: every solver the core has, only the flags given, and no torch to build a parser."""

import argparse
import subprocess
import sys

import pytest

from flowcore.cli_flags import SAMPLING_FLAGS, SOLVE_FLAGS, add_sampling_flags, sampling_overrides
from flowcore.flow.names import SOLVER_NAMES


def parser(flags=SAMPLING_FLAGS) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser()
    add_sampling_flags(p, flags)
    return p


def test_solver_names_are_the_solver_registry():
    from flowcore.flow.solvers import SOLVERS

    assert SOLVER_NAMES == tuple(SOLVERS)


def test_solver_help_lists_every_solver():
    text = parser(SOLVE_FLAGS).format_help()
    assert all(name in text for name in SOLVER_NAMES) and "euler_sde" in text


def test_overrides_hold_only_the_flags_given():
    p = parser()
    assert sampling_overrides(p.parse_args([])) == {}
    args = p.parse_args(["--steps", "4", "--solver", "euler_sde", "--seed", "0", "--cfg", "2.5", "--quiet"])
    assert sampling_overrides(args) == {"steps": 4, "solver": "euler_sde", "seed": 0, "cfg": 2.5, "quiet": True}


def test_only_the_named_flags_are_added():
    p = parser(("cfg",))
    assert sampling_overrides(p.parse_args(["--cfg", "3"])) == {"cfg": 3.0}
    with pytest.raises(SystemExit):
        p.parse_args(["--steps", "4"])


def test_an_unknown_solver_or_flag_is_refused():
    with pytest.raises(SystemExit):
        parser().parse_args(["--solver", "eular"])
    with pytest.raises(ValueError, match="no sampling flag"):
        add_sampling_flags(argparse.ArgumentParser(), ("stpes",))


def test_building_the_flags_imports_no_torch():
    code = ("import argparse, sys; from flowcore.cli_flags import add_sampling_flags; "
            "add_sampling_flags(argparse.ArgumentParser()); assert 'torch' not in sys.modules")
    subprocess.run([sys.executable, "-c", code], check=True)
