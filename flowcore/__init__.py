"""flowcore: a modality-agnostic rectified-flow framework with plugins.

Importing this package is cheap (no torch): the CLI and plugin discovery rely on it.
``flowcore.load(run_dir)`` imports the inference stack when it is called.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from flowcore.train.inference import FlowPipeline

__version__ = "0.1.0"


def load(run_dir: Any, device: Any = None, registry: Any = None, trust_run_code: bool = False) -> FlowPipeline:
    """A trained run as a :class:`~flowcore.train.inference.FlowPipeline` (``generate``, ``invert``,
    ``encode``/``decode``); see docs/python.md. ``trust_run_code``: run the plugin code the run's
    config names (its ``plugins:`` that are not installed plugins); only for runs you trust."""
    # lazy: `import flowcore` stays free of torch; the inference stack loads on the first call
    from flowcore.train.inference import load as load_run

    return load_run(run_dir, device=device, registry=registry, trust_run_code=trust_run_code)
