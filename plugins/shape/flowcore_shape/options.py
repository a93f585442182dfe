"""Options of the shape modality and its datasets: pydantic models, no torch, no trimesh.

The defaults are the factories' (flowcore_shape.modality.Shape, flowcore_shape.data).
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from flowcore.schema import Number, Options

#: the classes of the primitives dataset (flowcore_shape.primitives.CLASSES)
PrimitiveClass = Literal["box", "sphere", "cylinder", "cone", "torus", "capsule", "union", "difference"]


class ShapeOptions(Options):
    """``modalities.shape`` (see :class:`flowcore_shape.modality.Shape` for what each does)."""

    latents: int = Field(64, ge=1)
    channels: int = Field(8, ge=1)
    width: int = Field(128, ge=8)
    heads: int = Field(4, ge=1)
    encoder_layers: int = Field(1, ge=0)
    decoder_layers: int = Field(2, ge=0)
    freqs: int = Field(8, ge=0)
    kl_weight: Number = Field(1e-3, ge=0)
    resolution: int = Field(128, ge=8)
    coarse: int = Field(32, ge=0)
    points: int = Field(2048, ge=16)
    queries: int = Field(2048, ge=16)
    train_points: int = Field(1024, ge=1)
    train_queries: int = Field(1024, ge=1)

    @model_validator(mode="after")
    def _grids(self):
        if self.coarse and self.coarse < self.resolution and self.resolution % self.coarse:
            raise ValueError(f"resolution {self.resolution} must be a multiple of coarse {self.coarse} (or coarse 0)")
        if self.width % self.heads:
            raise ValueError(f"width {self.width} must be a multiple of heads {self.heads}")
        return self


class GeneratedOptions(Options):
    """What primitives and shapes_world share."""

    #: shapes in the split (default 1,600 / 160 / 320 for train / val / test)
    count: int | None = Field(None, ge=1)
    seed: int = 0
    #: marching-cubes cells per axis of the ground-truth meshes
    resolution: int = Field(40, ge=8)
    points: int = Field(2048, ge=16)
    queries: int = Field(2048, ge=16)


class PrimitivesOptions(GeneratedOptions):
    """``data.options`` of primitives."""

    #: a subset of the classes, in this order (label = position); default all eight
    classes: list[PrimitiveClass] | None = None


class WorldOptions(GeneratedOptions):
    """``data.options`` of shapes_world."""

    #: the depth image is image_size x image_size
    image_size: int = Field(32, ge=4)


class CgalOptions(Options):
    """``data.options`` of cgal."""

    #: copies of each mesh per epoch (each rotated and scaled anew when augmenting)
    repeats: int = Field(1, ge=1)
    #: rotate and scale per axis; default on for train, off for val and test
    augment: bool | None = None
    seed: int = 0
    points: int = Field(2048, ge=16)
    queries: int = Field(2048, ge=16)
    min_vertices: int = Field(500, ge=3)
    max_faces: int = Field(60_000, ge=1)
    archive: str = "/usr/share/doc/libcgal-dev/data.tar.gz"
