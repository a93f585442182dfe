"""Metrics against analytic answers; the classifier is trained, cached and honest."""

import pytest
import torch

from flowcore_image import classifier as C
from flowcore_image import metrics as M


def test_pixel_metrics_have_their_analytic_values():
    zeros, half = torch.zeros(4, 2, 3, 3), torch.full((4, 2, 3, 3), 0.5)
    assert M.pixel_moments(zeros, half) == pytest.approx(0.5)
    spread = torch.cat([torch.full((2, 1, 2, 2), -1.0), torch.full((2, 1, 2, 2), 1.0)])
    assert M.pixel_moments(torch.zeros(4, 1, 2, 2), spread) == pytest.approx(float(spread.std()))
    assert M.pixel_histogram_tv(-torch.ones(3, 1, 4, 4), torch.ones(3, 1, 4, 4)) == pytest.approx(1.0)
    assert M.pixel_histogram_tv(spread, spread.flip(0)) == 0.0


def test_digits_classifier_is_trained_cached_and_reports_test_accuracy(image_cache):
    C._loaded.clear()
    clf = C.load_classifier("digits")
    key = C.RECIPES["digits"].key()
    assert clf.path == image_cache / "image" / f"digits-classifier-{key}.safetensors" and clf.path.exists()
    assert clf.test_count == 179 and clf.test_accuracy > 0.93
    x, y, _ = C._stack_split("digits", "test")
    assert M.conditional_accuracy(clf, x, y) == pytest.approx(clf.test_accuracy)
    C._loaded.clear()
    again = C.load_classifier("digits")  # from the file this time: same weights, same score
    assert again.test_accuracy == pytest.approx(clf.test_accuracy, abs=1e-6)
    assert torch.equal(again.features(x[:5]), clf.features(x[:5]))


def test_a_changed_recipe_is_not_served_from_a_stale_cache(image_cache, monkeypatch):
    before = C.load_classifier("digits")
    monkeypatch.setitem(C.RECIPES, "digits", C.Recipe(width=8, epochs=1))
    C._loaded.clear()
    after = C.load_classifier("digits")
    assert after.path != before.path and after.path.exists() and before.path.exists()
    assert after.model.body[0].out_channels == 8  # retrained with the new recipe, not the cached weights
    monkeypatch.setattr(C, "VERSION", "test")
    assert C.RECIPES["digits"].key() != after.path.stem.rsplit("-", 1)[1]
    C._loaded.clear()


def test_classifier_metrics_separate_real_from_shuffled_pixels():
    clf = C.load_classifier("digits")
    x, _, _ = C._stack_split("digits", "train")
    half = len(x) // 2
    g = torch.Generator().manual_seed(0)
    scrambled = x[half:].flatten(1)[:, torch.randperm(64, generator=g)].reshape(x[half:].shape)
    # same pixel values, destroyed structure: pixel histograms cannot tell, the classifier can
    assert M.pixel_histogram_tv(x[half:], scrambled) == 0.0
    assert M.classifier_fd(clf, x[:half], x[half:]) < 0.1 * M.classifier_fd(clf, x[:half], scrambled)


def test_any_registered_image_and_label_dataset_gets_a_classifier(monkeypatch):
    """Another plugin's dataset (here a stand-in for the shape plugin's depth images) is read
    through the registry; one without images is refused with the usable names."""
    import torch

    import flowcore.registry
    from flowcore.errors import DataError
    from flowcore.spec import DatasetSpec

    def depths(split: str):
        g = torch.Generator().manual_seed(0 if split == "train" else 1)
        return [{"image": torch.rand(1, 8, 8, generator=g) * 2 - 1, "label": i % 3} for i in range(12)]

    specs = {"depths": DatasetSpec("depths", ("image", "label"), depths),
             "points": DatasetSpec("points", ("toy2d", "label"), depths)}
    monkeypatch.setattr(flowcore.registry, "get_registry", lambda: type("R", (), {"datasets": lambda self: specs})())
    images, labels, classes = C._stack_split("depths", "test")
    assert images.shape == (12, 1, 8, 8) and labels.tolist() == [i % 3 for i in range(12)] and classes == 3
    with pytest.raises(DataError, match=r"dataset 'points': it needs a dataset that provides image and label.*depths"):
        C._stack_split("points", "train")
