"""flowcore's own exception types. Messages say what went wrong and what to do."""


class FlowcoreError(Exception):
    """Base class of every error flowcore raises on purpose."""


class PluginError(FlowcoreError):
    """A plugin could not be imported, registered, or used."""


class ConfigError(FlowcoreError):
    """A configuration file or override is invalid (the message names the key and file)."""


class DataError(FlowcoreError):
    """An input file or tensor is malformed (the message names the file, field or key)."""


class UnknownNameError(FlowcoreError, KeyError):
    """A modality, dataset, metric, solver... was asked for by a name nobody registered."""

    def __str__(self) -> str:  # KeyError would wrap the message in quotes
        return str(self.args[0]) if self.args else ""


class NonFiniteError(FlowcoreError):
    """A loss, gradient, weight or generated sample is NaN or infinite (the message names which and where)."""
