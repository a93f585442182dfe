"""`flowcore image-score`: a trained class-conditional run is sampled per class and scored."""

import json

import pytest

from flowcore.cli import main
from flowcore.errors import ConfigError
from flowcore.train.config import from_dict
from flowcore.train.pipeline import train
from flowcore_image.codec import ImageCodec
from flowcore_image.score import score_run


def _config(out_dir, modalities: dict) -> dict:
    return {
        "seed": 0, "out_dir": str(out_dir), "modalities": modalities, "data": {"dataset": "digits"},
        "model": {"network": "flowcore_image.network:ConvUNet", "options": {"channels": 1, "width": 8, "emb_dim": 32}},
        "train": {"steps": 20, "batch_size": 32, "lr": 2e-3, "cpu_threads": 1, "progress_bar": False,
                  "checkpoint_every": 20, "sample_every": 0},
        "sample": {"steps": 2, "cfg": 2.0},
    }


@pytest.fixture(scope="module")
def digits_run(tmp_path_factory):
    from flowcore.registry import Registry

    out = tmp_path_factory.mktemp("digits_run")
    modalities = {"image": {"channels": 1, "image_size": 8, "patch": 2, "classifier": "digits"},
                  "label": {"role": "condition", "num_classes": 10, "dropout": 0.1}}
    train(from_dict(_config(out, modalities), registry=Registry()), Registry())
    return out


def test_score_writes_a_class_per_row_grid_and_the_same_numbers_twice(digits_run, tmp_path, capsys):
    grid = tmp_path / "grid.png"
    first = score_run(digits_run, steps=(1, 2), count=30, grid=grid, grid_steps=2, per_class=3)
    assert set(first["steps"]) == {"1", "2"} and first["cfg"] == 2.0 and first["count"] == 30
    assert first["classifier"]["dataset"] == "digits" and first["classifier"]["test_accuracy"] > 0.9
    for row in first["steps"].values():
        assert 0.0 <= row["accuracy"] <= 1.0 and row["classifier_fd"] >= 0.0
    # 10 rows (classes) of 3 cells; 8x8 cells are enlarged 8x to 64 px, with 2 px gutters
    assert ImageCodec().read(grid).shape == (1, 10 * 66 + 2, 3 * 66 + 2)
    # the CLI gives the same numbers: every step count is sampled from seeded noise
    assert main(["image-score", str(digits_run), "--steps", "1,2", "--count", "30",
                 "--out", str(tmp_path / "score.json")]) == 0
    again = json.loads((tmp_path / "score.json").read_text())
    assert again["steps"].keys() == first["steps"].keys()
    for k in first["steps"]:
        assert {m: v for m, v in again["steps"][k].items() if m != "sample_s"} == \
               {m: v for m, v in first["steps"][k].items() if m != "sample_s"}
    capsys.readouterr()


def test_score_names_the_missing_label_modality(digits_run):
    with pytest.raises(ConfigError, match="'class'"):
        score_run(digits_run, label="class", count=10)

