"""The metric network: a small CNN trained here, on the real training split, never downloaded.

    images [N, C, H, W] in [-1, 1] --SmallCNN.features--> [N, 128] --head--> logits [N, K]

It gives the accuracy of class-conditional samples (does the classifier see the class that
was asked for?) and the feature space of the Fréchet distance (FID with this network in
place of Inception). Weights are cached in ``<cache>/image/<dataset>-classifier-<key>.safetensors``
with its accuracy on the real test split in the file's metadata, where ``<cache>`` is
:func:`flowcore.files.cache_dir` (``$FLOWCORE_CACHE``, else ``~/.cache/flowcore`` on Linux), and ``<key>``
hashes :data:`VERSION` and the dataset's :class:`Recipe`, so a changed network or recipe never
reuses stale weights.
"""

from __future__ import annotations

import hashlib
import json
import sys
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from torch import nn
from torch.nn import functional as F
from tqdm import tqdm

from flowcore.cache import cached_network
from flowcore.errors import DataError
from flowcore.files import cache_dir

#: bump when the network's code or the training loop changes (the recipe is hashed separately)
VERSION = "3"
FEATURES = 128


@dataclass(frozen=True)
class Recipe:
    """How one dataset's classifier is trained: each a few CPU minutes at most on 2 cores."""

    width: int = 16          # channels of the first conv pair; 2x in the second
    epochs: int = 10
    batch_size: int = 128
    lr: float = 2e-3         # AdamW peak of a one-cycle schedule
    flip: bool = False       # random horizontal flips (clothes yes, digits no)

    def key(self) -> str:
        """8 hex digits of VERSION + this recipe: part of the cache file's name."""
        text = json.dumps({"version": VERSION, **asdict(self)}, sort_keys=True)
        return hashlib.sha256(text.encode()).hexdigest()[:8]


RECIPES = {"digits": Recipe(epochs=20), "mnist5k": Recipe(epochs=15),
           "fashion_mnist": Recipe(epochs=5, flip=True), "shapes": Recipe(epochs=8)}
#: another plugin's image + label dataset (read through the registry): wider and longer, since such
#: sets are small (on the 1,600 depth images of the shape plugin's shapes_world, 10 epochs at width 16
#: reached 0.44 on its test split)
OTHER_DATASETS = Recipe(width=32, epochs=40)


def recipe_of(dataset: str) -> Recipe:
    return RECIPES.get(dataset, OTHER_DATASETS)


class SmallCNN(nn.Module):
    """2 x (conv-BN-ReLU) + pool (w), 2 x (conv-BN-ReLU) + pool (2w), avg-pool 4x4, linear -> 128 -> K."""

    def __init__(self, channels: int, num_classes: int, width: int = 16):
        super().__init__()
        w = width

        def conv(i: int, o: int) -> list[nn.Module]:
            return [nn.Conv2d(i, o, 3, padding=1, bias=False), nn.BatchNorm2d(o), nn.ReLU()]

        self.body = nn.Sequential(
            *conv(channels, w), *conv(w, w), nn.MaxPool2d(2),
            *conv(w, 2 * w), *conv(2 * w, 2 * w), nn.MaxPool2d(2, ceil_mode=True),
            nn.AdaptiveAvgPool2d(4), nn.Flatten(),
            nn.Linear(2 * w * 16, FEATURES), nn.ReLU(),
        )
        self.head = nn.Sequential(nn.Dropout(0.3), nn.Linear(FEATURES, num_classes))

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """[N, C, H, W] -> [N, 128]."""
        return self.body(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.body(x))


def _stack_split(dataset: str, split: str) -> tuple[torch.Tensor, torch.Tensor, int]:
    """Every image and label of one split: the plugin's own datasets, or any registered dataset
    that provides ``image`` and ``label`` (another plugin's, such as a depth-image set)."""
    from flowcore_image import data

    factories = {"digits": data.digits, "mnist5k": data.mnist5k, "fashion_mnist": data.fashion_mnist,
                 "shapes": data.shapes}
    if dataset in factories:
        ds = factories[dataset](split=split)
        classes = len(ds.classes)
    else:
        from flowcore.registry import get_registry

        specs = get_registry().datasets()
        spec = specs.get(dataset)
        usable = sorted(set(factories) | {n for n, s in specs.items() if {"image", "label"} <= set(s.modalities)})
        if spec is None or not {"image", "label"} <= set(spec.modalities):
            raise DataError(f"no metric classifier for dataset {dataset!r}: it needs a dataset that provides "
                            f"image and label; choose one of {usable}")
        ds = spec.build(split if split in spec.splits else "train")
        classes = None
    items = [ds[i] for i in range(len(ds))]
    images = torch.stack([torch.as_tensor(it["image"]).float() for it in items])
    labels = torch.tensor([int(it["label"]) for it in items])
    if classes is None:
        names = getattr(ds, "classes", None)
        classes = len(names) if names is not None else int(labels.max()) + 1
    return images, labels, classes


def _shift(x: torch.Tensor, g: torch.Generator) -> torch.Tensor:
    """Translate the whole batch by up to 1/14 of its size (2 pixels at 28x28, none at 8x8).

    Generated digits are not centred as carefully as MNIST's; the shifts keep the classifier
    from reading position as class. The background (-1) fills in.
    """
    max_shift = min(x.shape[-2:]) // 14
    if max_shift == 0:
        return x
    dy, dx = (int(v) for v in torch.randint(-max_shift, max_shift + 1, (2,), generator=g))
    h, w = x.shape[-2:]
    padded = F.pad(x, (max_shift,) * 4, value=-1.0)
    return padded[..., max_shift + dy: max_shift + dy + h, max_shift + dx: max_shift + dx + w]


def _flip(x: torch.Tensor, g: torch.Generator) -> torch.Tensor:
    """Mirror a random half of the batch left-right."""
    chosen = torch.rand(len(x), generator=g) < 0.5
    return torch.where(chosen[:, None, None, None], x.flip(-1), x)


def train_classifier(dataset: str, recipe: Recipe | None = None, seed: int = 0) -> SmallCNN:
    """Train a SmallCNN on the real train split of ``dataset`` (AdamW, one-cycle lr, shifts, flips)."""
    recipe = recipe or recipe_of(dataset)
    x, y, classes = _stack_split(dataset, "train")
    g = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    model = SmallCNN(x.shape[1], classes, recipe.width)
    bs = recipe.batch_size
    opt = torch.optim.AdamW(model.parameters(), lr=recipe.lr, weight_decay=1e-4)
    steps = recipe.epochs * ((len(x) + bs - 1) // bs)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=recipe.lr, total_steps=steps)
    model.train()
    # the bar shows on a terminal only: cached runs and CI logs stay quiet
    bar = tqdm(total=steps, desc=f"{dataset} metric classifier", unit="step", file=sys.stderr,
               disable=not sys.stderr.isatty())
    for _ in range(recipe.epochs):
        order = torch.randperm(len(x), generator=g)
        for start in range(0, len(x), bs):
            idx = order[start: start + bs]
            batch = _shift(x[idx], g)
            if recipe.flip:
                batch = _flip(batch, g)
            loss = F.cross_entropy(model(batch), y[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
            bar.update()
    bar.close()
    return model.eval()


@dataclass
class TrainedClassifier:
    """A trained SmallCNN and what it scored on real test images."""

    model: SmallCNN
    dataset: str
    test_accuracy: float
    test_count: int
    path: Path | None
    input_shape: tuple[int, int, int]

    def _prepare(self, images) -> torch.Tensor:
        x = images if isinstance(images, torch.Tensor) else torch.stack([torch.as_tensor(i) for i in images])
        x = x.float().clamp(-1, 1)
        c, h, w = self.input_shape
        if x.dim() != 4 or x.shape[1] != c:
            raise DataError(f"the {self.dataset} classifier takes [N, {c}, H, W] images, got {tuple(x.shape)}")
        if tuple(x.shape[-2:]) != (h, w):
            x = F.interpolate(x, size=(h, w), mode="bilinear", antialias=True, align_corners=False)
        return x

    @torch.no_grad()
    def _apply(self, fn, images, batch_size: int = 500) -> torch.Tensor:
        x = self._prepare(images)
        self.model.eval()
        return torch.cat([fn(x[i: i + batch_size]) for i in range(0, len(x), batch_size)])

    def features(self, images) -> torch.Tensor:
        """images (list of [C, H, W] or [N, C, H, W]) -> [N, 128] float32."""
        return self._apply(self.model.features, images)

    def predict(self, images) -> torch.Tensor:
        """images -> predicted class indices [N]."""
        return self._apply(self.model, images).argmax(-1)


_loaded: dict[str, TrainedClassifier] = {}


def load_classifier(dataset: str, retrain: bool = False) -> TrainedClassifier:
    """The cached classifier of ``dataset``, trained now (and cached) if missing or outdated."""
    recipe = recipe_of(dataset)
    path = cache_dir("image") / f"{dataset}-classifier-{recipe.key()}.safetensors"
    key = str(path)
    if not retrain and key in _loaded:
        return _loaded[key]
    trained: list[TrainedClassifier] = []  # one trained now keeps its accuracy unrounded

    def build(meta: dict[str, str]) -> SmallCNN:
        return SmallCNN(_input_shape(meta)[0], int(meta["classes"]), recipe.width)

    def train() -> tuple[nn.Module, dict[str, str]]:
        clf, meta = _train_and_test(dataset, recipe, path)
        trained.append(clf)
        return clf.model, meta

    model, meta = cached_network(path, recipe.key(), build, train, retrain)
    clf = trained[0] if trained else TrainedClassifier(model, dataset, float(meta["test_accuracy"]),
                                                       int(meta["test_count"]), path, _input_shape(meta))
    _loaded[key] = clf
    return clf


def _input_shape(meta: dict[str, str]) -> tuple[int, int, int]:
    c, h, w = (int(v) for v in meta["input_shape"].split(","))
    return c, h, w


def _train_and_test(dataset: str, recipe: Recipe, path: Path) -> tuple[TrainedClassifier, dict[str, str]]:
    """A classifier trained now, scored on the real test split, and the metadata its file keeps."""
    model = train_classifier(dataset, recipe)
    x_test, y_test, classes = _stack_split(dataset, "test")
    clf = TrainedClassifier(model, dataset, 0.0, len(y_test), path, tuple(x_test.shape[1:]))
    clf.test_accuracy = float((clf.predict(x_test) == y_test).float().mean())
    return clf, {"version": VERSION, "recipe": json.dumps(asdict(recipe)), "dataset": dataset,
                 "test_accuracy": f"{clf.test_accuracy:.6f}", "test_count": str(len(y_test)),
                 "classes": str(classes), "input_shape": ",".join(map(str, clf.input_shape))}
