"""The metric classifier: a small PointNet (Qi et al. 2017) on 1,024 surface points, trained once per
primitives recipe and cached (``$FLOWCORE_CACHE/shape/classifier_*.safetensors``).

    points [B, N, 3] --shared MLP 3-64-128-256--> max over points [B, 256] --MLP--> logits [B, K]

It scores class accuracy of class-conditional samples (no downloaded network). The shapes are
randomly rotated already, so it learns rotation-robust features from the data itself.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from flowcore.cache import cached_network
from flowcore.files import cache_dir
from flowcore_shape.metrics import SET_POINTS, surface_points


class PointNet(nn.Module):
    def __init__(self, classes: int, width: int = 256):
        super().__init__()
        self.point = nn.Sequential(nn.Linear(3, 64), nn.GELU(), nn.Linear(64, 128), nn.GELU(),
                                   nn.Linear(128, width))
        self.head = nn.Sequential(nn.LayerNorm(width), nn.Linear(width, 128), nn.GELU(), nn.Linear(128, classes))

    def forward(self, points: torch.Tensor) -> torch.Tensor:
        """points [B, N, 3] -> logits [B, K]."""
        return self.head(self.point(points).max(1).values)


@dataclass
class Classifier:
    net: PointNet
    test_accuracy: float
    test_count: int
    path: Path

    @torch.no_grad()
    def predict_points(self, points: torch.Tensor) -> torch.Tensor:
        return torch.cat([self.net(points[s: s + 256]).argmax(-1) for s in range(0, len(points), 256)])

    def predict(self, samples: Sequence[Any]) -> list[int]:
        """Class index of each mesh sample (1,024 surface points each)."""
        return self.predict_points(surface_points(samples, SET_POINTS)).tolist()


def _clouds(ds, rng: np.random.Generator) -> torch.Tensor:
    """A random 1,024 of each shape's stored surface points: [N, 1024, 3]."""
    surface = torch.from_numpy(ds.arrays["surface"][..., :3])
    order = rng.permuted(np.tile(np.arange(surface.shape[1]), (len(surface), 1)), axis=1)
    idx = torch.from_numpy(order[:, :SET_POINTS])
    return torch.gather(surface, 1, idx[..., None].expand(-1, -1, 3))


def load_classifier(steps: int = 1200, retrain: bool = False, seed: int = 0) -> Classifier:
    """The primitives classifier (all eight classes, default primitives splits), trained on first use."""
    from flowcore_shape.data import primitives

    recipe = {"dataset": "primitives", "steps": steps, "seed": seed, "points": SET_POINTS, "version": 1}
    key = hashlib.sha1(json.dumps(recipe, sort_keys=True).encode()).hexdigest()[:12]
    path = cache_dir("shape", f"classifier_primitives_{key}.safetensors")
    test = primitives("test")
    classes = len(test.classes)

    def train():
        torch.manual_seed(seed)
        rng = np.random.default_rng(seed)
        ds = primitives("train")
        labels = torch.from_numpy(ds.arrays["labels"]).long()
        net = PointNet(classes)
        opt = torch.optim.AdamW(net.parameters(), lr=2e-3, weight_decay=1e-4)
        sched = torch.optim.lr_scheduler.OneCycleLR(opt, 2e-3, total_steps=steps)
        surface = torch.from_numpy(ds.arrays["surface"][..., :3])
        for _ in range(steps):
            batch = torch.from_numpy(rng.integers(0, len(labels), 32))
            pick = torch.from_numpy(rng.integers(0, surface.shape[1], (32, SET_POINTS)))
            points = torch.gather(surface[batch], 1, pick[..., None].expand(-1, -1, 3))
            points = points + 0.003 * torch.randn_like(points)  # generated meshes are not exact
            loss = F.cross_entropy(net(points), labels[batch])
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
        net.eval()
        acc = _accuracy(net, test, rng)
        return net, {"test_accuracy": f"{acc:.4f}", "test_count": str(len(test)), "classes": str(classes)}

    net, meta = cached_network(path, key, lambda meta: PointNet(int(meta["classes"])), train, retrain)
    return Classifier(net, float(meta["test_accuracy"]), int(meta["test_count"]), path)


@torch.no_grad()
def _accuracy(net: PointNet, ds, rng: np.random.Generator) -> float:
    clouds = _clouds(ds, rng)
    predicted = torch.cat([net(clouds[s: s + 256]).argmax(-1) for s in range(0, len(clouds), 256)])
    return float((predicted == torch.from_numpy(ds.arrays["labels"])).float().mean())
