"""The lidar modality passes the conformance kit; the dataset, options, validation and preview."""

import subprocess
import sys

import numpy as np
import pytest
import torch
from PIL import Image

from flowcore.errors import ConfigError, DataError
from flowcore.testing import check_modality
from flowcore_lidar.codec import read_points

SMALL = {"sensor": "cpu32", "n": 6, "held_out": 6}


@pytest.mark.parametrize("drop_mask", [False, True])
def test_conformance_on_simulated_scans(registry, tmp_path, lidar_cache, drop_mask):
    m = registry.modality("lidar", sensor="cpu32", patch=[4, 16], drop_mask=drop_mask)
    report = check_modality(m, tmp_path, datasets=["lidar_street"], dataset_options=SMALL)
    assert {"dataset lidar_street", "tokenizer round trip", "codec round trip", "metrics"} <= set(report.passed)


def test_the_dataset_is_cached_and_its_splits_differ(registry, lidar_cache):
    spec = registry.dataset("lidar_street")
    train = spec.build("train", **SMALL)
    assert list(lidar_cache.rglob("scans.npz")) and len(train) == 6
    again = spec.build("train", **SMALL)
    assert all(torch.equal(train[i]["lidar"], again[i]["lidar"]) for i in range(6))
    fresh = spec.build("train", **SMALL, cache=False)
    assert torch.allclose(fresh[0]["lidar"], train[0]["lidar"], atol=1e-4)  # cached depth is kept in 2 mm steps
    test = spec.build("test", **SMALL)
    assert not torch.equal(test[0]["lidar"], train[0]["lidar"])
    assert [train[i]["label"] for i in range(6)] == [lab["cars"] for lab in train.labels]


def test_options_are_checked_before_building(registry):
    with pytest.raises(ConfigError, match="sensor"):
        registry.modality("lidar", sensor="vlp16")
    with pytest.raises(DataError, match="must divide"):
        registry.modality("lidar", sensor="cpu32", patch=[5, 16])
    with pytest.raises(DataError, match="fov_up"):
        registry.modality("lidar", fov_up=-30.0)


def test_validate_names_where(registry):
    m = registry.modality("lidar", sensor="cpu16", patch=[4, 16])
    m.validate(torch.zeros(2, 16, 512), "ok")
    bad = {"shape": torch.zeros(2, 32, 256), "ints": torch.zeros(2, 16, 512, dtype=torch.int16),
           "nan": torch.full((2, 16, 512), float("nan")), "loud": torch.full((2, 16, 512), 1.5)}
    for where, sample in bad.items():
        with pytest.raises(DataError, match=f"^{where}:"):
            m.validate(sample, where)


def test_preview_shows_range_and_birds_eye_views(registry, tmp_path):
    m = registry.modality("lidar", sensor="cpu32", patch=[4, 16])
    s = m.sensor
    depth = np.zeros(s.shape)
    depth[-8:] = 10.0  # the lowest beams see something 10 m away all around
    scan = torch.from_numpy(s.from_depth(depth, np.full(s.shape, 0.5)))
    path = m.preview([scan, torch.full((2, 32, 256), -1.0)], tmp_path / "p")
    with Image.open(path) as img:
        pixels = np.asarray(img.convert("RGB"))
    assert path.name == "p.png" and pixels.shape == (256 + 4 + 256, 768 + 4 + 256, 3)
    second = 256 + 4  # rows: 32 beams x 3 of depth, a 4-pixel gutter, reflectance
    assert pixels[second: second + 96, :768].max() == 0 and pixels[second + 100: second + 196, :768].max() == 0
    assert (pixels[second + 96: second + 100, :768] == 255).all()
    assert [p.name for p in sorted(tmp_path.glob("*.ply"))] == ["p_0000.ply", "p_0001.ply"]
    assert len(read_points(tmp_path / "p_0000.ply")) == 8 * 256 and len(read_points(tmp_path / "p_0001.ply")) == 0
    bev = pixels[:256, 772:]
    lit = np.argwhere(bev.sum(-1) > 0)
    radius = np.hypot(lit[:, 0] - 128, lit[:, 1] - 128) * 80 / 256
    ring = radius[radius > 2]  # leave out the sensor mark
    assert np.median(np.abs(ring - 10 * np.cos(np.radians(22))) ) < 3  # a ring of points ~9 m out


def test_discovery_does_not_import_torch_or_trimesh():
    code = "import sys, flowcore_lidar.plugin; print(any(m in sys.modules for m in ('torch', 'trimesh')))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
