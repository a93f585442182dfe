"""Config values are checked against their ranges and choice sets, and config YAML is plain data.

A value out of range, a misspelt choice, a key given twice or a YAML tag is one ConfigError
line naming the dotted key (or the line) and the file, before torch is imported; the cheap
cases run the real CLI in a fresh interpreter, as a new user would meet them.
"""

import inspect
import re
from pathlib import Path

import pytest
import yaml

from flowcore.errors import ConfigError
from flowcore.train.config import (
    SOLVER_OPTIONS,
    TIMESTEP_OPTIONS,
    Config,
    DistillConfig,
    EvalConfig,
    FlowConfig,
    ModelConfig,
    ReflowConfig,
    SampleConfig,
    TrainConfig,
    load_config,
    read_yaml,
)

EXAMPLES = Path(__file__).resolve().parents[1] / "examples" / "configs"
BASE = {"modalities": {"toy2d": {}}, "data": {"dataset": "moons"}}


def with_value(key: str, value) -> dict:
    raw = yaml.safe_load(yaml.safe_dump(BASE))
    *sections, last = key.split(".")
    node = raw
    for part in sections:
        node = node.setdefault(part, {})
    node[last] = value
    return raw


def write(tmp_path: Path, raw: dict | str, name: str = "mine.yaml") -> Path:
    path = tmp_path / name
    path.write_text(raw if isinstance(raw, str) else yaml.safe_dump(raw, sort_keys=False))
    return path


@pytest.mark.parametrize("key, value, expected", [
    ("train.lr", -1, "train.lr: must be > 0, got -1"),
    ("train.betas", [2, 3], "train.betas[0]: must be < 1, got 2"),
    ("train.precision", "bogus", "train.precision: expected one of 'auto', '32-true', "),
    ("train.cpu_threads", -2, "train.cpu_threads: must be >= 1, got -2"),
    ("sample.solver", "eulr", "sample.solver: expected one of 'euler', 'midpoint', 'heun', 'rk4', 'dopri5', "
                              "'fireflow', 'euler_sde', 'meanflow', 'rf_solver', got 'eulr'; did you mean 'euler'?"),
    ("reflow.solver", "rk5", "reflow.solver: expected one of 'euler', "),
    ("train.checkpoint_every", 0, "train.checkpoint_every: must be >= 1, got 0"),
    ("train.warmup_steps", -10, "train.warmup_steps: must be >= 0, got -10"),
    ("train.grad_clip", -1.0, "train.grad_clip: must be >= 0, got -1.0"),
    ("sample.steps", 0, "sample.steps: must be >= 1, got 0"),
    ("model.hidden", 0, "model.hidden: must be >= 1, got 0"),
    ("modalities.toy2d.size", -2.5, "modalities.toy2d.size: must be a size > 0 or a list of them"),
])
def test_flowcore_train_refuses_a_value_out_of_range_in_one_line_before_torch(tmp_path, key, value, expected,
                                                                              flowcore_train):
    path = write(tmp_path, with_value(key, value))
    result = flowcore_train(str(path))
    assert result["code"] == 2
    assert result["stderr"].startswith(f"flowcore: error: {path}: {expected}")
    assert result["stderr"].count("\n") == 1
    assert not result["torch"]


@pytest.mark.parametrize("key, value, expected", [
    ("train.precision", "bf16-mixd", "expected one of 'auto', '32-true', '32', '16-mixed', '16', 'bf16-mixed', "
                                     "'bf16', 'bf16-true', '16-true', '64-true', '64', got 'bf16-mixd'; did you mean "
                                     "'bf16-mixed'?"),
    ("train.accelerator", "gpus", "expected one of 'auto', 'cpu', 'gpu', 'cuda', 'mps', 'tpu', got 'gpus'; "
                                  "did you mean 'gpu'?"),
    ("train.betas", [0.9], "must have at least 2 items, got [0.9]"),
    ("train.betas", [0.9, 0.99, 0.999], "must have at most 2 items"),
    ("train.lr", float("inf"), "must be a finite number"),
    ("train.weight_decay", -0.1, "must be >= 0, got -0.1"),
    ("train.devices", 0, "must be a count >= 1, -1 or 'auto' (all devices), or device indices like '0,1'; got 0"),
    ("train.devices", "many", "must be a count >= 1"),
    ("train.log_every", 0, "must be >= 1, got 0"),
    ("train.optimizer", "adamx", "got 'adamx'; did you mean 'adam'?"),
    ("train.compile", "max-autotun", "got 'max-autotun'; did you mean 'max-autotune'?"),
    ("train.strategy", "", "must not be empty"),
    ("seed", -1, "must be >= 0, got -1"),
    ("out_dir", "", "must not be empty"),
    ("model.depth", 0, "must be >= 1, got 0"),
    ("model.time_dim", 0, "must be >= 2, got 0"),
    ("model.time_dim", 65, "must be a multiple of 2, got 65"),
    ("model.transformer.hidden_size", 0, "must be >= 1, got 0"),
    ("model.transformer.num_heads", 0, "must be >= 1, got 0"),
    ("model.transformer.depth_single", -1, "must be >= 0, got -1"),
    ("model.transformer.mlp_ratio", 0, "must be > 0, got 0"),
    ("model.transformer.frequency_dim", 3, "must be a multiple of 2, got 3"),
    ("model.transformer.global_cond_dim", -1, "must be >= 0, got -1"),
    ("modalities.toy2d.size", [], "must be a size > 0 or a list of them"),
    ("modalities.toy2d.size", [32, 0], "must be a size > 0 or a list of them"),
    ("modalities.toy2d.loss_weight", -1, "must be >= 0, got -1"),
    ("data.num_workers", -1, "must be >= 0, got -1"),
    ("data.val_fraction", 1.5, "must be < 1, got 1.5"),
    ("data.limit", 0, "must be >= 1, got 0"),
    ("flow.shift", 0, "must be > 0, got 0"),
    ("flow.p_clean", -0.1, "must be >= 0, got -0.1"),
    ("flow.timesteps", "unifrom", "got 'unifrom'; did you mean 'uniform'?"),
    ("sample.cfg", -1, "must be >= 0, got -1"),
    ("sample.count", 0, "must be >= 1, got 0"),
    ("sample.shift", -2, "must be > 0, got -2"),
    ("eval.count", 0, "must be >= 1, got 0"),
    ("eval.batch_size", 0, "must be >= 1, got 0"),
    ("reflow.pairs", 0, "must be >= 1, got 0"),
    ("reflow.steps", 0, "must be >= 1, got 0"),
    ("reflow.cfg", 0, "must be > 0, got 0"),
    ("distill.start_step", -1, "must be >= 0, got -1"),
    ("distill.samples", 0, "must be >= 1, got 0"),
    ("distill.states", 0, "must be >= 1, got 0"),
    ("distill.t_max", 1.5, "must be <= 1, got 1.5"),
    ("distill.weight", -1, "must be >= 0, got -1"),
    ("distill.ema", 1, "must be < 1, got 1"),
    ("distill.lr", 0, "must be > 0, got 0"),
])
def test_a_value_out_of_range_names_its_key_its_file_and_what_was_expected(tmp_path, key, value, expected):
    path = write(tmp_path, with_value(key, value))
    with pytest.raises(ConfigError) as err:
        load_config(path)
    message = str(err.value)
    assert message.startswith(f"{path}: {key}: ") and expected in message and "\n" not in message


@pytest.mark.parametrize("flow, expected", [
    ({"timestep_options": {"s": 0}}, "flow.timestep_options.s: must be > 0, got 0"),
    ({"timestep_options": {"k": 4}}, "flow.timestep_options.k: unknown key; known keys: m, s"),
    ({"timesteps": "mode", "timestep_options": {"s": 3}}, "flow.timestep_options.s: must be <= 1.75194, got 3"),
    ({"timesteps": "grid"}, "flow.timestep_options.k: missing (a required key)"),
    ({"timesteps": "grid", "timestep_options": {"k": 2.5}}, "flow.timestep_options.k: expected an integer, got 2.5"),
    ({"timesteps": "uniform", "timestep_options": {"s": 1}}, "flow.timestep_options.s: unknown key"),
])
def test_timestep_options_are_checked_by_the_samplers_model(tmp_path, flow, expected):
    with pytest.raises(ConfigError, match=re.escape(f"{tmp_path / 'mine.yaml'}: {expected}")):
        load_config(write(tmp_path, {**BASE, "flow": flow}))


def test_solver_options_are_checked_by_the_solvers_model(tmp_path):
    path = write(tmp_path, {**BASE, "sample": {"solver": "euler_sde", "solver_options": {"churn": -1}}})
    with pytest.raises(ConfigError, match=r"sample.solver_options.churn: must be >= 0, got -1$"):
        load_config(path)
    path = write(tmp_path, {**BASE, "sample": {"solver": "euler", "solver_options": {"churn": 1}}})
    with pytest.raises(ConfigError, match=r"sample.solver_options.churn: unknown key"):
        load_config(path)
    path = write(tmp_path, {**BASE, "sample": {"solver": "dopri5", "solver_options": {"rtol": "1e-3"}}})
    assert load_config(path).sample.solver_options == {"rtol": 1e-3}  # what was given, read as a number


def test_values_that_lightning_or_older_configs_write_are_accepted(tmp_path):
    config = load_config(write(tmp_path, {**BASE, "train": {"precision": 32, "devices": -1},
                                          "flow": {"timesteps": "grid", "timestep_options": {"k": 4.0}},
                                          "modalities": {"toy2d": {"size": [32, 32]}}}))
    assert config.train.precision == "32" and config.train.devices == -1
    assert config.flow.timestep_options == {"k": 4}  # saved by a version that kept k as a number
    assert config.modalities["toy2d"].size == [32, 32]
    assert load_config(write(tmp_path, {**BASE, "train": {"devices": "0,1"}})).train.devices == "0,1"


def test_an_override_out_of_range_is_named_as_set():
    with pytest.raises(ConfigError, match=r"^--set train.betas\[1\]: must be < 1, got 3$"):
        load_config(EXAMPLES / "toy2d.yaml", ["train.betas=[0.9, 3]"])
    with pytest.raises(ConfigError, match="^--set sample.solver: .* did you mean 'heun'"):
        load_config(EXAMPLES / "toy2d.yaml", ["sample.solver=huen"])


@pytest.mark.parametrize("section", [TrainConfig, SampleConfig, EvalConfig, ReflowConfig, DistillConfig, FlowConfig,
                                     ModelConfig])
def test_every_default_is_within_its_own_range(section):
    assert section.model_validate(section().model_dump()) == section()


def test_the_options_models_match_the_samplers_and_solvers_they_check():
    from flowcore.flow.solvers import SOLVERS
    from flowcore.flow.timesteps import SAMPLERS

    for table, models in ((SAMPLERS, TIMESTEP_OPTIONS), (SOLVERS, SOLVER_OPTIONS)):
        for name, cls in table.items():
            params = {k: p.default for k, p in inspect.signature(cls).parameters.items()}
            model = models.get(name)
            fields = {k: f.default if not f.is_required() else inspect.Parameter.empty
                      for k, f in model.model_fields.items()} if model else {}
            assert fields == params, name


# ----------------------------------------------------------------------------- YAML


def test_a_key_given_twice_is_refused_with_its_line(tmp_path, flowcore_train):
    path = write(tmp_path, "modalities:\n  toy2d: {}\ndata: {dataset: moons}\ntrain:\n  lr: 1.0e-3\n"
                           "  steps: 10\n  lr: 2.0e-3\n")
    result = flowcore_train(str(path))
    assert result["code"] == 2 and not result["torch"]
    assert result["stderr"] == (f"flowcore: error: {path}: line 7: train.lr: duplicate key (first given on line 5); "
                                "YAML would keep only the last, so give it once\n")


def test_a_section_given_twice_is_refused_too(tmp_path):
    path = write(tmp_path, "modalities:\n  toy2d: {size: 3, size: 4}\ndata: {dataset: moons}\n")
    with pytest.raises(ConfigError, match=r": line 2: modalities.toy2d.size: duplicate key \(first given on line 2\)"):
        load_config(path)
    path = write(tmp_path, "modalities:\n  toy2d: {}\ntrain: {steps: 3}\ndata: {dataset: moons}\ntrain: {lr: 0.1}\n")
    with pytest.raises(ConfigError, match=r": line 5: train: duplicate key \(first given on line 3\)"):
        load_config(path)


def test_a_merge_key_may_be_overridden(tmp_path):
    path = write(tmp_path, "base: &base {steps: 10, lr: 0.1}\ntrain: {<<: *base, lr: 0.2}\n")
    assert read_yaml(path)["train"] == {"steps": 10, "lr": 0.2}


def test_a_yaml_tag_is_one_line_naming_file_and_line_and_runs_nothing(tmp_path, flowcore_train):
    marker = tmp_path / "ran"
    path = write(tmp_path, f"modalities:\n  toy2d: {{}}\ndata: {{dataset: moons}}\n"
                           f"seed: !!python/object/apply:os.system [\"touch {marker}\"]\n")
    result = flowcore_train(str(path))
    assert result["code"] == 2 and not result["torch"] and not marker.exists()
    assert result["stderr"] == (f"flowcore: error: {path}: line 4, column 7: the tag "
                                f"'!!python/object/apply:os.system' is not allowed: a config is plain data "
                                "(mappings, lists, strings, numbers, true/false, null)\n")


def test_broken_yaml_a_tag_in_an_override_and_a_binary_file_are_one_line(tmp_path):
    with pytest.raises(ConfigError, match=r"^.*mine.yaml: line 4, column 1: not valid YAML: while parsing a flow "
                                          r"mapping; expected ',' or '}'"):
        load_config(write(tmp_path, "modalities:\n  toy2d: {}\ndata: {dataset: moons\n"))
    with pytest.raises(ConfigError, match=r"^--set 'seed=!!python/name:os.system': line 1, column 1: the tag "):
        load_config(EXAMPLES / "toy2d.yaml", ["seed=!!python/name:os.system"])
    (tmp_path / "binary.yaml").write_bytes(b"modalities: \xff\xfe\n")
    with pytest.raises(ConfigError, match=r"binary.yaml: not a UTF-8 text file \(invalid start byte at byte 12\)$"):
        load_config(tmp_path / "binary.yaml")


def test_the_run_directory_config_is_read_as_strictly(tmp_path):
    from flowcore.train.checkpoint import run_config

    good = Config.model_validate({"modalities": {"toy2d": {"options": {}}}, "data": {"dataset": "moons"}}).to_dict()
    text = yaml.safe_dump(good, sort_keys=False)
    (tmp_path / "config.yaml").write_text(text + "seed: 3\n")
    with pytest.raises(ConfigError, match=rf"^{tmp_path / 'config.yaml'}: line \d+: seed: duplicate key"):
        run_config(tmp_path)
    (tmp_path / "config.yaml").write_text(text.replace("seed: 0", "seed: !!python/object/apply:os.getpid []"))
    with pytest.raises(ConfigError, match=rf"^{tmp_path / 'config.yaml'}: line \d+, column \d+: the tag "):
        run_config(tmp_path)


@pytest.mark.parametrize("name", sorted(p.name for p in EXAMPLES.glob("*.yaml")))
def test_every_example_config_loads_with_the_registry(registry, name):
    assert load_config(EXAMPLES / name, registry=registry).source.endswith(name)
