"""The plugin's commands through the real CLI: an epoch budget gives the run train.epochs with the
plugin's floor; tabular-impute reads a CSV of known columns and writes every column, the known ones unchanged."""

import math
from pathlib import Path

import pytest
import torch

from flowcore.cli import main
from flowcore.errors import ConfigError
from flowcore.train.checkpoint import run_config
from flowcore.train.config import epoch_steps
from flowcore_tabular.budget import (
    MIN_STEPS,
    batch_rule_overrides,
    epoch_overrides,
    load_with_epochs,
    rows_batch,
    scaled_lr,
    transformer_batch,
    transformer_epochs,
    transformer_options,
)
from flowcore_tabular.codec import TableCsv
from flowcore_tabular.datasets import load_table

CONFIGS = Path(__file__).resolve().parents[3] / "examples" / "configs"
pytestmark = pytest.mark.usefixtures("keep_torch_threads")


def test_epoch_budget_is_the_cores_with_the_plugins_floor():
    config = load_with_epochs(CONFIGS / "tabular_titanic.yaml", [], 8)[0]
    extra = epoch_overrides(config, 800, 8)  # 25 steps of 256, lifted to the floor
    assert extra[:3] == ["train.steps=null", "train.epochs=8", f"train.min_steps={MIN_STEPS}"]
    assert epoch_steps(800, 8, 256, min_steps=MIN_STEPS) == 300


def test_rows_batch_is_the_power_of_two_nearest_rows_over_32_within_256_to_1024():
    # german credit, titanic (train splits), 12k rows, Adult, a million rows
    assert [rows_batch(n) for n in (800, 1765, 12000, 32561, 10**6)] == [256, 256, 512, 1024, 1024]
    assert math.isclose(scaled_lr(3e-3, 1024), 6e-3) and math.isclose(scaled_lr(3e-3, 256), 3e-3)
    with pytest.raises(ConfigError, match="rows"):
        rows_batch(0)


def test_transformer_rule_gives_small_tables_small_batches():
    # german credit, titanic, Adult (train splits): rows / 32 to a power of two within 64-256
    assert [transformer_batch(n)[0] for n in (800, 1765, 32561)] == [64, 64, 256]
    assert math.isclose(transformer_batch(800)[1], 3e-3 * math.sqrt(0.5)) and transformer_batch(32561)[1] == 3e-3
    assert [transformer_options(n)["depth_single"] for n in (800, 32561)] == [2, 4]
    assert [transformer_epochs(n) for n in (800, 32561)] == [12, 20]
    assert batch_rule_overrides("glu", 32561) == ["train.batch_size=1024", "train.lr=0.006"]
    with pytest.raises(ConfigError, match="batch rule"):
        batch_rule_overrides("cnn", 800)


def test_batch_rule_sets_batch_and_lr_before_the_epoch_budget():
    sets = ["data.dataset=wine", "modalities.tabular.dataset=wine"]
    config, rows, extra = load_with_epochs(CONFIGS / "tabular_titanic.yaml", sets, 12, min_steps=5,
                                           batch_rule="transformer")
    assert rows == len(load_table("wine").splits["train"])
    assert config.train.batch_size == 64 and math.isclose(config.train.lr, 3e-3 * math.sqrt(0.5), rel_tol=1e-5)
    tr = config.train
    assert tr.steps is None and tr.epochs == 12 and tr.min_steps == 5
    # the epochs counted in the rule's batches
    assert epoch_steps(rows, tr.epochs, tr.batch_size, tr.min_steps) == math.ceil(rows * 12 / 64)


@pytest.mark.slow
def test_train_for_epochs_then_impute_a_csv(tmp_path, capsys):
    run = tmp_path / "run"
    table = load_table("wine")
    sets = [f"out_dir={run}", "data.dataset=wine", "modalities.tabular.dataset=wine",
            "modalities.tabular.masking=0.5", "train.batch_size=32", "train.progress_bar=false",
            "train.cpu_threads=1", "sample.steps=4"]
    argv = ["tabular-train", str(CONFIGS / "tabular_titanic.yaml"), "--epochs", "2", "--min-steps", "3"]
    assert main([*argv, *[a for s in sets for a in ("--set", s)]]) == 0
    steps = math.ceil(len(table.splits["train"]) * 2 / 32)  # 142 rows -> 9 steps
    assert f": {steps} steps" in capsys.readouterr().out
    config = run_config(run, None)
    assert config.train.epochs == 2 and config.train.min_steps == 3 and config.train.warmup_steps <= steps // 10
    assert torch.load(run / "checkpoints" / "last.ckpt", weights_only=True)["global_step"] == steps

    known = table.splits["test"][:6]
    given = tmp_path / "given.csv"
    given.write_text("class,alcohol\n" + "".join(f"{r['class']},{r['alcohol']}\n" for r in known))
    assert main(["tabular-impute", str(run), "--given", str(given), "--out", str(tmp_path / "out"),
                 "--steps", "3"]) == 0
    rows = TableCsv(table.schema).read_all(tmp_path / "out" / "imputed.csv")  # every column, typed
    assert [(r["class"], r["alcohol"]) for r in rows] == [(r["class"], r["alcohol"]) for r in known]


def test_impute_refuses_a_csv_naming_other_columns(tmp_path):
    from flowcore.errors import DataError

    schema = load_table("wine").schema
    bad = tmp_path / "bad.csv"
    bad.write_text("alcohol,colour\n13.0,red\n")
    with pytest.raises(DataError, match="colour"):
        TableCsv(schema).read_columns(bad)
