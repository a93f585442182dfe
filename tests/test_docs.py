"""The documentation: the site builds without a warning, and the plugin guide's code runs as written."""

import importlib.util
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from flowcore.registry import Registry
from flowcore.scaffold import new_plugin
from flowcore.testing import check_plugin

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.skipif(importlib.util.find_spec("mkdocs") is None or importlib.util.find_spec("mkdocstrings") is None,
                    reason="the docs extra is not installed (pip install -e '.[docs]')")
def test_site_builds_with_no_warnings(tmp_path):
    """`mkdocs build --strict`: a broken link, a missing anchor, a page outside the nav or an API
    reference that does not resolve is a warning, and strict mode fails on it."""
    env = {**os.environ, "NO_MKDOCS_2_WARNING": "1"}
    out = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(tmp_path / "site")],
                         cwd=ROOT, capture_output=True, text=True, env=env)
    warnings = [line for line in out.stderr.splitlines() if line.startswith(("WARNING", "ERROR"))]
    assert out.returncode == 0 and not warnings, "\n".join(warnings) or out.stderr[-3000:]
    html = (tmp_path / "site" / "reference" / "config.html").read_text()
    assert "checkpoint_every" in html and "batch_tokens" in html  # generated from the schema
    assert "new-plugin" in (tmp_path / "site" / "reference" / "cli.html").read_text()  # from argparse
    assert "check_plugin" in (tmp_path / "site" / "reference" / "api.html").read_text()  # from docstrings


def python_blocks(page: Path) -> list[str]:
    return re.findall(r"```python\n(.*?)```", page.read_text(), flags=re.S)


def test_plugin_guide_code_runs(tmp_path, monkeypatch):
    """Every Python block of docs/plugins.md, in order, against the plugin the guide scaffolds; the
    test functions it shows are then run with the fixtures they name."""
    monkeypatch.syspath_prepend(str(new_plugin("tides", "sequence", tmp_path)))
    blocks = python_blocks(ROOT / "docs" / "plugins.md")
    assert len(blocks) == 4
    namespace: dict = {}
    try:
        for block in blocks:
            exec(compile(block, "docs/plugins.md", "exec"), namespace)
        assert namespace["record"].ok and namespace["modality"].length == 128
        assert [s.name for s in namespace["flowcore_modalities"]()] == ["tides"]
        registry = Registry(entry_points=False)
        assert registry.register("flowcore_tides.plugin").ok
        check = lambda name, **kwargs: check_plugin(name, tmp_path / "kit", registry=registry, **kwargs)  # noqa: E731
        namespace["test_contract"](check)
        namespace["test_contract_at_other_sizes"](check)
    finally:
        for name in [m for m in sys.modules if m.startswith("flowcore_tides")]:
            del sys.modules[name]
