"""Mesh files through trimesh: OBJ, PLY, STL, GLB/GLTF and OFF in; OBJ, PLY and GLB out.

Reading normalises the mesh to the unit cube and records ``to_world`` (see
:mod:`flowcore_shape.mesh`); writing applies ``to_world`` when the sample has one, so a mesh read
and written again keeps its original place and scale. A file that is unreadable, holds no
triangles or non-finite coordinates raises one DataError naming it.
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch

from flowcore.errors import DataError
from flowcore.modality import Codec
from flowcore_shape.mesh import apply, check_mesh, normalise

READS = (".ply", ".obj", ".glb", ".stl", ".gltf", ".off")
WRITES = (".ply", ".obj", ".glb")
#: a file with more faces than this is refused (a damaged header can claim billions)
MAX_FACES = 5_000_000


def load_trimesh(path: Path):
    """The file's triangles as one ``trimesh.Trimesh`` (scenes concatenated), or DataError naming it."""
    import trimesh

    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in READS:
        raise DataError(f"{path}: not a mesh file this codec reads ({', '.join(READS)})")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            # STL stores each triangle's corners separately: merge them into shared vertices
            mesh = trimesh.load(str(path), file_type=suffix[1:], force="mesh", process=suffix == ".stl")
    except Exception as exc:  # trimesh's loaders raise anything from ValueError to struct.error
        raise DataError(f"{path}: unreadable {suffix[1:].upper()} mesh ({type(exc).__name__}: {exc})") from None
    faces = getattr(mesh, "faces", None)
    if faces is None or len(faces) == 0:
        raise DataError(f"{path}: the file holds no triangles (an empty mesh, a point cloud or a damaged file)")
    if len(faces) > MAX_FACES:
        raise DataError(f"{path}: {len(faces):,} faces, more than the {MAX_FACES:,} this codec reads")
    return mesh


class MeshCodec(Codec):
    """trimesh reader/writer; samples are unit-cube meshes with their ``to_world`` transform."""

    extensions = READS
    read_only_extensions = tuple(e for e in READS if e not in WRITES)
    #: binary PLY stores float32 coordinates; the unit-cube transform adds float64 rounding
    round_trip_atol = 1e-5

    def read(self, path: Path) -> dict[str, Any]:
        mesh = load_trimesh(path)
        vertices = np.asarray(mesh.vertices, dtype=np.float64)
        faces = np.asarray(mesh.faces, dtype=np.int64)
        if not np.isfinite(vertices).all():
            raise DataError(f"{path}: the mesh holds NaN or infinite coordinates")
        if faces.min() < 0 or faces.max() >= len(vertices):
            raise DataError(f"{path}: faces index vertices that do not exist")
        try:
            unit, to_world = normalise(vertices[np.unique(faces)] if len(vertices) else vertices)
        except DataError as exc:
            raise DataError(f"{path}: {exc}") from None
        unit = ((vertices - to_world[:3, 3]) / to_world[0, 0]).astype(np.float32)
        return {"vertices": torch.from_numpy(unit), "faces": torch.from_numpy(faces),
                "to_world": torch.from_numpy(to_world)}

    def write(self, sample: dict[str, Any], path: Path) -> None:
        import trimesh

        path = Path(path)
        ext = self.suffix(path)
        if ext not in WRITES:
            raise DataError(f"{path}: meshes are written as {', '.join(WRITES)}")
        mesh = check_mesh(sample, str(path))
        vertices = mesh["vertices"].double().numpy()
        if "to_world" in mesh:
            vertices = apply(mesh["to_world"].numpy(), vertices)
        out = trimesh.Trimesh(vertices, mesh["faces"].numpy(), process=False)
        data = out.export(file_type=ext[1:])
        Path(path).write_bytes(data.encode() if isinstance(data, str) else data)

