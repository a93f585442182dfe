"""Configs are validated on load: every mistake names its key and its file."""

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


@pytest.mark.parametrize("name", ["toy2d.yaml", "toy2d_reflow.yaml", "toy2d_autoencoder.yaml"])
def test_example_configs_load(registry, name):
    config = load_config(EXAMPLES / name, registry=registry)
    assert config.source.endswith(name)


def test_resolved_config_round_trips(tmp_path, registry):
    config = load_config(write(tmp_path, {**BASE, "train": {"steps": 7, "lr": "3e-4"}}), registry=registry)
    again = from_dict(yaml.safe_load(dump(config)), registry=registry)
    assert again == config and again.train.lr == 3e-4 and again.train.steps == 7


@pytest.mark.parametrize("change, words", [
    ({"train": {"stpes": 3}}, ["'train.stpes'", "unknown key"]),
    ({"train": {"steps": "many"}}, ["train.steps", "integer"]),
    ({"train": {"progress_bar": "yes"}}, ["train.progress_bar", "true or false"]),
    ({"model": {"network": "cnn"}}, ["model.network", "mlp"]),
    ({"modalities": {"toy3d": {}}}, ["modalities.toy3d", "no modality named 'toy3d'"]),
    ({"modalities": {"toy2d": {}, "label": {"num_classes": 3}}}, ["data.dataset", "'label'"]),
    ({"modalities": {"toy2d": {"role": "condition"}}}, ["no modality has role 'generate'"]),
    ({"data": {"dataset": "nothing"}}, ["data.dataset", "'nothing'"]),
    ({"data": {"dataset": "moons", "path": "x.csv"}}, ["exactly one of 'dataset'"]),
    ({"flow": {"p_clean": 0.6, "p_absent": 0.5}}, ["flow.p_clean"]),
    ({"surprise": 1}, ["'surprise'"]),
    ({"train": {"batch_tokens": 0}}, ["train.batch_tokens", ">= 1"]),
    ({"train": {"batch_tokens": 512, "devices": 2}}, ["train.batch_tokens", "train.devices 1"]),
])
def test_mistakes_name_key_and_file(tmp_path, registry, change, words):
    path = write(tmp_path, {**BASE, **change})
    with pytest.raises(ConfigError) as err:
        load_config(path, registry=registry)
    message = str(err.value)
    assert str(path) in message
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
    with pytest.raises(ConfigError, match="train.steps must be an integer"):
        load_config(path, ["train.steps=lots"], registry=registry)
    with pytest.raises(ConfigError, match="key=value"):
        load_config(path, ["train.steps"], registry=registry)


def test_modality_options_go_to_the_factory(tmp_path, registry):
    from flowcore.train.bundle import build_modality

    data = {"modalities": {"toy2d": {}, "label": {"role": "condition", "num_classes": 4}}, "data": {"path": "m.csv"}}
    config = load_config(write(tmp_path, data), registry=registry)
    assert config.modalities["label"].options == {"num_classes": 4}
    assert len(build_modality(config, "label", registry).classes) == 4
    data["modalities"]["label"]["num_clases"] = 4
    config = load_config(write(tmp_path, data), registry=registry)
    with pytest.raises(ConfigError, match="'modalities.label.num_clases'"):
        build_modality(config, "label", registry)


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
        "from flowcore.modality import ModalitySpec, DatasetSpec\n"
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
    from flowcore.train.config import from_dict
    from flowcore.train.networks import FlowMLP, build_network
    from flowcore.registry import get_registry

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
