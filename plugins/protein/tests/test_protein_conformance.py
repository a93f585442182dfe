"""The core's conformance kit on the protein modality (generated and real chains)."""

import typing

import pytest

from flowcore.errors import DataError
from flowcore.testing import check_modality
from flowcore_protein.metrics import METRICS
from flowcore_protein.modality import Protein
from flowcore_protein.options import MetricName

# A dispersed noise backbone has no CA clashes, and neither has a real chain, so clash_rate
# cannot rank real-vs-real above real-vs-noise; it is checked against built clashes in
# test_protein_metrics instead.
RANKED = [m for m in METRICS if m != "clash_rate"]


def test_conformance_on_generated_backbones(registry, tmp_path):
    modality = registry.modality("protein", metrics=RANKED, tm_samples=6)
    report = check_modality(modality, tmp_path, datasets=["protein_ideal"], registry=registry,
                            dataset_options={"size": 6, "min_length": 40, "max_length": 90},
                            sizes=[60, 256, 300])
    assert "variable-length layouts" in report.passed and "codec round trip" in report.passed
    assert "metrics" in report.passed and not report.skipped.get("tokenizer round trip")
    # the hook module and the options model list the metrics without importing them: the lists must agree
    assert tuple(registry.spec("protein").metrics) == METRICS == typing.get_args(MetricName)


def test_conformance_on_real_chains(tmp_path):
    from flowcore_protein.data import theseus

    try:
        ds = theseus("train", max_files=12)
    except DataError as exc:
        pytest.skip(str(exc))
    modality = Protein(metrics=RANKED, tm_samples=4)
    modality.name = "protein"
    samples = [ds[i]["protein"] for i in range(min(4, len(ds)))]
    report = check_modality(modality, tmp_path, samples=samples, sizes=[60, 256])
    assert "codec round trip" in report.passed and "metrics" in report.passed
