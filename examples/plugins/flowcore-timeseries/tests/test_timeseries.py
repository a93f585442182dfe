"""The timeseries plugin passes flowcore's conformance kit, and its example config trains, samples and evaluates."""

from pathlib import Path

import flowcore
from flowcore.train.config import load_config
from flowcore.train.pipeline import evaluate, train

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "timeseries.yaml"


def test_contract(flowcore_check):
    """Every check of flowcore's kit (flowcore.testing.check_plugin) on the registered modality."""
    report = flowcore_check("timeseries")
    assert {"dataset timeseries_waves", "layout agrees with encode", "codec round trip", "metrics",
            "hook module is light", "options refuse typos"} <= set(report.passed)


def test_example_config_trains_samples_and_evaluates(flowcore_registry, tmp_path):
    run = tmp_path / "run"
    overrides = [f"out_dir={run}", "train.steps=30", "train.progress_bar=false", "eval.count=64", "sample.steps=4"]
    train(load_config(EXAMPLE, overrides, flowcore_registry), flowcore_registry)
    pipe = flowcore.load(run, registry=flowcore_registry)
    samples = pipe.generate("timeseries", count=3)["timeseries"]
    assert len(samples) == 3
    for i, sample in enumerate(samples):
        pipe.bundles["timeseries"].modality.validate(sample, f"generated sample {i}")
    report = evaluate(run, registry=flowcore_registry)
    assert report["metrics"]["timeseries"]["spectrum_distance"] >= 0
