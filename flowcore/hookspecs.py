"""The flowcore plugin contract: every hook a plugin may implement, and nothing else.

A plugin is a module named by an entry point in the group ``flowcore``::

    [project.entry-points.flowcore]
    image = "flowcore_image.plugin"

whose functions are marked with ``flowcore.hookspecs.hookimpl``. Keep that module tiny: it
returns specs (plain data with lazy ``"module:attr"`` factories) so that ``flowcore plugins``
and ``flowcore --help`` never import torch models, trimesh or librosa.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import pluggy

if TYPE_CHECKING:
    import argparse

    from flowcore.spec import ModalitySpec

PROJECT = "flowcore"

hookspec = pluggy.HookspecMarker(PROJECT)
hookimpl = pluggy.HookimplMarker(PROJECT)


@hookspec
def flowcore_modalities() -> list[ModalitySpec]:
    """Return the modalities this plugin offers.

    Each :class:`~flowcore.modality.ModalitySpec` carries a unique name, a lazy factory that
    builds the :class:`~flowcore.modality.Modality`, and the named datasets that come with it.
    A name another plugin already registered is refused (the first one wins) and reported.
    """


@hookspec
def flowcore_add_commands(subparsers: argparse._SubParsersAction) -> None:
    """Add subcommands to the ``flowcore`` CLI (``subparsers.add_parser(...)``).

    Each parser must ``set_defaults(func=callable)``; the callable gets the parsed
    ``argparse.Namespace`` and returns an exit code.
    """
