"""End to end through the core pipeline: train a few steps, sample a CSV, evaluate to JSON."""

import json
from pathlib import Path

import pytest

from flowcore.registry import get_registry
from flowcore.train.config import load_config
from flowcore.train.pipeline import evaluate, sample, train
from flowcore_tabular.codec import TableCsv

CONFIGS = Path(__file__).resolve().parents[3] / "examples" / "configs"


pytestmark = pytest.mark.usefixtures("keep_torch_threads")


@pytest.mark.slow
@pytest.mark.parametrize("config_name,overrides", [
    ("tabular_titanic.yaml", []),
    ("tabular_adult_transformer.yaml", ["data.dataset=titanic", "modalities.tabular.dataset=titanic",
                                        "model.options.hidden_size=32", "model.options.depth_single=1",
                                        "model.options.num_heads=2", "train.batch_size=64"]),
])
def test_train_sample_eval(tmp_path, config_name, overrides):
    config = load_config(CONFIGS / config_name, [
        f"out_dir={tmp_path / 'run'}", "train.steps=20", "train.checkpoint_every=20", "train.progress_bar=false",
        "train.cpu_threads=1", "sample.steps=4", *overrides])
    train(config)
    [written] = sample(tmp_path / "run", ["tabular"], {}, tmp_path / "samples", count=50, device="cpu").paths
    modality = get_registry().modality("tabular", dataset="titanic")
    rows = TableCsv(modality.schema).read_all(written)  # generated rows parse under the schema
    assert len(rows) == 50
    result = evaluate(tmp_path / "run", tmp_path / "eval.json", count=120, device="cpu")
    saved = json.loads((tmp_path / "eval.json").read_text())
    assert set(saved["metrics"]["tabular"]) == {"shape", "trend", "c2st", "mle_auc", "alpha_precision",
                                                "beta_recall", "dcr_gap"}
    assert result["metrics"]["tabular"]["shape"] == saved["metrics"]["tabular"]["shape"]
