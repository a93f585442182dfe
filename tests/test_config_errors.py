"""`flowcore train` refuses a bad config with one line naming the key and the file, before torch loads.

Each case edits an example config and runs the real CLI in a fresh interpreter, so the check
that torch is not imported yet is honest (this test process has imported it long ago).
"""

from pathlib import Path

import pytest
import yaml

from flowcore.cli import main
from flowcore.train.config import from_dict, load_config

EXAMPLES = Path(__file__).resolve().parents[1] / "examples" / "configs"


def edited(tmp_path: Path, example: str, edit) -> Path:
    raw = yaml.safe_load((EXAMPLES / example).read_text())
    edit(raw)
    path = tmp_path / "mine.yaml"
    path.write_text(yaml.safe_dump(raw, sort_keys=False))
    return path


def set_in(raw: dict, key: str, value) -> None:
    *sections, last = key.split(".")
    for part in sections:
        raw = raw.setdefault(part, {})
    raw[last] = value


@pytest.mark.parametrize("example, key, value, expected", [
    ("toy2d.yaml", "model.transformer.hidden_size", "big",
     "model.transformer.hidden_size: expected an integer, got 'big'"),
    ("toy2d.yaml", "train.steps", -1, "train.steps: must be >= 1, got -1"),
    ("toy2d.yaml", "data.options.sizee", 100, "data.options.sizee: unknown key; did you mean 'size'?"),
    ("toy2d_labeled.yaml", "modalities.label.num_clases", 2,
     "modalities.label.num_clases: unknown key; did you mean 'num_classes'?"),
    ("toy2d_labeled.yaml", "data.options.classes", 3, "data.options.classes: expected one of 2, 4, 8, got 3"),
])
def test_bad_value_is_one_line_naming_key_and_file_before_torch(tmp_path, example, key, value, expected,
                                                                flowcore_train):
    path = edited(tmp_path, example, lambda raw: set_in(raw, key, value))
    result = flowcore_train(str(path))
    assert result["code"] == 2
    assert result["stderr"] == f"flowcore: error: {path}: {expected}\n"
    assert not result["torch"]


def test_an_override_is_named_as_set(tmp_path, flowcore_train):
    result = flowcore_train(str(EXAMPLES / "toy2d.yaml"), "--set", "train.stpes=10")
    assert result["stderr"] == "flowcore: error: --set train.stpes: unknown key; did you mean 'steps'?\n"
    assert not result["torch"]
    result = flowcore_train(str(EXAMPLES / "toy2d.yaml"), "--set", "data.options.size=many")
    assert result["stderr"] == "flowcore: error: --set data.options.size: expected an integer, got 'many'\n"


def test_print_config_prints_every_default_and_loads_back_equal(tmp_path, capsys, registry):
    example, overrides = EXAMPLES / "toy2d_labeled.yaml", ["train.lr=3e-4", f"out_dir={tmp_path / 'run'}"]
    assert main(["train", str(example), "--print-config", *(a for o in overrides for a in ("--set", o))]) == 0
    raw = yaml.safe_load(capsys.readouterr().out)
    assert raw["train"]["lr"] == 3e-4 and raw["train"]["epochs"] is None and raw["eval"]["batch_size"] == 1000
    assert raw["data"]["options"] == {"size": None, "seed": 0, "classes": 2}  # with the dataset's defaults
    assert raw["modalities"]["label"] == {"role": "condition", "dropout": 0.1, "size": None, "loss_weight": 1.0,
                                          "autoencoder": None, "p_clean": None, "p_absent": None,
                                          "num_classes": 2, "classes": None}
    assert from_dict(raw, registry=registry) == load_config(example, overrides, registry)
    assert not (tmp_path / "run").exists()  # printed, not trained
