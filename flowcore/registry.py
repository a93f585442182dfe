"""Plugin discovery: entry points in the group ``flowcore``, plus plugins registered in-process.

A plugin that fails to import, whose hook raises, that returns something other than
ModalitySpecs, or that claims a name already taken is refused whole and recorded with its
error; every other plugin still loads. A plugin whose ``flowcore_add_commands`` raises keeps
its modalities but is recorded as broken too. ``flowcore plugins`` shows all of them.
"""

from __future__ import annotations

import importlib
import importlib.metadata as md
import traceback
from dataclasses import dataclass, field
from typing import Any

import pluggy

from flowcore import hookspecs
from flowcore.errors import PluginError, UnknownNameError
from flowcore.modality import Modality
from flowcore.spec import DatasetSpec, ModalitySpec


@dataclass
class PluginRecord:
    """What discovery learned about one plugin."""

    name: str
    version: str = ""
    source: str = ""
    modalities: list[str] = field(default_factory=list)
    datasets: list[str] = field(default_factory=list)
    error: str | None = None
    commands_error: str | None = None

    @property
    def ok(self) -> bool:
        """Loaded: its modalities are registered (its commands may still have failed)."""
        return self.error is None

    @property
    def failure(self) -> str | None:
        """Why ``flowcore plugins`` lists this plugin as broken, or None."""
        if self.error is not None:
            return self.error
        if self.commands_error is not None:
            return f"flowcore_add_commands raised {self.commands_error}"
        return None


class Registry:
    """The modalities and datasets of every loaded plugin."""

    def __init__(self, entry_points: bool = True) -> None:
        self.pm = pluggy.PluginManager(hookspecs.PROJECT)
        self.pm.add_hookspecs(hookspecs)
        self.plugins: list[PluginRecord] = []
        self.modalities: dict[str, ModalitySpec] = {}
        self.owners: dict[str, PluginRecord] = {}
        if entry_points:
            self.load_entry_points()

    # -- discovery ---------------------------------------------------------------------

    def load_entry_points(self) -> None:
        """Import and register every module named in the ``flowcore`` entry-point group."""
        eps = sorted(md.entry_points(group=hookspecs.PROJECT), key=lambda ep: (ep.name != "builtins", ep.name))
        for ep in eps:
            version = ep.dist.version if ep.dist is not None else ""
            record = PluginRecord(name=ep.name, version=version, source=f"entry point {ep.value}")
            try:
                plugin = ep.load()
            except Exception as exc:
                record.error = _describe(exc)
                self.plugins.append(record)
                continue
            self._register(plugin, record)

    def register(self, plugin: Any, name: str | None = None, version: str = "") -> PluginRecord:
        """Register a plugin object or module in-process (tests, notebooks).

        ``plugin`` may be a module, a class instance, or a ``"module"`` import name. The
        returned record says whether it loaded; it never raises for a broken plugin.
        """
        if isinstance(plugin, str):
            record = PluginRecord(name=name or plugin, version=version, source=f"in-process {plugin}")
            try:
                plugin = importlib.import_module(plugin)
            except Exception as exc:
                record.error = _describe(exc)
                self.plugins.append(record)
                return record
        else:
            label = getattr(plugin, "__name__", type(plugin).__name__)
            record = PluginRecord(name=name or label, version=version, source=f"in-process {label}")
        return self._register(plugin, record)

    def _register(self, plugin: Any, record: PluginRecord) -> PluginRecord:
        self.plugins.append(record)
        if any(p is not record and p.ok and p.name == record.name for p in self.plugins):
            record.error = f"a plugin named {record.name!r} is already loaded"
            return record
        try:
            self.pm.register(plugin, name=record.name)
        except Exception as exc:  # pluggy refuses unknown hook names with a clear message
            record.error = _describe(exc)
            return record
        try:
            specs = self._own_modalities(plugin)
            checked = self._check(specs, record)
        except Exception as exc:
            self.pm.unregister(plugin)
            record.error = _describe(exc)
            return record
        for spec in checked:
            self.modalities[spec.name] = spec
            self.owners[spec.name] = record
        record.modalities = [s.name for s in checked]
        record.datasets = [d.name for s in checked for d in s.datasets]
        return record

    def _own_modalities(self, plugin: Any) -> list[Any]:
        """Call one plugin's ``flowcore_modalities`` (so errors are charged to it)."""
        results: list[Any] = []
        for impl in self.pm.hook.flowcore_modalities.get_hookimpls():
            if impl.plugin is plugin:
                out = impl.function()
                if out is None:
                    continue
                if not isinstance(out, (list, tuple)):
                    raise PluginError(
                        f"flowcore_modalities returned {type(out).__name__}, not a list of ModalitySpec")
                results.extend(out)
        return results

    def _check(self, specs: list[Any], record: PluginRecord) -> list[ModalitySpec]:
        seen: set[str] = set()
        datasets = {d.name for s in self.modalities.values() for d in s.datasets}
        for i, spec in enumerate(specs):
            if not isinstance(spec, ModalitySpec):
                raise PluginError(
                    f"flowcore_modalities returned a list whose item {i} is {type(spec).__name__}, "
                    "not a ModalitySpec")
            if spec.name in self.modalities or spec.name in seen:
                owner = self.owners[spec.name].name if spec.name in self.owners else record.name
                raise PluginError(f"modality name {spec.name!r} is already taken by plugin {owner!r}")
            seen.add(spec.name)
            for d in spec.datasets:
                if d.name in datasets:
                    raise PluginError(f"dataset name {d.name!r} is already taken")
                datasets.add(d.name)
        return specs

    def add_commands(self, subparsers: Any) -> list[PluginRecord]:
        """Let every loaded plugin add its CLI subcommands; return the plugins whose hook raised.

        The error goes on the plugin's record (``commands_error``), so ``flowcore plugins``
        lists it as broken; its modalities stay registered.
        """
        failed = []
        for impl in self.pm.hook.flowcore_add_commands.get_hookimpls():
            record = next((p for p in self.plugins if p.ok and p.name == impl.plugin_name), None)
            if record is None:  # put on self.pm directly, not through register()
                record = PluginRecord(name=impl.plugin_name, source="plugin manager")
                self.plugins.append(record)
            record.commands_error = None
            try:
                impl.function(subparsers=subparsers)
            except Exception as exc:
                record.commands_error = _describe(exc)
                failed.append(record)
        return failed

    # -- lookup ------------------------------------------------------------------------

    def spec(self, name: str) -> ModalitySpec:
        try:
            return self.modalities[name]
        except KeyError:
            raise UnknownNameError(
                f"no modality named {name!r}; installed: {sorted(self.modalities)}"
                + self._failed_hint()
            ) from None

    def modality(self, name: str, **options: Any) -> Modality:
        """Build the modality ``name`` with ``options`` (imports its heavy parts now)."""
        return self.spec(name).build(**options)

    def datasets(self) -> dict[str, DatasetSpec]:
        return {d.name: d for s in self.modalities.values() for d in s.datasets}

    def dataset(self, name: str) -> DatasetSpec:
        found = self.datasets()
        if name not in found:
            raise UnknownNameError(f"no dataset named {name!r}; installed: {sorted(found)}" + self._failed_hint())
        return found[name]

    def plugin_of(self, modality: str) -> PluginRecord:
        self.spec(modality)
        return self.owners[modality]

    def versions(self) -> dict[str, str]:
        """Plugin name -> version, for every loaded plugin (stored beside checkpoints)."""
        return {p.name: p.version for p in self.plugins if p.ok}

    def _failed_hint(self) -> str:
        failed = [p.name for p in self.plugins if not p.ok]
        return f" (plugins that failed to load: {failed}; see `flowcore plugins`)" if failed else ""


def _describe(exc: BaseException) -> str:
    last = traceback.extract_tb(exc.__traceback__)[-1:] if exc.__traceback__ else []
    where = f" (at {last[0].filename}:{last[0].lineno})" if last else ""
    message = " ".join(str(exc).split())  # one line: it is a row of `flowcore plugins` and a warning
    return f"{type(exc).__name__}: {message}{where}"


_default: Registry | None = None


def get_registry(refresh: bool = False) -> Registry:
    """The process-wide registry, discovered from entry points on first use."""
    global _default
    if _default is None or refresh:
        _default = Registry()
    return _default
