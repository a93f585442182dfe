"""Training-side subcommands of the ``flowcore`` CLI (train, sample, eval, reflow, invert).

Each handler imports torch/lightning only when it runs, so ``flowcore --help`` stays fast.
The training-pipeline work fills these in; until then they are not registered.
"""

from __future__ import annotations

import argparse


def add_commands(sub: argparse._SubParsersAction) -> None:
    """Register the training-side subcommands on the CLI's subparsers."""
