"""Plugin discovery: entry points, in-process plugins, and broken plugins that must not break the rest."""

import subprocess
import sys
import textwrap
import types

import pytest

from flowcore.errors import UnknownNameError
from flowcore.hookspecs import hookimpl
from flowcore.registry import Registry
from flowcore.spec import ModalitySpec


def test_builtins_are_found_through_the_entry_point(registry):
    record = next(p for p in registry.plugins if p.name == "builtins")
    assert record.ok and record.source.startswith("entry point")
    assert {"toy2d", "label"} <= set(registry.modalities)
    assert {"moons", "checkerboard", "spirals", "eight_gaussians"} <= set(registry.datasets())


def _plugin(name, modalities, raise_in_hook=False):
    mod = types.ModuleType(name)

    @hookimpl
    def flowcore_modalities():
        if raise_in_hook:
            raise RuntimeError("boom in hook")
        return modalities

    mod.flowcore_modalities = flowcore_modalities
    return mod


def test_in_process_plugin_registers(registry):
    spec = ModalitySpec(name="pts", factory="flowcore.builtins.toy2d:Toy2d")
    record = registry.register(_plugin("my_points", [spec]))
    assert record.ok and record.modalities == ["pts"]
    assert registry.modality("pts").name == "pts"


@pytest.mark.parametrize("case,expect", [
    ("raises", "boom in hook"),
    ("malformed", "not a ModalitySpec"),
    ("taken", "already taken by plugin 'builtins'"),
    ("import", "No module named"),
])
def test_broken_plugins_are_recorded_and_the_rest_still_load(registry, case, expect):
    if case == "raises":
        record = registry.register(_plugin("bad", [], raise_in_hook=True))
    elif case == "malformed":
        record = registry.register(_plugin("bad", [{"name": "x"}]))
    elif case == "taken":
        record = registry.register(_plugin("bad", [ModalitySpec("toy2d", "flowcore.builtins.toy2d:Toy2d")]))
    else:
        record = registry.register("no_such_module_anywhere", name="bad")
    assert not record.ok and expect in record.error
    good = registry.register(_plugin("good", [ModalitySpec("okmod", "flowcore.builtins.toy2d:Toy2d")]))
    assert good.ok
    assert "okmod" in registry.modalities and "toy2d" in registry.modalities
    assert registry.owners["toy2d"].name == "builtins"


def test_a_plugin_refused_whole_registers_none_of_its_modalities(registry):
    specs = [ModalitySpec("fresh", "flowcore.builtins.toy2d:Toy2d"), ModalitySpec("label", "x.y:z")]
    record = registry.register(_plugin("half", specs))
    assert not record.ok and "fresh" not in registry.modalities


def test_bad_factory_fails_at_build_with_the_target_named(registry):
    registry.register(_plugin("lazy", [ModalitySpec("lazy", "nowhere.at_all:Thing")]))
    from flowcore.errors import PluginError

    with pytest.raises(PluginError, match="nowhere.at_all:Thing"):
        registry.modality("lazy")


def test_unknown_modality_lists_what_is_installed(registry):
    with pytest.raises(UnknownNameError, match="toy2d"):
        registry.spec("nope")


def test_bad_names_are_refused():
    from flowcore.errors import PluginError

    with pytest.raises(PluginError, match="lower-case"):
        ModalitySpec("Bad Name", "a:b")


def _make_plugin_package(root, name, body):
    pkg = root / name
    (pkg / f"flowcore_{name}").mkdir(parents=True)
    (pkg / "pyproject.toml").write_text(textwrap.dedent(f"""
        [build-system]
        requires = ["setuptools>=68"]
        build-backend = "setuptools.build_meta"
        [project]
        name = "flowcore-{name}"
        version = "9.9.{len(name)}"
        [project.entry-points.flowcore]
        {name} = "flowcore_{name}.plugin"
    """))
    (pkg / f"flowcore_{name}" / "__init__.py").write_text("")
    (pkg / f"flowcore_{name}" / "plugin.py").write_text(textwrap.dedent(body))
    return pkg


def test_pip_installed_plugin_package_is_discovered_and_a_broken_one_listed(tmp_path):
    good = _make_plugin_package(tmp_path, "throwaway", """
        from flowcore.hookspecs import hookimpl
        from flowcore.spec import ModalitySpec
        @hookimpl
        def flowcore_modalities():
            return [ModalitySpec("throwaway_points", "flowcore.builtins.toy2d:Toy2d")]
    """)
    broken = _make_plugin_package(tmp_path, "brokenplug", "import this_dependency_is_missing\n")
    pip = [sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--no-build-isolation", "--no-index"]
    uninstall = [sys.executable, "-m", "pip", "uninstall", "-y", "-q", "flowcore-throwaway", "flowcore-brokenplug"]
    subprocess.run(pip + [str(good), str(broken)], check=True)
    try:
        out = subprocess.run([sys.executable, "-m", "flowcore.cli", "plugins"], capture_output=True, text=True)
        assert "throwaway_points" in out.stdout and "9.9.9" in out.stdout
        assert "brokenplug" in out.stdout and "ModuleNotFoundError" in out.stdout
        assert "toy2d" in out.stdout
        assert out.returncode == 1  # a broken plugin makes `flowcore plugins` fail, visibly
        fresh = Registry()
        assert "throwaway_points" in fresh.modalities
        assert not next(p for p in fresh.plugins if p.name == "brokenplug").ok
    finally:
        subprocess.run(uninstall, check=False)
