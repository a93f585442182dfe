"""Real-vs-generated image metrics, computed without any downloaded network.

- ``classifier_fd``: :func:`flowcore.metrics.frechet_distance` between Gaussians fitted to the
  metric classifier's 128 features of the two sets: FID with a network trained here in place
  of Inception.
- ``class_histogram_tv``: total variation between the classifier's predicted-class
  histograms of the two sets.
- ``conditional_accuracy``: the fraction of generated images the classifier assigns the
  class they were generated for.
- ``pixel_moments``: mean over channels of |mean_a - mean_b| + |std_a - std_b| of pixel values.
- ``pixel_histogram_tv``: total variation between 64-bin histograms of pixel values on
  [-1, 1] (values outside are clamped into the end bins), pooled over channels.
"""

from __future__ import annotations

from typing import Sequence

import torch

from flowcore.errors import DataError
from flowcore.metrics import frechet_distance


def as_batch(images: Sequence[torch.Tensor] | torch.Tensor) -> torch.Tensor:
    """A list of [C, H, W] or a [N, C, H, W] tensor -> [N, C, H, W] float32."""
    if isinstance(images, torch.Tensor):
        x = images
    else:
        if len(images) == 0:
            raise DataError("image metric: no images given")
        x = torch.stack([torch.as_tensor(i) for i in images])
    if x.dim() != 4:
        raise DataError(f"image metric: images must be [N, C, H, W], got {tuple(x.shape)}")
    return x.float()


def total_variation(p: torch.Tensor, q: torch.Tensor) -> float:
    """0.5 * sum |p/|p| - q/|q||, for two histograms (counts)."""
    p, q = p.double(), q.double()
    return float(0.5 * (p / p.sum() - q / q.sum()).abs().sum())


def pixel_moments(real, generated) -> float:
    a, b = as_batch(real), as_batch(generated)
    if a.shape[1] != b.shape[1]:
        raise DataError(f"pixel_moments: {a.shape[1]} vs {b.shape[1]} channels")
    dims = (0, 2, 3)
    gap = (a.mean(dims) - b.mean(dims)).abs() + (a.std(dims) - b.std(dims)).abs()
    return float(gap.mean())


def pixel_histogram_tv(real, generated, bins: int = 64) -> float:
    def hist(x: torch.Tensor) -> torch.Tensor:
        return torch.histc(x.clamp(-1, 1), bins=bins, min=-1, max=1)

    return total_variation(hist(as_batch(real)), hist(as_batch(generated)))


def class_histogram_tv(classifier, real, generated) -> float:
    k = classifier.model.head[-1].out_features
    ha = torch.bincount(classifier.predict(as_batch(real)), minlength=k)
    hb = torch.bincount(classifier.predict(as_batch(generated)), minlength=k)
    return total_variation(ha, hb)


def classifier_fd(classifier, real, generated) -> float:
    return frechet_distance(classifier.features(as_batch(real)), classifier.features(as_batch(generated)))


def conditional_accuracy(classifier, generated, labels: Sequence[int] | torch.Tensor) -> float:
    """Fraction of ``generated`` images whose predicted class equals the class asked for."""
    labels = torch.as_tensor(list(labels) if not isinstance(labels, torch.Tensor) else labels).long()
    pred = classifier.predict(as_batch(generated))
    if pred.shape != labels.shape:
        raise DataError(f"conditional_accuracy: {len(pred)} images but {len(labels)} labels")
    return float((pred == labels).float().mean())
