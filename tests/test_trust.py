"""A run directory is data: the plugins its config names run only with --trust-run-code.

Every planted plugin here writes a marker file when it is imported; a refused run leaves none.
"""

import shutil

import pytest
import yaml

import flowcore
from flowcore.cli import main
from flowcore.errors import ConfigError
from flowcore.registry import Registry, get_registry

REFUSED = "came with the run and was not run; if you trust this run, pass --trust-run-code"


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A toy2d run trained for 4 steps through the CLI."""
    tmp = tmp_path_factory.mktemp("trust")
    cfg = tmp / "toy.yaml"
    cfg.write_text(yaml.safe_dump({
        "out_dir": str(tmp / "run"), "modalities": {"toy2d": {}},
        "data": {"dataset": "moons", "options": {"size": 300}},
        "model": {"network": "mlp", "hidden": 16, "depth": 1, "time_dim": 8},
        "train": {"steps": 4, "batch_size": 32, "checkpoint_every": 4, "sample_every": 0, "progress_bar": False,
                  "cpu_threads": 1},
        "sample": {"count": 8}}))
    assert main(["train", str(cfg)]) == 0
    return tmp / "run"


@pytest.fixture(autouse=True)
def fresh_registry():
    """The CLI registers trusted plugins in the process registry: give each test a clean one."""
    get_registry(refresh=True)
    yield
    get_registry(refresh=True)


def planted(run, tmp_path, entry: str, where=None):
    """A copy of ``run`` whose config names ``entry``; the plugin file (at ``where``) writes ``marker``."""
    copy = tmp_path / "downloaded"
    shutil.copytree(run, copy)
    marker = tmp_path / "marker"
    plugin = where or (copy / entry)
    plugin.write_text(f"from pathlib import Path\nPath({str(marker)!r}).write_text('ran')\n")
    config = yaml.safe_load((copy / "config.yaml").read_text())
    config["plugins"] = [entry]
    (copy / "config.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    return copy, marker


def one_error_line(capsys) -> str:
    lines = capsys.readouterr().err.splitlines()
    assert len(lines) == 1, lines
    assert lines[0].startswith("flowcore: error: ")
    return lines[0]


def test_sample_refuses_a_runs_plugin_file_without_trust(trained, tmp_path, capsys):
    outside = tmp_path / "evil.py"
    run, marker = planted(trained, tmp_path, str(outside), where=outside)
    assert main(["sample", str(run), "--make", "toy2d", "--out", str(tmp_path / "o")]) == 2
    line = one_error_line(capsys)
    assert f"{run / 'config.yaml'}: plugins: {outside} is code that" in line and REFUSED in line
    assert not marker.exists()
    assert not (tmp_path / "o").exists()


def test_sample_runs_the_plugin_with_trust_run_code(trained, tmp_path):
    run, marker = planted(trained, tmp_path, "local.py")
    assert main(["sample", str(run), "--make", "toy2d", "--out", str(tmp_path / "o"), "--quiet",
                 "--trust-run-code"]) == 0
    assert marker.read_text() == "ran"
    assert (tmp_path / "o" / "toy2d" / "sample.csv").is_file()


def test_a_relative_plugin_path_is_the_run_directorys_not_the_working_directorys(trained, tmp_path, monkeypatch,
                                                                                 capsys):
    run, marker = planted(trained, tmp_path, "local.py")
    elsewhere = tmp_path / "cwd"
    elsewhere.mkdir()
    (elsewhere / "local.py").write_text("raise SystemExit('the working directory plugin ran')\n")
    monkeypatch.chdir(elsewhere)
    assert main(["sample", str(run), "--make", "toy2d", "--out", "o"]) == 2
    assert f"plugins: {run / 'local.py'} is code" in one_error_line(capsys)
    assert main(["sample", str(run), "--make", "toy2d", "--out", "o", "--quiet", "--trust-run-code"]) == 0
    assert marker.read_text() == "ran"


@pytest.mark.parametrize("command", [["eval", "--count", "8"], ["invert", "--modality", "toy2d", "--input", "IN"],
                                     ["reflow", "--set", "reflow.pairs=8"]])
def test_every_core_command_that_opens_a_run_refuses_its_code(trained, tmp_path, capsys, command):
    run, marker = planted(trained, tmp_path, "local.py")
    points = tmp_path / "points.csv"
    points.write_text("x,y\n0.1,0.2\n")
    args = [a if a != "IN" else str(points) for a in command[1:]]
    assert main([command[0], str(run), *args, "--out", str(tmp_path / "o")]) == 2
    assert REFUSED in one_error_line(capsys)
    assert not marker.exists()


def test_train_of_a_reflow_stage_refuses_the_teachers_code(trained, tmp_path, capsys):
    run, marker = planted(trained, tmp_path, "local.py")
    config = yaml.safe_load((trained / "config.yaml").read_text())
    config.update(stage="reflow", out_dir=str(tmp_path / "student"), plugins=[])
    config["reflow"].update(teacher=str(run), pairs=8)
    cfg = tmp_path / "student.yaml"
    cfg.write_text(yaml.safe_dump(config))
    assert main(["train", str(cfg)]) == 2
    assert REFUSED in one_error_line(capsys)
    assert not marker.exists()


@pytest.mark.parametrize("command", [["image-score", "--count", "1"], ["tabular-impute", "--given", "x.csv"]])
def test_plugin_commands_take_the_same_flag(trained, tmp_path, capsys, command):
    plugin = {"image-score": "image", "tabular-impute": "tabular"}[command[0]]
    if not any(p.name == plugin and p.ok for p in get_registry().plugins):
        pytest.skip(f"the {plugin} plugin is not installed")
    run, marker = planted(trained, tmp_path, "local.py")
    flags = [*command[1:], "--out", str(tmp_path / "o"), "--device", "cpu"]
    assert main([command[0], str(run), *flags]) == 2
    assert REFUSED in one_error_line(capsys)
    assert not marker.exists()
    main([command[0], str(run), *flags, "--trust-run-code"])  # a toy2d run: the command itself then fails
    assert marker.read_text() == "ran"


def test_an_installed_plugin_named_by_the_run_needs_no_trust(trained, tmp_path, capsys):
    run = tmp_path / "run"
    shutil.copytree(trained, run)
    config = yaml.safe_load((run / "config.yaml").read_text())
    config["plugins"] = ["flowcore.builtins.plugin"]  # the entry point that registers toy2d
    (run / "config.yaml").write_text(yaml.safe_dump(config))
    assert main(["sample", str(run), "--make", "toy2d", "--out", str(tmp_path / "o"), "--quiet"]) == 0


def test_the_users_own_config_runs_its_plugins(tmp_path):
    marker = tmp_path / "marker"
    (tmp_path / "mine.py").write_text(f"from pathlib import Path\nPath({str(marker)!r}).write_text('ran')\n")
    cfg = tmp_path / "mine.yaml"
    cfg.write_text(yaml.safe_dump({"plugins": ["mine.py"], "modalities": {"toy2d": {}},
                                   "data": {"dataset": "moons"}}))
    assert main(["train", str(cfg), "--print-config"]) == 0
    assert marker.read_text() == "ran"


def test_python_load_takes_trust_run_code(trained, tmp_path):
    run, marker = planted(trained, tmp_path, "local.py")
    with pytest.raises(ConfigError, match="trust_run_code=True"):
        flowcore.load(run, device="cpu", registry=Registry())
    assert not marker.exists()
    pipe = flowcore.load(run, device="cpu", registry=Registry(), trust_run_code=True)
    assert marker.read_text() == "ran"
    assert len(pipe.generate("toy2d", count=3, steps=2)["toy2d"]) == 3
