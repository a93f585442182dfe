"""The built-in modalities pass the conformance kit and their parts behave as documented."""

import inspect

import numpy as np
import pytest
import torch

from flowcore.builtins.label import Label
from flowcore.builtins.options import LabeledGaussiansOptions, LabelOptions, PointsOptions
from flowcore.builtins.toy2d import LabeledGaussians, PointsDataset, mmd, sample_points, sliced_wasserstein
from flowcore.errors import ConfigError, DataError
from flowcore.testing import check_modality


def test_toy2d_conformance(registry, tmp_path):
    m = registry.modality("toy2d")
    report = check_modality(m, tmp_path, datasets=["moons", "checkerboard", "spirals", "eight_gaussians"])
    assert "codec round trip" in report.passed and "metrics" in report.passed


def test_label_conformance(registry, tmp_path):
    m = registry.modality("label", classes=["cat", "dog", "bird"])
    report = check_modality(m, tmp_path, samples=[0, 0, 0, 0, 0, 1, 2, 0])
    assert "tokenizer round trip" in report.passed


def test_label_one_hot_is_plus_minus_one(registry):
    tok = registry.modality("label", num_classes=4).tokenizer.encode(torch.tensor([2, 0]))
    assert tok.values.tolist() == [[[-1, -1, 1, -1]], [[1, -1, -1, -1]]]


def test_label_rejects_unknown_class(registry, tmp_path):
    m = registry.modality("label", classes=["a", "b"])
    (tmp_path / "x.txt").write_text("zebra")
    with pytest.raises(DataError, match="x.txt"):
        m.codec.read(tmp_path / "x.txt")


def test_splits_are_deterministic_and_distinct(registry):
    spec = registry.dataset("moons")
    a, b = spec.build("train"), spec.build("train")
    assert torch.equal(a.points, b.points)
    assert not torch.equal(spec.build("val").points[:100], a.points[:100])


def test_corrupt_points_csv_names_file_and_line(registry, tmp_path):
    p = tmp_path / "pts.csv"
    p.write_text("x,y\n1,2\n3,banana\n")
    with pytest.raises(DataError, match=r"pts.csv, line 3"):
        registry.modality("toy2d").codec.read_all(p)
    p.write_text("x,y\n1,nan\n")
    with pytest.raises(DataError, match="non-finite"):
        registry.modality("toy2d").codec.read_all(p)


def test_sliced_wasserstein_matches_the_gaussian_shift():
    # For two Gaussians differing by a shift d, W2 of every 1-D projection is |d . u|;
    # the average of (d.u)^2 over uniform directions in 2-D is |d|^2 / 2.
    g = torch.Generator().manual_seed(0)
    a = torch.randn(20000, 2, generator=g)
    d = torch.tensor([1.0, 0.0])
    sw = sliced_wasserstein(a, a + d, projections=2000)
    assert abs(sw - (1 / 2) ** 0.5) < 0.03


def test_mmd_separates_distributions():
    assert mmd(sample_points("moons", 1000, 0), sample_points("moons", 1000, 1)) < 0.01
    assert mmd(sample_points("moons", 1000, 0), sample_points("spirals", 1000, 1)) > 0.05


def test_shapes_have_documented_support():
    cb = sample_points("checkerboard", 5000).numpy()
    assert np.all(np.abs(cb[:, 0]) <= 2) and np.all(np.abs(cb[:, 1]) <= 2)
    # a checkerboard: the cell (floor x1 + floor x2) parity is constant
    assert len(set(((np.floor(cb[:, 0]) + np.floor(cb[:, 1])) % 2).tolist())) == 1


def test_option_defaults_are_the_factories_defaults():
    """flowcore.builtins.options replaces the factories' checks: its defaults must be the factories' own."""
    for model, factory in [(LabelOptions, Label), (PointsOptions, PointsDataset),
                           (LabeledGaussiansOptions, LabeledGaussians)]:
        params = inspect.signature(factory).parameters
        for name, field in model.model_fields.items():
            assert params[name].default == field.default, (factory, name)


def test_label_options_need_classes(registry):
    with pytest.raises(ConfigError, match="modality 'label': the label modality needs num_classes or classes"):
        registry.modality("label")
    with pytest.raises(ConfigError, match="num_classes is 3 but 2 classes are named"):
        registry.modality("label", num_classes=3, classes=["cat", "dog"])
    assert registry.modality("label", classes=["cat", "dog"]).classes == ["cat", "dog"]
