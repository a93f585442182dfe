"""Core data the framework once passed on without naming its file: one line naming the file now.

The files are tests/data/bad/toy2d/: a points CSV with a value past float32's range, and a
JSON Lines manifest whose tenth point is NaN.
"""

from pathlib import Path

import pytest
import yaml

from flowcore.builtins.toy2d import PointsCsv
from flowcore.errors import DataError
from flowcore.train.bundle import build_bundles
from flowcore.train.config import load_config
from flowcore.train.data import build_split

BAD = Path(__file__).resolve().parent / "data" / "bad" / "toy2d"


def test_a_point_beyond_float32_is_refused_naming_file_and_line():
    path = BAD / "float32_overflow.csv"
    with pytest.raises(DataError) as err:
        PointsCsv().read_all(path)
    assert str(err.value) == f"{path}, line 4: value beyond float32's range in '1e39,0.0'"


def test_nan_in_training_data_names_the_manifest_row_as_well_as_the_item(tmp_path, registry):
    manifest = BAD / "nan_point.jsonl"
    config = tmp_path / "cfg.yaml"
    config.write_text(yaml.safe_dump({"seed": 0, "out_dir": str(tmp_path / "run"), "modalities": {"toy2d": {}},
                                      "data": {"path": str(manifest), "val_fraction": 0.0, "test_fraction": 0.0}}))
    cfg = load_config(config, registry=registry)
    data = build_split(cfg, build_bundles(cfg, registry), "train", registry)
    with pytest.raises(DataError) as err:
        for i in range(len(data)):
            data[i]
    assert str(err.value) == (f"{manifest} (train) item 9 ({manifest}, row 10): "
                              "toy2d sample holds NaN or infinite values")


def test_a_folder_item_names_its_file_and_sample(tmp_path, registry):
    folder = tmp_path / "points"
    folder.mkdir()
    (folder / "a.csv").write_text("x,y\n1,2\n3,4\n")
    config = tmp_path / "cfg.yaml"
    config.write_text(yaml.safe_dump({"seed": 0, "out_dir": str(tmp_path / "run"), "modalities": {"toy2d": {}},
                                      "data": {"path": str(folder), "val_fraction": 0.0, "test_fraction": 0.0}}))
    cfg = load_config(config, registry=registry)
    data = build_split(cfg, build_bundles(cfg, registry), "train", registry)
    assert sorted(data.item_where(i) for i in range(2)) == [f"{folder} (train) item {i} ({folder / 'a.csv'}, "
                                                           f"sample {i + 1})" for i in range(2)]
