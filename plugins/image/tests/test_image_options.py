"""The image options (flowcore_image.options) check a config before torch or Pillow is imported."""

import inspect
import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from flowcore.errors import ConfigError
from flowcore.spec import resolve

EXAMPLE = Path(__file__).resolve().parents[3] / "examples" / "configs" / "image_mnist.yaml"

#: runs `flowcore train`, then reports its exit code, its stderr and whether torch or Pillow was imported
RUNNER = """
import contextlib, io, json, sys
from flowcore.cli import main
err = io.StringIO()
with contextlib.redirect_stderr(err):
    code = main(sys.argv[1:])
print(json.dumps({"code": code, "stderr": err.getvalue(), "heavy": sorted({"torch", "PIL"} & set(sys.modules))}))
"""


def train_edited(tmp_path: Path, section: str, key: str, value) -> tuple[Path, dict]:
    raw = yaml.safe_load(EXAMPLE.read_text())
    node = raw
    for part in section.split("."):
        node = node.setdefault(part, {})
    node[key] = value
    path = tmp_path / "mine.yaml"
    path.write_text(yaml.safe_dump(raw, sort_keys=False))
    out = subprocess.run([sys.executable, "-c", RUNNER, "train", str(path)], capture_output=True, text=True,
                         check=True)
    return path, json.loads(out.stdout)


@pytest.mark.parametrize("section, key, value, expected", [
    ("modalities.image", "patch", "two", "modalities.image.patch: expected an integer, got 'two'"),
    ("modalities.image", "pach", 2, "modalities.image.pach: unknown key; did you mean 'patch'?"),
    ("modalities.image", "space", "latnet", "modalities.image.space: expected one of 'pixel', 'latent', got 'latnet'"),
    ("modalities.image", "image_size", [28, 28, 3], "modalities.image.image_size: expected an integer or a list"),
    ("data.options", "limt", 10, "data.options.limt: unknown key; did you mean 'limit'?"),
])
def test_bad_option_is_one_line_naming_key_and_file_before_torch(tmp_path, section, key, value, expected):
    path, result = train_edited(tmp_path, section, key, value)
    assert result["code"] == 2 and result["heavy"] == []
    assert result["stderr"].startswith(f"flowcore: error: {path}: {expected}")
    assert result["stderr"].count("\n") == 1


def test_image_folder_needs_its_root(registry):
    with pytest.raises(ConfigError, match="dataset 'image_folder': root: missing"):
        registry.dataset("image_folder").build("train")


def test_option_defaults_are_the_factories_defaults(registry):
    """The options models replace the factories' checks: their defaults must be the factories' own."""
    spec = registry.spec("image")
    for model, factory in [(spec.options, spec.factory), *((d.options, d.factory) for d in spec.datasets)]:
        params = inspect.signature(resolve(factory)).parameters
        for name, field in model.model_fields.items():
            if not field.is_required():
                assert params[name].default == field.default, (factory, name)
