"""The shape modality: triangle meshes in the unit cube, flowed as VecSet latent sets.

A sample is a dict (``vertices`` [V, 3], ``faces`` [F, 3], optional ``to_world``, see
:mod:`flowcore_shape.mesh`); dataset samples carry their ``surface``, ``queries`` and
``occupancy`` as an attribute (:class:`flowcore_shape.mesh.ShapeSample`). A batch is::

    {"meshes": [samples], "surface": [B, P, 6], "queries": [B, Q, 3], "occupancy": [B, Q]}

Samples without supervision (read from files, generated) get it at collate time: surface
points sampled by area and occupancy from the generalised winding number.
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch

from flowcore.errors import DataError
from flowcore.modality import Metric, Modality
from flowcore_shape import metrics as M
from flowcore_shape.codec import MeshCodec
from flowcore_shape.mesh import SUPERVISION, check_mesh, occupancy, sample_surface
from flowcore_shape.tokenizer import SetTokenizer
from flowcore_shape.vecset import VecSetAE


class Shape(Modality):
    """3D shapes. Options (``modalities.shape``, checked by :class:`flowcore_shape.options.ShapeOptions`):

    latents, channels     M tokens of C channels in the latent set
    width, heads          attention width and heads of the autoencoder
    encoder_layers        self-attention blocks after the encoder's cross-attention
    decoder_layers        self-attention blocks before the occupancy cross-attention
    freqs                 Fourier bands of the xyz embedding
    kl_weight             weight of the KL term
    resolution, coarse    marching-cubes grid and its coarse pass (0 = no coarse pass)
    points, queries       surface points and occupancy queries given to samples read from files
    train_points, train_queries   random subsets of them per autoencoder training step
    """

    def __init__(self, latents: int = 64, channels: int = 8, width: int = 128, heads: int = 4,
                 encoder_layers: int = 1, decoder_layers: int = 2, freqs: int = 8, kl_weight: float = 1e-3,
                 resolution: int = 128, coarse: int = 32, points: int = 2048, queries: int = 2048,
                 train_points: int = 1024, train_queries: int = 1024):
        self.codec = MeshCodec()
        self.ae_options = dict(latents=latents, channels=channels, width=width, heads=heads,
                               encoder_layers=encoder_layers, decoder_layers=decoder_layers, freqs=freqs,
                               kl_weight=kl_weight, resolution=resolution, coarse=coarse,
                               train_points=train_points, train_queries=train_queries)
        self.points, self.queries = max(points, latents), queries
        self._tokenizer = SetTokenizer(latents, channels)

    @property
    def tokenizer(self) -> SetTokenizer:
        return self._tokenizer

    def autoencoder(self) -> VecSetAE:
        return VecSetAE(**self.ae_options)

    def validate(self, sample: Any, where: str) -> dict[str, Any]:
        mesh = check_mesh(sample, where)
        if not len(mesh["faces"]):
            raise DataError(f"{where}: the mesh has no faces")
        supervision = getattr(sample, "supervision", None)
        if supervision is not None:
            self._check_supervision(supervision, where)
        if all(mesh[k] is sample[k] for k in mesh):
            return sample
        return type(sample)(mesh, supervision=supervision) if supervision is not None else mesh

    @staticmethod
    def _check_supervision(sup: dict, where: str) -> None:
        missing = [k for k in SUPERVISION if k not in sup]
        if missing:
            raise DataError(f"{where}: the sample's supervision needs {list(SUPERVISION)}; missing {missing}")
        s, q, o = (torch.as_tensor(sup[k]) for k in SUPERVISION)
        if s.dim() != 2 or s.shape[1] != 6 or q.dim() != 2 or q.shape[1] != 3 or o.shape != q.shape[:1]:
            raise DataError(f"{where}: supervision wants surface [P, 6], queries [Q, 3], occupancy [Q]; got "
                            f"{tuple(s.shape)}, {tuple(q.shape)}, {tuple(o.shape)}")
        if not (torch.isfinite(s).all() and torch.isfinite(q).all()):
            raise DataError(f"{where}: surface points or queries hold NaN or infinite values")

    def supervise(self, sample: dict[str, Any], seed: int = 0) -> dict[str, torch.Tensor]:
        """``surface``, ``queries`` and ``occupancy`` of a mesh: its own, or sampled (winding number)."""
        sup = getattr(sample, "supervision", None)
        if sup is not None:
            return {k: torch.as_tensor(sup[k]).float() for k in SUPERVISION}
        from flowcore_shape.data import QUERY_BOUND

        rng = np.random.default_rng(seed)
        v, f = torch.as_tensor(sample["vertices"]).float(), torch.as_tensor(sample["faces"]).long()
        pts, normals = sample_surface(v.numpy(), f.numpy(), self.points + self.queries // 2, rng)
        uniform = rng.uniform(-QUERY_BOUND, QUERY_BOUND, (self.queries - self.queries // 2, 3))
        near = pts[self.points:] + rng.normal(size=(self.queries // 2, 3)) * 0.01
        q = torch.from_numpy(np.concatenate([uniform, near]).astype(np.float32))
        return {"surface": torch.from_numpy(np.concatenate([pts[:self.points], normals[:self.points]], -1)),
                "queries": q, "occupancy": occupancy(v, f, q)}

    def collate(self, samples: Sequence[dict[str, Any]]) -> dict[str, Any]:
        parts = [self.supervise(s, seed=i) for i, s in enumerate(samples)]
        shapes = {k: {tuple(p[k].shape) for p in parts} for k in SUPERVISION}
        mixed = {k: sorted(v) for k, v in shapes.items() if len(v) > 1}
        if mixed:
            raise DataError(f"shape batch mixes supervision sizes {mixed}; give every sample as many points")
        batch = {k: torch.stack([p[k] for p in parts]) for k in SUPERVISION}
        return {"meshes": list(samples), **batch}

    def split(self, batch: dict[str, Any]) -> list[dict[str, Any]]:
        return list(batch["meshes"])

    @functools.cached_property
    def classifier(self):
        """The primitives PointNet (trained and cached on first use)."""
        from flowcore_shape.classifier import load_classifier

        return load_classifier()

    def classify(self, samples: Sequence[dict[str, Any]]) -> list[int]:
        """The primitives classifier's class for each mesh (accuracy of class-conditional samples)."""
        return self.classifier.predict(samples)

    def metrics(self) -> dict[str, Metric]:
        return {
            "mmd_cd": Metric("mmd_cd", M.mmd, True, "minimum matching distance (Chamfer, 1,024 points)"),
            "cov_cd": Metric("cov_cd", M.coverage, False, "coverage: real shapes nearest to some generated one"),
            "nna_cd": Metric("nna_cd", M.nna, True, "1-NN accuracy real vs generated (Chamfer); 0.5 is ideal"),
            "paired_chamfer": Metric("paired_chamfer", M.paired_chamfer, True,
                                     "Chamfer to the held-out item each sample was made for"),
            "paired_iou": Metric("paired_iou", M.paired_iou, False,
                                 "volume IoU with the held-out item each sample was made for"),
        }

    def preview(self, samples: Sequence[dict[str, Any]], path: Path) -> Path:
        """A PNG with three normal-shaded views per shape (a row each), rendered by ray casting."""
        from flowcore_shape.render import preview_sheet

        return preview_sheet(samples, Path(path).with_suffix(".png"))
