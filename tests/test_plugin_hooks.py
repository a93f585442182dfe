"""A plugin hook that raises or returns the wrong thing shows up in `flowcore plugins` as broken, in one line."""

import types

import pytest

import flowcore.registry
from flowcore.cli import main
from flowcore.hookspecs import hookimpl
from flowcore.registry import Registry
from flowcore.spec import ModalitySpec


@pytest.fixture
def cli_registry(monkeypatch):
    """A fresh registry that `flowcore.cli.main` uses, so in-process plugins do not leak into other tests."""
    registry = Registry()
    monkeypatch.setattr(flowcore.registry, "_default", registry)
    return registry


def _plugin(name, modalities=None, add_commands_error=None):
    mod = types.ModuleType(name)

    @hookimpl
    def flowcore_modalities():
        return modalities

    mod.flowcore_modalities = flowcore_modalities
    if add_commands_error is not None:
        @hookimpl
        def flowcore_add_commands(subparsers):
            raise add_commands_error

        mod.flowcore_add_commands = flowcore_add_commands
    return mod


def _row(out, plugin):
    return next(line for line in out.splitlines() if line.startswith(plugin + " "))


def test_a_plugin_whose_add_commands_raises_is_listed_broken_and_warned_about_in_one_line(cli_registry, capsys):
    error = RuntimeError("no parser today\nsecond line of the message")
    cli_registry.register(_plugin("cmdbreak", [ModalitySpec("cmdpts", "flowcore.builtins.toy2d:Toy2d")], error))

    assert main(["plugins"]) == 1
    captured = capsys.readouterr()
    row = _row(captured.out, "cmdbreak")
    assert "cmdpts" in row  # its modalities still load: only its commands failed
    assert "ERROR: flowcore_add_commands raised RuntimeError: no parser today second line" in row
    assert "ok" in _row(captured.out, "builtins")

    assert main([]) == 0  # any other command: the same warning, one line, pointing to the listing
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 1
    assert err[0].startswith("warning: plugin 'cmdbreak' could not add commands (RuntimeError: no parser today")
    assert err[0].endswith("see `flowcore plugins`")
    assert "cmdpts" in cli_registry.modalities


def test_a_hook_returning_a_string_is_reported_by_its_type(cli_registry, capsys):
    record = cli_registry.register(_plugin("strplug", "gaussians"))
    assert not record.ok

    assert main(["plugins"]) == 1
    row = _row(capsys.readouterr().out, "strplug")
    assert "ERROR: PluginError: flowcore_modalities returned str, not a list of ModalitySpec" in row
    assert "'g'" not in row


def test_a_hook_returning_a_non_spec_item_names_its_type_and_index(cli_registry, capsys):
    specs = [ModalitySpec("fine", "flowcore.builtins.toy2d:Toy2d"), {"name": "x"}]
    cli_registry.register(_plugin("itemplug", specs))

    assert main(["plugins"]) == 1
    row = _row(capsys.readouterr().out, "itemplug")
    assert "flowcore_modalities returned a list whose item 1 is dict, not a ModalitySpec" in row
    assert "fine" not in cli_registry.modalities  # refused whole


def test_a_hook_returning_none_offers_nothing_and_is_ok(cli_registry, capsys):
    record = cli_registry.register(_plugin("emptyplug", None))
    assert record.ok and record.modalities == []
    assert main(["plugins"]) == 0
    assert _row(capsys.readouterr().out, "emptyplug").rstrip().endswith("ok")
