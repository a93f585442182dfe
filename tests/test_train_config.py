"""Configs are validated on load: every mistake names its key and its file."""

import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from flowcore.errors import ConfigError
from flowcore.train.config import dump, from_dict, load_config

EXAMPLES = Path(__file__).resolve().parents[1] / "examples" / "configs"

BASE = {"modalities": {"toy2d": {}}, "data": {"dataset": "moons"}}


def write(tmp_path, data, name="run.yaml"):
    path = tmp_path / name
    path.write_text(yaml.safe_dump(data))
    return path


@pytest.mark.parametrize("name", sorted(p.name for p in EXAMPLES.glob("toy2d*.yaml")))
def test_example_configs_load_and_round_trip(registry, name):
    config = load_config(EXAMPLES / name, registry=registry)
    assert config.source.endswith(name)
    assert from_dict(yaml.safe_load(dump(config)), registry=registry) == config


def test_resolved_config_round_trips(tmp_path, registry):
    config = load_config(write(tmp_path, {**BASE, "train": {"steps": 7, "lr": "3e-4"}}), registry=registry)
    again = from_dict(yaml.safe_load(dump(config)), registry=registry)
    assert again == config and again.train.lr == 3e-4 and again.train.steps == 7
    assert again.data.options == {"size": None, "seed": 0}  # the dataset's defaults, resolved



@pytest.mark.parametrize("change, words", [
    ({"train": {"stpes": 3}}, ["train.stpes: unknown key; did you mean 'steps'?"]),
    ({"train": {"steps": "many"}}, ["train.steps", "integer"]),
    ({"train": {"steps": -1}}, ["train.steps: must be >= 1, got -1"]),
    ({"train": {"steps": 10, "epochs": 2}}, ["train.epochs", "not both"]),
    ({"train": {"devices": 1.5}}, ["train.devices: expected an integer or a string, got 1.5"]),
    ({"train": {"compile": "fast"}}, ["train.compile", "'reduce-overhead'"]),
    ({"train": {"ema": 1}}, ["train.ema: must be < 1"]),
    ({"model": {"transformer": {"hidden_size": "big"}}}, ["model.transformer.hidden_size: expected an integer"]),
    ({"model": {"transformer": {"num_heads": 5}}}, ["model.transformer", "num_heads (5)"]),
    ({"model": {"transformer": {"streams": {"toy2d": {"rope_axes": [2]}}}}},
     ["model.transformer.streams.toy2d.rope_axes: unknown key; did you mean 'rope_axes_dim'?"]),
    ({"modalities": {"toy2d": {"dropout": 1.0}}}, ["modalities.toy2d.dropout: must be < 1"]),
    ({"modalities": {"toy2d": {"size": 3, "colour": "red"}}}, ["modalities.toy2d.colour: unknown key"]),
    ({"data": {"dataset": "moons", "options": {"sizee": 10}}}, ["data.options.sizee", "did you mean 'size'?"]),
    ({"data": {"dataset": "moons", "options": {"size": 0}}}, ["data.options.size: must be >= 1"]),
    ({"train": {"progress_bar": "yes"}}, ["train.progress_bar", "true or false"]),
    ({"model": {"network": "cnn"}}, ["model.network", "mlp"]),
    ({"modalities": {"toy3d": {}}}, ["modalities.toy3d", "no modality named 'toy3d'"]),
    ({"modalities": {"toy2d": {}, "label": {"num_classes": 3}}}, ["data.dataset", "'label'"]),
    ({"modalities": {"toy2d": {"role": "condition"}}}, ["no modality has role 'generate'"]),
    ({"data": {"dataset": "nothing"}}, ["data.dataset", "'nothing'"]),
    ({"data": {"dataset": "moons", "path": "x.csv"}}, ["exactly one of 'dataset'"]),
    ({"flow": {"p_clean": 0.6, "p_absent": 0.5}}, ["flow.p_clean"]),
    ({"surprise": 1}, ["surprise: unknown key"]),
    ({"train": {"batch_tokens": 0}}, ["train.batch_tokens: must be >= 1"]),
    ({"train": {"batch_tokens": 512, "devices": 2}}, ["train.batch_tokens", "train.devices 1"]),
])
def test_mistakes_name_key_and_file(tmp_path, registry, change, words):
    path = write(tmp_path, {**BASE, **change})
    with pytest.raises(ConfigError) as err:
        load_config(path, registry=registry)
    message = str(err.value)
    assert message.startswith(f"{path}: ") and "\n" not in message
    for w in words:
        assert w in message


def test_missing_modalities_section(tmp_path):
    with pytest.raises(ConfigError, match="missing key 'modalities'"):
        load_config(write(tmp_path, {"data": {"dataset": "moons"}}))


def test_set_overrides_are_parsed_and_validated(tmp_path, registry):
    path = write(tmp_path, BASE)
    config = load_config(path, ["train.steps=12", "train.betas=[0.8, 0.9]", "modalities.toy2d.loss_weight=2"],
                         registry=registry)
    assert config.train.steps == 12 and config.train.betas == [0.8, 0.9]
    assert config.modalities["toy2d"].loss_weight == 2.0
    with pytest.raises(ConfigError, match="^--set train.steps: expected an integer, got 'lots'$"):
        load_config(path, ["train.steps=lots"], registry=registry)
    with pytest.raises(ConfigError, match="^--set data.options.sizee: unknown key; did you mean 'size'"):
        load_config(path, ["data.options={sizee: 3}"], registry=registry)
    with pytest.raises(ConfigError, match="key=value"):
        load_config(path, ["train.steps"], registry=registry)


def test_modality_options_go_to_the_factory(tmp_path, registry):
    from flowcore.train.bundle import build_modality

    data = {"modalities": {"toy2d": {}, "label": {"role": "condition", "num_classes": 4}}, "data": {"path": "m.csv"}}
    config = load_config(write(tmp_path, data), registry=registry)
    assert config.modalities["label"].options == {"num_classes": 4, "classes": None}  # with the defaults
    assert len(build_modality(config, "label", registry).classes) == 4
    data["modalities"]["label"]["num_clases"] = 4
    path = write(tmp_path, data)
    with pytest.raises(ConfigError, match="modalities.label.num_clases: unknown key; did you mean 'num_classes'"):
        load_config(path, registry=registry)
    unchecked = load_config(path)  # no registry, no plugin options checked: building the modality checks them
    with pytest.raises(ConfigError, match=f"^{path}: modalities.label.num_clases: unknown key"):
        build_modality(unchecked, "label", registry)


def test_epochs_replace_steps_and_steps_default_when_neither_is_given(tmp_path, registry):
    assert load_config(write(tmp_path, BASE)).train.steps == 2000
    config = load_config(write(tmp_path, {**BASE, "train": {"epochs": 3}}))
    assert (config.train.epochs, config.train.steps) == (3, None)
    assert from_dict(yaml.safe_load(dump(config))) == config
    with pytest.raises(ConfigError, match="train.epochs: give train.steps or train.epochs, not both"):
        load_config(write(tmp_path, {**BASE, "train": {"epochs": 3, "steps": 10}}))


def test_config_without_a_registry_loads_without_torch(tmp_path):
    """The CLI checks a config before it pays for torch: the schema modules import none of it."""
    code = ("import sys\n"
            "from flowcore.train.config import load_config\n"
            f"load_config({str(write(tmp_path, BASE))!r})\n"
            "print(sorted(m for m in ('torch', 'lightning', 'numpy') if m in sys.modules))\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_relative_data_path_is_anchored_at_the_config(tmp_path, registry):
    sub = tmp_path / "cfg"
    sub.mkdir()
    config = load_config(write(sub, {"modalities": {"toy2d": {}}, "data": {"path": "points"}}), registry=registry)
    assert Path(config.data.path) == (sub / "points").resolve()


def test_local_plugin_file(tmp_path):
    from flowcore.registry import Registry

    plugin = tmp_path / "myplug.py"
    plugin.write_text(
        "from flowcore.hookspecs import hookimpl\n"
        "from flowcore.spec import ModalitySpec, DatasetSpec\n"
        "@hookimpl\n"
        "def flowcore_modalities():\n"
        "    return [ModalitySpec(name='dots', factory='flowcore.builtins.toy2d:Toy2d',\n"
        "            datasets=(DatasetSpec('dots_moons', ('dots',), 'flowcore.builtins.toy2d:moons'),))]\n")
    registry = Registry()
    config = load_config(write(tmp_path, {"plugins": ["myplug.py"], "modalities": {"dots": {}},
                                          "data": {"dataset": "dots_moons"}}), registry=registry)
    assert config.plugins == [str(plugin.resolve())] and "dots" in registry.modalities
    with pytest.raises(ConfigError, match=r"plugins\[0\]"):
        load_config(write(tmp_path, {"plugins": ["nope.py"], **BASE}), registry=Registry())


def test_plugin_network_is_built_from_module_attr(tmp_path):
    """`model.network: package.module:attr` builds the named factory with `model.options`."""
    from flowcore.registry import get_registry
    from flowcore.train.config import from_dict
    from flowcore.train.networks import FlowMLP, build_network

    raw = {"modalities": {"toy2d": {}}, "data": {"dataset": "moons"},
           "model": {"network": "flowcore.train.networks:FlowMLP", "options": {"hidden": 32, "depth": 1}}}
    config = from_dict(raw, registry=get_registry())
    net = build_network(config, {"toy2d": get_registry().modality("toy2d")})
    assert isinstance(net, FlowMLP)
    assert sum(p.numel() for p in net.parameters()) < sum(
        p.numel() for p in FlowMLP({"toy2d": (1, 2)}, hidden=256, depth=3, time_dim=64).parameters())


@pytest.mark.parametrize("model,expect", [
    ({"network": "not_a_network"}, "model.network"),
    ({"network": "mlp", "options": {"x": 1}}, "model.options"),
])
def test_bad_network_names_the_key(model, expect):
    from flowcore.errors import ConfigError
    from flowcore.train.config import from_dict

    with pytest.raises(ConfigError, match=expect):
        from_dict({"modalities": {"toy2d": {}}, "data": {"dataset": "moons"}, "model": model})
