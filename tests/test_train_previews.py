"""Training-time previews: on by default (ten times a run) where a made modality draws one; 0 turns them off."""

from flowcore.train.config import from_dict
from flowcore.train.pipeline import train


def _run(tmp_path, registry, modality, dataset, **train_keys):
    config = from_dict({
        "seed": 0, "out_dir": str(tmp_path / "run"), "modalities": {modality: {}}, "data": {"dataset": dataset},
        "model": {"network": "mlp", "hidden": 16, "depth": 1, "time_dim": 8}, "sample": {"steps": 2, "count": 8},
        "train": {"steps": 20, "batch_size": 32, "ema": 0, "checkpoint_every": 1, "progress_bar": False,
                  "cpu_threads": 1, **train_keys}}, registry=registry)
    train(config, registry)
    return sorted(p.name for p in (tmp_path / "run" / "samples").glob("step_*"))


def test_previews_are_on_by_default_ten_times_a_run(tmp_path, registry):
    steps = _run(tmp_path, registry, "toy2d", "moons")
    assert steps == [f"step_{s:06d}" for s in range(2, 21, 2)]
    assert (tmp_path / "run" / "samples" / "step_000020" / "toy2d" / "sample_preview.png").is_file()


def test_sample_every_zero_turns_them_off(tmp_path, registry):
    assert _run(tmp_path, registry, "toy2d", "moons", sample_every=0) == []
