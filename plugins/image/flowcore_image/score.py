"""Score a class-conditional image run: `flowcore image-score RUN`.

For each requested Euler step count it generates ``count`` images for the classes
0, 1, ..., K-1, 0, 1, ... in turn (classifier-free guidance ``cfg``; noise seeded per batch, so
every step count starts from the same noise), and measures with the run's metric classifier
(the ``image`` modality's ``classifier`` option):

    accuracy            fraction of images the classifier assigns the class asked for
    classifier_fd       Fréchet distance of classifier features to the first ``count`` real test images
    class_histogram_tv  TV of predicted-class histograms, real vs generated
    pixel_moments, pixel_histogram_tv  pixel statistics (flowcore_image.metrics)

It writes a grid PNG (row = class, ``per_class`` columns) of the samples at ``grid_steps``.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Sequence

import torch

import flowcore
from flowcore.errors import ConfigError
from flowcore.io import atomic_path
from flowcore_image import metrics as M
from flowcore_image.classifier import _stack_split
from flowcore_image.codec import ImageCodec
from flowcore_image.modality import make_grid


def _grid_order(classes: int, per_class: int) -> list[int]:
    """Indices of samples for a grid with one row per class: sample k + classes * j has class k."""
    return [k + classes * j for k in range(classes) for j in range(per_class)]


def score_run(run_dir: str | Path, steps: Sequence[int] = (8,), count: int = 1000, cfg: float | None = None,
              grid: str | Path | None = None, grid_steps: int = 8, per_class: int = 10, image: str = "image",
              label: str = "label", batch_size: int = 500, registry=None, device: str | None = None,
              progress: bool = False, solver: str = "euler") -> dict[str, Any]:
    """Class accuracy, classifier FD and pixel statistics of a run's samples at each step count.

    Sampled through ``flowcore.load(run_dir, device)`` (CUDA when there is one), with ``solver``
    (Euler; ``meanflow`` for a run trained with ``flow.objective: meanflow``), the run's
    ``sample.shift``; batch k of ``batch_size`` is drawn from seed k * batch_size, on any device."""
    pipe = flowcore.load(run_dir, device=device, registry=registry)
    for name in (image, label):
        if name not in pipe.bundles:
            raise ConfigError(f"{run_dir}: image-score needs modalities {image!r} and {label!r}; "
                              f"the run has {list(pipe.bundles)}")
    modality = pipe.bundles[image].modality
    clf = modality.classifier
    cfg = pipe.config.sample.cfg if cfg is None else cfg
    real, _, classes = _stack_split(modality.classifier_dataset, "test")
    real = real[:count]
    labels = [i % classes for i in range(count)]
    per_class = min(per_class, count // classes)
    rows: dict[str, dict[str, float]] = {}
    for n_steps in steps:
        start = time.perf_counter()
        made = pipe.generate(image, {label: labels}, count, batch_size=batch_size, progress=progress,
                             steps=n_steps, solver=solver, solver_options={}, cfg=cfg, seed=0, unaided=False)[image]
        x = torch.stack(made).clamp(-1, 1)
        rows[str(n_steps)] = {
            "accuracy": round(M.conditional_accuracy(clf, x, labels), 4),
            "classifier_fd": round(M.classifier_fd(clf, real, x), 3),
            "class_histogram_tv": round(M.class_histogram_tv(clf, real, x), 4),
            "pixel_moments": round(M.pixel_moments(real, x), 4),
            "pixel_histogram_tv": round(M.pixel_histogram_tv(real, x), 4),
            "sample_s": round(time.perf_counter() - start, 1),
        }
        if grid is not None and n_steps == grid_steps:
            with atomic_path(Path(grid)) as tmp:
                ImageCodec().write(make_grid(x[_grid_order(classes, per_class)], columns=per_class), tmp)
    return {"run": str(run_dir), "classifier": {"dataset": modality.classifier_dataset,
                                                "test_accuracy": round(clf.test_accuracy, 4),
                                                "test_count": clf.test_count, "file": str(clf.path)},
            "count": count, "cfg": cfg, "solver": solver, "steps": rows,
            "grid": None if grid is None else str(grid)}
