import subprocess
import sys

import pytest

from flowcore.errors import ConfigError, DataError
from flowcore.registry import get_registry
from flowcore.testing import check_modality


@pytest.mark.parametrize("tokenizer", ["row", "column"])
def test_conformance_on_titanic(tmp_path, tokenizer):
    registry = get_registry()
    modality = registry.modality("tabular", dataset="titanic", tokenizer=tokenizer)
    # enough rows for the metrics to tell real from noise (MLE needs both classes, C2ST folds)
    # atol: float32 tokens carry a 4-decimal fare through a quantile map to about 1e-4
    report = check_modality(modality, tmp_path, datasets=["titanic"], samples=modality.train_rows[:240],
                            atol=1e-3, registry=registry)
    assert {"tokenizer round trip", "codec round trip", "metrics", "path endpoints"} <= set(report.passed)


def test_conformance_on_a_csv_with_every_kind_and_missing_values(tmp_path, mixed_table_csv):
    registry = get_registry()
    modality = registry.modality("tabular", csv=str(mixed_table_csv), tokenizer="column", target="colour")
    assert [c.kind for c in modality.schema.columns] == ["integer", "numeric", "datetime", "boolean",
                                                        "categorical", "datetime"]
    # datetimes spread over months move by seconds through float32 tokens: atol in seconds.
    # Samples are a strict subset of the rows the modality was fitted on, so DCR has a holdout.
    report = check_modality(modality, tmp_path, samples=modality.train_rows[:100], atol=10.0, registry=registry)
    assert "codec round trip" in report.passed


def test_options_are_checked():
    registry = get_registry()
    with pytest.raises(ConfigError, match="exactly one of"):
        registry.modality("tabular")
    with pytest.raises(ConfigError, match=r"tokenizer: expected one of 'row', 'column', got 'pixels'"):
        registry.modality("tabular", dataset="wine", tokenizer="pixels")
    with pytest.raises(DataError, match="no column 'nope'"):
        registry.modality("tabular", dataset="wine", target="nope")
    with pytest.raises(ConfigError, match="applies to csv: tables"):
        registry.modality("tabular", dataset="wine", schema={"class": "integer"})
    with pytest.raises(ConfigError, match="masking: must be <= 1"):
        registry.modality("tabular", dataset="wine", masking=1.5)


def test_options_are_checked_before_torch_is_imported():
    """A config's tabular options and data.options are checked by flowcore_tabular.options (no torch)."""
    code = ("import sys\n"
            "from flowcore.errors import ConfigError\n"
            "from flowcore.registry import get_registry\n"
            "from flowcore.train.config import from_dict\n"
            "raw = {'modalities': {'tabular': {'dataset': 'wine', 'tokeniser': 'row'}}, 'data': {'dataset': 'wine'}}\n"
            "try:\n"
            "    from_dict(raw, source='t.yaml', registry=get_registry())\n"
            "except ConfigError as exc:\n"
            "    print(exc)\n"
            "print('torch' in sys.modules)\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.splitlines() == ["t.yaml: modalities.tabular.tokeniser: unknown key; did you mean 'tokenizer'?",
                                "False"]
