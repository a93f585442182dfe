"""flowcore: a modality-agnostic rectified-flow framework with plugins.

Importing this package is cheap (no torch): the CLI and plugin discovery rely on it.
"""

__version__ = "0.1.0"
