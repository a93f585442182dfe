"""`flowcore new-plugin` writes packages that pass the conformance kit, lint clean, and train."""

import os
import shutil
import subprocess
import sys
import zipfile

import pytest
import torch

from flowcore.cli import main
from flowcore.errors import ConfigError
from flowcore.registry import Registry
from flowcore.scaffold import KINDS, new_plugin
from flowcore.testing import check_plugin
from flowcore.train.bundle import build_modality
from flowcore.train.config import load_config
from flowcore.train.networks import build_network

EVERY_CHECK = {"collate round trip", "tokenizer round trip", "layout agrees with encode", "path endpoints",
               "codec round trip", "codec damaged files", "metrics", "hook module is light", "options refuse typos"}


@pytest.fixture
def on_path(monkeypatch):
    """Put a generated package on sys.path for the test (what `pip install -e` would do) and forget its modules."""
    yield lambda root: monkeypatch.syspath_prepend(str(root))
    for name in [m for m in sys.modules if m.startswith("flowcore_toy_")]:
        del sys.modules[name]


@pytest.mark.parametrize("kind", sorted(KINDS))
def test_each_kind_passes_every_check_of_the_kit(kind, tmp_path, on_path):
    name = f"toy_{kind}"
    root = new_plugin(name, kind, tmp_path)
    on_path(root)
    registry = Registry(entry_points=False)
    record = registry.register(f"flowcore_{name}.plugin", name=name)
    assert record.ok, record.error
    assert record.modalities == [name] and record.datasets == [f"{name}_{KINDS[kind].dataset}"]
    report = check_plugin(name, tmp_path / "kit", registry=registry)
    assert EVERY_CHECK | {f"dataset {record.datasets[0]}"} <= set(report.passed)
    # the example config validates, and its network takes the modality's tokens
    config = load_config(root / "examples" / f"{name}.yaml", registry=registry)
    modality = build_modality(config, name, registry)
    net = build_network(config, {name: modality})
    tokens = modality.tokenizer.layout(2)
    with torch.no_grad():
        velocity = net({name: tokens}, {name: torch.full((2,), 0.5)})[name]
    assert velocity.shape == tokens.values.shape


class Outcomes:
    """A pytest plugin that keeps each test's outcome: ``{test id: "passed" | "failed" | "skipped"}``."""

    def __init__(self):
        self.outcomes = {}
        self.failures = []

    def pytest_runtest_logreport(self, report):
        if report.when == "call" or report.outcome != "passed":
            self.outcomes[report.nodeid.split("::")[-1]] = report.outcome
            if report.failed:
                self.failures.append(report.longreprtext[-3000:])


def test_generated_tests_pass_once_installed(tmp_path, on_path):
    """The sequence plugin's own tests (the kit, then 30 steps of its example config, sampling and eval)
    run by pytest as after `pip install -e`: the package and its entry point on the path."""
    root = new_plugin("toy_series", "sequence", tmp_path)
    dist = root / "flowcore_toy_series-0.1.0.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: flowcore-toy-series\nVersion: 0.1.0\n")
    (dist / "entry_points.txt").write_text("[flowcore]\ntoy_series = flowcore_toy_series.plugin\n")
    on_path(root)
    outcomes = Outcomes()
    code = pytest.main(["-q", "-p", "no:cacheprovider", "--rootdir", str(root), str(root / "tests")],
                       plugins=[outcomes])
    assert outcomes.outcomes == {"test_contract": "passed",
                                 "test_example_config_trains_samples_and_evaluates": "passed"}, outcomes.failures
    assert code == 0


@pytest.mark.skipif(shutil.which("ruff", path=os.path.dirname(sys.executable)) is None, reason="ruff not installed")
def test_generated_code_is_lint_clean(tmp_path):
    """ruff with the generated pyproject's own settings (what `ruff check .` uses inside the package)."""
    ruff = os.path.join(os.path.dirname(sys.executable), "ruff")
    for kind in KINDS:
        root = new_plugin(f"toy_{kind}", kind, tmp_path)
        out = subprocess.run([ruff, "check", "--no-cache", "."], cwd=root, capture_output=True, text=True)
        assert out.returncode == 0, f"{kind}: {out.stdout[-3000:]}"


def test_the_package_has_every_part(tmp_path, capsys):
    assert main(["new-plugin", "tides", "--kind", "table", "--out", str(tmp_path)]) == 0
    root = tmp_path / "flowcore-tides"
    assert str(root) in capsys.readouterr().out
    files = sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file())
    assert files == ["README.md", "examples/tides.yaml", "flowcore_tides/__init__.py", "flowcore_tides/data.py",
                     "flowcore_tides/modality.py", "flowcore_tides/options.py", "flowcore_tides/plugin.py",
                     "pyproject.toml", "tests/test_tides.py"]
    text = (root / "pyproject.toml").read_text()
    assert '[project.entry-points.flowcore]\ntides = "flowcore_tides.plugin"' in text
    assert not [p for p in root.rglob("*") if "{{" in p.name or (p.is_file() and "{{" in p.read_text())]


def test_the_package_builds_a_wheel_with_the_entry_point(tmp_path):
    root = new_plugin("tides", "set", tmp_path)
    subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation", "-w",
                    str(tmp_path / "wheel"), str(root)], check=True, capture_output=True)
    (wheel,) = (tmp_path / "wheel").glob("flowcore_tides-0.1.0-*.whl")
    with zipfile.ZipFile(wheel) as z:
        names = set(z.namelist())
        entry_points = z.read("flowcore_tides-0.1.0.dist-info/entry_points.txt").decode()
    assert {"flowcore_tides/plugin.py", "flowcore_tides/modality.py", "flowcore_tides/data.py"} <= names
    assert entry_points.split() == ["[flowcore]", "tides", "=", "flowcore_tides.plugin"]


def test_bad_names_kinds_and_existing_folders_are_config_errors(tmp_path):
    with pytest.raises(ConfigError, match="'My-Plugin' must be a lower-case identifier"):
        new_plugin("My-Plugin", "sequence", tmp_path)
    with pytest.raises(ConfigError, match="--kind 'image': expected one of sequence, grid, set, table"):
        new_plugin("pics", "image", tmp_path)
    new_plugin("twice", "grid", tmp_path)
    with pytest.raises(ConfigError, match="flowcore-twice: already exists"):
        new_plugin("twice", "grid", tmp_path)
