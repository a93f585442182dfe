"""What a plugin's hook returns: specs, plain data that imports neither torch nor the plugin.

A :class:`ModalitySpec` names a modality, its lazy factory, its datasets and the pydantic
model of its options; ``spec.build(**options)`` checks the options against that model and
only then imports the factory. The CLI checks a whole config against these models before
torch is imported (flowcore/train/config.py). :mod:`flowcore.modality` re-exports them.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable, Mapping

from pydantic import BaseModel

from flowcore.errors import DataError, PluginError
from flowcore.modality import Modality
from flowcore.schema import validate

if TYPE_CHECKING:
    from torch.utils.data import Dataset

NAME_CHARS = set("abcdefghijklmnopqrstuvwxyz0123456789_")


def check_name(name: str, what: str) -> str:
    """Names are lower-case identifiers: they appear in configs, CLI flags and file names."""
    if not isinstance(name, str) or not name or not set(name) <= NAME_CHARS or name[0].isdigit():
        raise PluginError(f"{what} name {name!r} must be a lower-case identifier ([a-z0-9_]+)")
    return name


def resolve(target: str | Callable[..., Any]) -> Callable[..., Any]:
    """Turn ``"package.module:attr"`` into the object it names (imported now), or pass a callable."""
    if callable(target):
        return target
    module_name, _, attr = target.partition(":")
    try:
        obj: Any = importlib.import_module(module_name)
        for part in attr.split(".") if attr else []:
            obj = getattr(obj, part)
    except Exception as exc:  # the plugin's own import error, kept whole in the chain
        raise PluginError(f"cannot import {target!r}: {type(exc).__name__}: {exc}") from exc
    return obj


def checked_options(model: type[BaseModel] | None, options: Mapping[str, Any], source: str, prefix: str = "",
                    overridden: tuple[str, ...] = ()) -> dict[str, Any]:
    """``options`` validated by ``model``, with its defaults, as plain data (what the factory gets).

    Without a model the options pass as given (the factory's own signature is the check).
    A bad option is a ConfigError naming ``prefix.<option>`` and ``source`` (see flowcore.schema).
    """
    if model is None:
        return dict(options)
    return validate(model, dict(options), source, prefix, overridden).model_dump(mode="json", by_alias=True)


@dataclass(frozen=True)
class DatasetSpec:
    """A named dataset a plugin offers. It ships with a package or is generated; never downloaded.

    ``factory(split, **options)`` returns a ``torch.utils.data.Dataset`` whose items are dicts
    ``{modality name: sample}`` (a paired dataset yields several keys, e.g. image and label).
    ``options`` is the pydantic model of the options (the config's ``data.options``); keep it
    in a module without torch so that a config is checked before torch is imported.
    """

    name: str
    modalities: tuple[str, ...]
    factory: str | Callable[..., Dataset]
    description: str = ""
    #: what must be installed for it (shown by ``flowcore plugins``), e.g. a Debian package
    requires: str = ""
    splits: tuple[str, ...] = ("train", "val", "test")
    options: type[BaseModel] | None = None

    def __post_init__(self) -> None:
        check_name(self.name, "dataset")
        if not self.modalities:
            raise PluginError(f"dataset {self.name!r} names no modality")
        for m in self.modalities:
            check_name(m, f"dataset {self.name!r} modality")
        _check_model(self.options, f"dataset {self.name!r}")

    def build(self, split: str = "train", **options: Any) -> Dataset:
        if split not in self.splits:
            raise DataError(f"dataset {self.name!r} has no split {split!r}; it has {self.splits}")
        options = checked_options(self.options, options, f"dataset {self.name!r}")
        return resolve(self.factory)(split=split, **options)


@dataclass(frozen=True)
class ModalitySpec:
    """What a plugin's hook returns: a name, a lazy factory, and what the modality offers.

    ``factory(**options)`` builds the :class:`~flowcore.modality.Modality` (options come from
    the config's ``modalities.<name>`` section, checked by the pydantic model ``options``).
    Give the factory as ``"package.module:attr"`` and the model from a module without torch,
    so that discovery and config checks do not import the plugin's heavy dependencies.
    """

    name: str
    factory: str | Callable[..., Modality]
    description: str = ""
    datasets: tuple[DatasetSpec, ...] = ()
    metrics: tuple[str, ...] = ()
    has_codec: bool = False
    has_autoencoder: bool = False
    extra: Mapping[str, Any] = field(default_factory=dict)
    options: type[BaseModel] | None = None

    def __post_init__(self) -> None:
        check_name(self.name, "modality")
        if not (callable(self.factory) or (isinstance(self.factory, str) and ":" in self.factory)):
            raise PluginError(
                f"modality {self.name!r}: factory must be a callable or 'module:attr', "
                f"got {self.factory!r}"
            )
        for d in self.datasets:
            if not isinstance(d, DatasetSpec):
                raise PluginError(f"modality {self.name!r}: datasets must be DatasetSpec, got {d!r}")
        _check_model(self.options, f"modality {self.name!r}")

    def build(self, **options: Any) -> Modality:
        options = checked_options(self.options, options, f"modality {self.name!r}")
        modality = resolve(self.factory)(**options)
        if not isinstance(modality, Modality):
            raise PluginError(
                f"modality {self.name!r}: factory returned {type(modality).__name__}, "
                "not a flowcore.modality.Modality"
            )
        modality.name = self.name
        return modality


def _check_model(model: Any, what: str) -> None:
    if model is not None and not (isinstance(model, type) and issubclass(model, BaseModel)):
        raise PluginError(f"{what}: options must be a pydantic model class (flowcore.schema.Options), got {model!r}")


__all__ = ["DatasetSpec", "ModalitySpec", "check_name", "resolve", "checked_options"]
