"""toy2d: 2-D point distributions. A sample is one point ``[2]``; a batch is one token per point.

The four datasets follow the shapes common in the flow literature (FFJORD, torchcfm):
eight gaussians on a circle, two moons, a 4x4 checkerboard, two spirals. All are generated
from a seed, so the same split is the same points on every machine. ``eight_gaussians_labeled``
is ``eight_gaussians`` (the same points) with each point's component index (or that index
modulo ``classes``) as a ``label``: a class-conditional task whose answer is known.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
from torch.utils.data import Dataset

from flowcore.errors import DataError
from flowcore.io import atomic_path
from flowcore.modality import Codec, Metric, Modality, Tokenizer, Tokens

SPLIT_SEEDS = {"train": 0, "val": 1, "test": 2}
SPLIT_SIZES = {"train": 20_000, "val": 2_000, "test": 2_000}


EIGHT_GAUSSIANS_RADIUS, EIGHT_GAUSSIANS_STD = 2.0, 0.15


def eight_gaussian_centers() -> torch.Tensor:
    """The component means of eight_gaussians, ``[8, 2]``: row k sits at angle k * 45 deg."""
    angles = torch.arange(8, dtype=torch.float64) * (2 * math.pi / 8)
    return EIGHT_GAUSSIANS_RADIUS * torch.stack([torch.cos(angles), torch.sin(angles)], 1)


def in_class(points: torch.Tensor, label: int, classes: int = 8) -> torch.Tensor:
    """``[N]`` bool: whether each point ``[N, 2]`` lies within 3 std of a gaussian of class ``label``
    (``eight_gaussians_labeled`` with ``classes``): the known answer of class-conditional sampling."""
    d, nearest = torch.cdist(torch.as_tensor(points).double().reshape(-1, 2), eight_gaussian_centers()).min(1)
    return (nearest % classes == label) & (d < 3 * EIGHT_GAUSSIANS_STD)


def _eight_gaussians_labeled(rng: np.random.Generator, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Points ``[n, 2]`` and the index ``[n]`` of the component each was drawn from."""
    labels = rng.integers(0, 8, n)
    angles = labels * (2 * math.pi / 8)
    centers = EIGHT_GAUSSIANS_RADIUS * np.stack([np.cos(angles), np.sin(angles)], 1)
    return centers + EIGHT_GAUSSIANS_STD * rng.standard_normal((n, 2)), labels


def _eight_gaussians(rng: np.random.Generator, n: int) -> np.ndarray:
    return _eight_gaussians_labeled(rng, n)[0]


def _moons(rng: np.random.Generator, n: int) -> np.ndarray:
    upper = rng.random(n) < 0.5
    a = rng.random(n) * math.pi
    x = np.where(upper, np.cos(a), 1 - np.cos(a))
    y = np.where(upper, np.sin(a), 0.5 - np.sin(a))
    pts = np.stack([x - 0.5, y - 0.25], 1) * 1.5
    return pts + 0.05 * rng.standard_normal((n, 2))


def _checkerboard(rng: np.random.Generator, n: int) -> np.ndarray:
    x1 = rng.random(n) * 4 - 2
    x2 = rng.random(n) - rng.integers(0, 2, n) * 2 + np.floor(x1) % 2
    return np.stack([x1, x2], 1)


def _spirals(rng: np.random.Generator, n: int) -> np.ndarray:
    half = n // 2 + 1
    r = np.sqrt(rng.random(half)) * 540 * (2 * math.pi) / 360
    d = np.stack([-np.cos(r) * r + rng.random(half) * 0.5, np.sin(r) * r + rng.random(half) * 0.5], 1)
    return (np.concatenate([d, -d])[rng.permutation(2 * half)[:n]]) / 3.0


GENERATORS = {
    "eight_gaussians": _eight_gaussians,
    "moons": _moons,
    "checkerboard": _checkerboard,
    "spirals": _spirals,
}


def sample_points(shape: str, n: int, seed: int = 0) -> torch.Tensor:
    """``n`` points of the named distribution, ``[n, 2]`` float32."""
    return torch.from_numpy(GENERATORS[shape](np.random.default_rng(seed), n)).float()


class PointsDataset(Dataset):
    """Items ``{"toy2d": point [2]}``; fixed by split (train/val/test use different seeds)."""

    def __init__(self, shape: str, split: str = "train", size: int | None = None, seed: int = 0):
        n = size if size is not None else SPLIT_SIZES[split]
        self.points = sample_points(shape, n, seed=1000 * seed + SPLIT_SEEDS[split])

    def __len__(self) -> int:
        return len(self.points)

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        return {"toy2d": self.points[i]}


def eight_gaussians(split: str = "train", **kw) -> PointsDataset:
    return PointsDataset("eight_gaussians", split, **kw)


class LabeledGaussians(PointsDataset):
    """Items ``{"toy2d": point [2], "label": class}``: eight_gaussians' points, labelled.

    ``classes`` (2, 4 or 8) merges components: a point of component k has class
    ``k % classes``, so with fewer classes each class is a mixture of 8 / classes gaussians
    spread evenly round the circle (mean 0: a one-step sample of a curved flow lands there).
    """

    def __init__(self, split: str = "train", size: int | None = None, seed: int = 0, classes: int = 8):
        n = size if size is not None else SPLIT_SIZES[split]
        rng = np.random.default_rng(1000 * seed + SPLIT_SEEDS[split])
        points, components = _eight_gaussians_labeled(rng, n)
        self.points = torch.from_numpy(points).float()
        self.labels = torch.from_numpy(components % classes).long()

    def __getitem__(self, i: int) -> dict:
        return {"toy2d": self.points[i], "label": int(self.labels[i])}


def eight_gaussians_labeled(split: str = "train", **kw) -> LabeledGaussians:
    return LabeledGaussians(split, **kw)


def moons(split: str = "train", **kw) -> PointsDataset:
    return PointsDataset("moons", split, **kw)


def checkerboard(split: str = "train", **kw) -> PointsDataset:
    return PointsDataset("checkerboard", split, **kw)


def spirals(split: str = "train", **kw) -> PointsDataset:
    return PointsDataset("spirals", split, **kw)


class PointsCsv(Codec):
    """CSV with one ``x,y`` row per point (an optional ``x,y`` header line is skipped)."""

    extensions = (".csv",)

    def read_all(self, path: Path) -> list[torch.Tensor]:
        rows = []
        try:
            lines = Path(path).read_text().splitlines()
        except (OSError, UnicodeDecodeError) as exc:
            raise DataError(f"{path}: cannot read points CSV: {exc}") from exc
        for lineno, line in enumerate(lines, 1):
            if not line.strip() or (lineno == 1 and line.replace(" ", "").lower() == "x,y"):
                continue
            parts = line.split(",")
            try:
                if len(parts) != 2:
                    raise ValueError(f"expected 2 columns, got {len(parts)}")
                xy = [float(p) for p in parts]
            except ValueError as exc:
                raise DataError(f"{path}, line {lineno}: not an 'x,y' point ({exc}): {line[:80]!r}") from exc
            point = torch.tensor(xy, dtype=torch.float32)
            if not torch.isfinite(point).all():  # 1e39 is a finite float64 but overflows float32
                why = "non-finite value" if not all(math.isfinite(v) for v in xy) else "value beyond float32's range"
                raise DataError(f"{path}, line {lineno}: {why} in {line[:80]!r}")
            rows.append(point)
        if not rows:
            raise DataError(f"{path}: no points in file")
        return rows

    def read(self, path: Path) -> torch.Tensor:
        return self.read_all(path)[0]

    def write(self, sample: torch.Tensor, path: Path) -> None:
        self._write_rows([sample], path)

    def write_all(self, samples: Sequence[torch.Tensor], out_dir: Path, stem: str = "points") -> list[Path]:
        path = Path(out_dir) / f"{stem}.csv"
        with atomic_path(path) as tmp:
            self._write_rows(samples, tmp)
        return [path]

    @staticmethod
    def _write_rows(samples: Sequence[torch.Tensor], path: Path) -> None:
        lines = ["x,y"] + [f"{float(p[0]):.6g},{float(p[1]):.6g}" for p in samples]
        Path(path).write_text("\n".join(lines) + "\n")


class PointTokenizer(Tokenizer):
    """points [B, 2] <-> one token per sample: values [B, 1, 2], positions [B, 1, 1] = 0."""

    channels = 2
    position_axes = 1

    def encode(self, latent: torch.Tensor) -> Tokens:
        if latent.dim() != 2 or latent.shape[1] != 2:
            raise DataError(f"toy2d wants points [B, 2], got {tuple(latent.shape)}")
        b = latent.shape[0]
        return Tokens(latent.unsqueeze(1), torch.zeros(b, 1, 1, device=latent.device),
                      torch.ones(b, 1, dtype=torch.bool, device=latent.device))

    def decode(self, tokens: Tokens) -> torch.Tensor:
        return tokens.values[:, 0, :]

    def layout(self, batch_size: int, size=None) -> Tokens:
        return self.encode(torch.zeros(batch_size, 2))


class PointMLP(torch.nn.Module):
    """A small velocity network for 2-D points: [x, y, t] -> 3 SiLU layers -> [vx, vy].

    points ``[N, 2]``, t ``[N]`` or one time ``[1]``; the network the toy2d benchmark and the
    reflow tests train, so their figures are for one architecture.
    """

    def __init__(self, hidden: int = 128) -> None:
        super().__init__()
        self.net = torch.nn.Sequential(
            torch.nn.Linear(3, hidden), torch.nn.SiLU(), torch.nn.Linear(hidden, hidden), torch.nn.SiLU(),
            torch.nn.Linear(hidden, hidden), torch.nn.SiLU(), torch.nn.Linear(hidden, 2))

    def forward(self, points: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        return self.net(torch.cat([points, t.reshape(-1, 1).expand(points.shape[0], 1)], -1))


def point_field(model: PointMLP):
    """flowcore's ``velocity({"toy2d": [B, 1, 2]}, t [B]) -> {"toy2d": [B, 1, 2]}`` over a PointMLP."""

    def velocity(x: dict[str, torch.Tensor], t: torch.Tensor) -> dict[str, torch.Tensor]:
        v = x["toy2d"]
        return {"toy2d": model(v.reshape(-1, 2), t.repeat_interleave(v.shape[1])).reshape(v.shape)}

    return velocity


def sliced_wasserstein(real: Sequence, generated: Sequence, projections: int = 256, seed: int = 0) -> float:
    """Sliced Wasserstein-2 distance: W2 of 1-D projections on random directions, averaged.

    The two sets are compared through their quantiles, so they may differ in size.
    """
    a, b = _stack(real), _stack(generated)
    g = torch.Generator().manual_seed(seed)
    dirs = torch.randn(a.shape[1], projections, generator=g, dtype=torch.float64)
    dirs /= dirs.norm(dim=0, keepdim=True)
    pa, pb = a @ dirs, b @ dirs
    q = torch.linspace(0, 1, min(len(a), len(b)), dtype=torch.float64)
    qa, qb = torch.quantile(pa, q, dim=0), torch.quantile(pb, q, dim=0)
    return float(((qa - qb) ** 2).mean().sqrt())


def mmd(real: Sequence, generated: Sequence, scales: tuple[float, ...] = (0.1, 0.2, 0.5, 1.0, 2.0),
        max_points: int = 2000) -> float:
    """Squared maximum mean discrepancy with a sum of RBF kernels (biased estimator)."""
    a, b = _stack(real)[:max_points], _stack(generated)[:max_points]

    def k(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        d2 = torch.cdist(x, y) ** 2
        return sum(torch.exp(-d2 / (2 * s * s)) for s in scales)

    return float(k(a, a).mean() + k(b, b).mean() - 2 * k(a, b).mean())


def _stack(samples: Sequence) -> torch.Tensor:
    if isinstance(samples, torch.Tensor):
        return samples.reshape(-1, 2).double()
    return torch.stack([torch.as_tensor(s) for s in samples]).reshape(-1, 2).double()


class Toy2d(Modality):
    """2-D points in the data space itself (no autoencoder)."""

    codec = PointsCsv()

    def __init__(self) -> None:
        self._tokenizer = PointTokenizer()

    @property
    def tokenizer(self) -> PointTokenizer:
        return self._tokenizer

    def validate(self, sample, where: str):
        t = torch.as_tensor(sample)
        if t.shape != (2,):
            raise DataError(f"{where}: a toy2d sample is a point of shape (2,), got {tuple(t.shape)}")
        return super().validate(t, where)

    def metrics(self) -> dict[str, Metric]:
        return {
            "sliced_wasserstein": Metric("sliced_wasserstein", sliced_wasserstein, True,
                                         "sliced W2 over 256 fixed random directions"),
            "mmd": Metric("mmd", mmd, True, "squared MMD, RBF kernels at scales 0.1-2"),
        }

    def preview(self, samples: Sequence, path: Path) -> Path:
        """A scatter plot PNG (Pillow), axes fixed to [-4, 4]^2 so previews compare."""
        from PIL import Image, ImageDraw  # lazy: Pillow only when a preview is drawn

        size, lim = 512, 4.0
        img = Image.new("RGB", (size, size), "white")
        draw = ImageDraw.Draw(img)
        draw.line([(size // 2, 0), (size // 2, size)], fill=(220, 220, 220))
        draw.line([(0, size // 2), (size, size // 2)], fill=(220, 220, 220))
        for p in _stack(samples).tolist():
            u = (p[0] + lim) / (2 * lim) * size
            v = (lim - p[1]) / (2 * lim) * size
            draw.ellipse([u - 1.2, v - 1.2, u + 1.2, v + 1.2], fill=(31, 90, 180))
        path = Path(path)
        with atomic_path(path) as tmp:
            img.save(tmp, format="PNG")
        return path
