"""What `flowcore` prints when something goes wrong: one line on stderr, exit status 2; a traceback only
with --debug."""

import pytest
import torch
import yaml
from safetensors.torch import save_file

from flowcore.cli import main
from flowcore.train.config import from_dict

TAG = "bad: !!python/object/apply:os.system ['echo planted']\n"


@pytest.fixture
def run(tmp_path):
    """A toy2d run directory written by hand: an MLP's weights are not needed before sampling starts."""
    run = tmp_path / "run"
    run.mkdir()
    config = from_dict({"modalities": {"toy2d": {}}, "data": {"dataset": "moons"},
                        "model": {"hidden": 8, "depth": 1, "time_dim": 8}})
    (run / "config.yaml").write_text(yaml.safe_dump(config.to_dict(), sort_keys=False))
    save_file({"net.unused": torch.zeros(1)}, str(run / "model.safetensors"))
    return run


def error_line(capsys) -> str:
    err = capsys.readouterr().err
    assert len(err.splitlines()) == 1 and err.startswith("flowcore: error: "), err
    return err.strip()


@pytest.mark.parametrize("name", ["missing.png", "missing.pdb"])
def test_invert_names_a_missing_input_file(run, tmp_path, capsys, name):
    assert main(["invert", str(run), "--modality", "toy2d", "--input", name, "--out", str(tmp_path / "o")]) == 2
    assert error_line(capsys) == f"flowcore: error: {name}: no such file"


def test_a_yaml_tag_in_the_users_config_is_one_line_naming_file_and_line(tmp_path, capsys):
    cfg = tmp_path / "mine.yaml"
    cfg.write_text("modalities: {toy2d: {}}\n" + TAG)
    assert main(["train", str(cfg)]) == 2
    line = error_line(capsys)
    assert line.startswith(f"flowcore: error: {cfg}: line 2") and "!!python/object/apply:os.system" in line


def test_a_yaml_tag_in_a_runs_config_is_one_line_naming_file_and_line(run, tmp_path, capsys):
    config = run / "config.yaml"
    config.write_text(TAG + config.read_text())
    assert main(["sample", str(run), "--make", "toy2d", "--out", str(tmp_path / "o")]) == 2
    line = error_line(capsys)
    assert line.startswith(f"flowcore: error: {config}: line 1") and "is not allowed" in line


def test_a_run_directory_without_a_config_says_what_it_expected(tmp_path, capsys):
    assert main(["eval", str(tmp_path)]) == 2
    assert "is " + str(tmp_path) + " a flowcore run directory" in error_line(capsys)


def boom(*args, **kwargs):
    raise RuntimeError("size mismatch for net.w:\n\tcopying a param with shape [3]")


def test_an_unexpected_error_is_one_line_with_its_type(run, tmp_path, capsys, monkeypatch):
    monkeypatch.setattr("flowcore.train.pipeline.sample", boom)
    assert main(["sample", str(run), "--make", "toy2d", "--out", str(tmp_path / "o")]) == 2
    assert error_line(capsys) == ("flowcore: error: RuntimeError: size mismatch for net.w: copying a param with "
                                  "shape [3] (run with --debug for the traceback)")


@pytest.mark.parametrize("where", [0, -1])
def test_debug_shows_the_traceback(run, tmp_path, capsys, monkeypatch, where):
    monkeypatch.setattr("flowcore.train.pipeline.sample", boom)
    args = ["sample", str(run), "--make", "toy2d", "--out", str(tmp_path / "o")]
    args.insert(len(args) if where == -1 else 0, "--debug")
    assert main(args) == 2
    err = capsys.readouterr().err
    assert err.startswith("Traceback (most recent call last):") and "in boom" in err
    assert err.splitlines()[-1].startswith("flowcore: error: RuntimeError: size mismatch")


def test_a_usage_error_keeps_argparses_exit_status(capsys):
    with pytest.raises(SystemExit) as exit:
        main(["sample", "run"])
    assert exit.value.code == 2
    assert "required: --make, --out" in capsys.readouterr().err


def test_a_given_file_that_is_not_there_is_named(run, tmp_path, capsys):
    assert main(["sample", str(run), "--make", "toy2d", "--given", "toy2d=missing.csv", "--out", str(tmp_path)]) == 2
    assert error_line(capsys) == "flowcore: error: missing.csv: no such file (--given toy2d=...)"


def test_out_that_is_a_file_is_named(run, tmp_path, capsys):
    taken = tmp_path / "taken"
    taken.write_text("")
    assert main(["sample", str(run), "--make", "toy2d", "--out", str(taken)]) == 2
    assert error_line(capsys) == f"flowcore: error: {taken}: exists and is not a directory (--out takes a folder " \
                                 "to write into)"
    assert main(["eval", str(run), "--out", str(tmp_path)]) == 2
    assert error_line(capsys) == f"flowcore: error: {tmp_path}: is a directory (--out takes the JSON file to write)"


@pytest.mark.parametrize("flags, message", [(["--count", "0"], "argument --count: 0: give at least 1"),
                                            (["--device", "banana"], "'banana': give cpu, cuda, cuda:N or mps"),
                                            (["--device", "cuda:99"], "'cuda:99': this machine has")])
def test_bad_flag_values_are_usage_errors(run, tmp_path, capsys, flags, message):
    with pytest.raises(SystemExit) as exit:
        main(["sample", str(run), "--make", "toy2d", "--out", str(tmp_path), *flags])
    assert exit.value.code == 2
    assert message in capsys.readouterr().err.splitlines()[-1]
