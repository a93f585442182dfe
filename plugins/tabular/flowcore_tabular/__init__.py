"""flowcore-tabular: mixed-type tables as RecTable-style flows (see docs/plugins/tabular.md)."""

__version__ = "0.1.0"
