"""Shape datasets that need no download: procedural primitives, the CGAL meshes, a shapes world.

Every item's ``shape`` sample (a :class:`flowcore_shape.mesh.ShapeSample`) carries, beside its
mesh, what the autoencoder trains on:

    surface    [P, 6]  points uniform on the surface and their unit normals
    queries    [Q, 3]  half uniform in [-0.55, 0.55]^3, half near the surface (Gaussian, sigma 0.005 and 0.02)
    occupancy  [Q]     1.0 inside, 0.0 outside

Sets are built once per (options, split) and cached under ``$FLOWCORE_CACHE/shape``.
"""

from __future__ import annotations

import hashlib
import json
import tarfile
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

from flowcore.errors import DataError
from flowcore.files import cache_dir
from flowcore.io import atomic_path
from flowcore_shape import primitives as P
from flowcore_shape.mesh import ShapeSample, normalise, occupancy, sample_surface

SPLIT_SEEDS = {"train": 0, "val": 1, "test": 2}
PRIMITIVE_SIZES = {"train": 1600, "val": 160, "test": 320}
#: where Debian's libcgal-demo puts the CGAL example data
CGAL_ARCHIVE = "/usr/share/doc/libcgal-dev/data.tar.gz"
#: uniform queries fill this cube: the unit cube plus a margin
QUERY_BOUND = 0.55


def supervision(vertices: np.ndarray, faces: np.ndarray, inside, rng: np.random.Generator,
                points: int, queries: int) -> dict[str, torch.Tensor]:
    """Surface samples and labelled queries of one unit-cube mesh; ``inside(q [Q, 3]) -> bool [Q]``."""
    pts, normals = sample_surface(vertices, faces, points + queries // 2, rng)
    uniform = rng.uniform(-QUERY_BOUND, QUERY_BOUND, (queries - queries // 2, 3))
    sigma = np.where(np.arange(queries // 2) % 2 == 0, 0.005, 0.02)[:, None]
    near = pts[points:] + rng.normal(size=(queries // 2, 3)) * sigma
    q = np.concatenate([uniform, near]).astype(np.float32)
    return {"surface": torch.from_numpy(np.concatenate([pts[:points], normals[:points]], -1)),
            "queries": torch.from_numpy(q), "occupancy": torch.as_tensor(inside(q), dtype=torch.float32)}


class ShapeSet(Dataset):
    """Meshes with their supervision (flat arrays, so a cache file holds no pickles).

    ``labels`` (class index per item) and ``classes`` are given for labelled sets; ``params``
    holds what each shape was drawn with (JSON-able dicts); ``images`` [N, 1, S, S] the world's depth views.
    """

    def __init__(self, arrays: dict[str, np.ndarray], classes: tuple[str, ...] = (), params: list | None = None,
                 keys: tuple[str, ...] = ("shape",)):
        self.arrays, self.classes, self.params, self.keys = arrays, classes, params or [], keys
        self.vstart = np.concatenate([[0], np.cumsum(arrays["vertex_counts"])])
        self.fstart = np.concatenate([[0], np.cumsum(arrays["face_counts"])])

    def __len__(self) -> int:
        return len(self.arrays["vertex_counts"])

    def shape(self, i: int) -> ShapeSample:
        a = self.arrays
        return ShapeSample(
            vertices=torch.from_numpy(a["vertices"][self.vstart[i]: self.vstart[i + 1]]),
            faces=torch.from_numpy(a["faces"][self.fstart[i]: self.fstart[i + 1]].astype(np.int64)),
            supervision={"surface": torch.from_numpy(a["surface"][i]), "queries": torch.from_numpy(a["queries"][i]),
                         "occupancy": torch.from_numpy(a["occupancy"][i].astype(np.float32))})

    def __getitem__(self, i: int) -> dict[str, Any]:
        item: dict[str, Any] = {"shape": self.shape(i)}
        if "label" in self.keys:
            item["label"] = int(self.arrays["labels"][i])
        if "image" in self.keys:
            item["image"] = torch.from_numpy(self.arrays["images"][i])
        return item


def pack(shapes: list[dict[str, Any]]) -> dict[str, np.ndarray]:
    """A list of per-shape dicts (mesh + supervision (+ label, image)) -> flat arrays."""
    out = {"vertex_counts": np.array([len(s["vertices"]) for s in shapes]),
           "face_counts": np.array([len(s["faces"]) for s in shapes]),
           "vertices": np.concatenate([np.asarray(s["vertices"], np.float32) for s in shapes]),
           "faces": np.concatenate([np.asarray(s["faces"], np.int32) for s in shapes]),
           "surface": np.stack([s["surface"].numpy() for s in shapes]),
           "queries": np.stack([s["queries"].numpy() for s in shapes]),
           "occupancy": np.stack([s["occupancy"].numpy().astype(bool) for s in shapes])}
    if "label" in shapes[0]:
        out["labels"] = np.array([s["label"] for s in shapes])
    if "image" in shapes[0]:
        out["images"] = np.stack([s["image"] for s in shapes]).astype(np.float32)
    return out


def cached(name: str, recipe: dict[str, Any], build) -> tuple[dict[str, np.ndarray], list]:
    """Arrays and params of a set: read from the cache file of ``recipe``, or built and written there."""
    key = hashlib.sha1(json.dumps(recipe, sort_keys=True).encode()).hexdigest()[:12]
    path = cache_dir("shape", f"{name}_{key}.npz")
    if path.is_file():
        try:
            with np.load(path, allow_pickle=False) as z:
                arrays = {k: z[k] for k in z.files if k != "params"}
                return arrays, json.loads(str(z["params"]))
        except (OSError, ValueError, KeyError):
            pass  # unreadable (an interrupted write elsewhere): build it again
    arrays, params = build()
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as fh:
            np.savez(fh, params=np.array(json.dumps(params)), **arrays)
    return arrays, params


def _split_seed(split: str, seed: int) -> int:
    if split not in SPLIT_SEEDS:
        raise DataError(f"unknown split {split!r}; use train, val or test")
    return 1000 * seed + SPLIT_SEEDS[split]


def primitive_item(label: int, rng: np.random.Generator, resolution: int, points: int,
                   queries: int) -> tuple[dict[str, Any], dict[str, Any], P.Primitive]:
    """One primitive of class ``label``: mesh + supervision in the unit cube, its recorded params, the Primitive.

    A draw whose mesh comes out (nearly) empty (a difference that removes the whole solid) is drawn again.
    """
    for _ in range(100):
        prim = P.draw(label, rng)
        vertices, faces = P.mesh_implicit(prim.f, resolution)
        if len(faces) >= 100:
            break
    else:
        raise DataError(f"primitives: 100 draws of class {P.CLASSES[label]!r} gave no mesh at resolution {resolution}")
    unit, to_world = normalise(vertices)
    scale, center = to_world[0, 0], to_world[:3, 3]
    shape = {"vertices": unit, "faces": faces, "label": label,
             **supervision(unit, faces, lambda q: prim.f(q * scale + center) < 0, rng, points, queries)}
    params = {"class": prim.kind, **prim.params, "center": center.round(6).tolist(), "scale": round(scale, 6)}
    return shape, params, prim


def primitives(split: str = "train", count: int | None = None, seed: int = 0, resolution: int = 40,
               points: int = 2048, queries: int = 2048, classes: list[str] | None = None) -> ShapeSet:
    """Procedural shapes (class index = position in ``classes``, default all eight of
    :data:`flowcore_shape.primitives.CLASSES`), classes in turn, parameters and rotation random."""
    names = tuple(classes) if classes else P.CLASSES
    unknown = [c for c in names if c not in P.CLASSES]
    if unknown:
        raise DataError(f"primitives: unknown classes {unknown}; choose from {list(P.CLASSES)}")
    count = PRIMITIVE_SIZES[split] if count is None and split in PRIMITIVE_SIZES else count
    base = _split_seed(split, seed)
    recipe = dict(split=split, count=count, seed=seed, resolution=resolution, points=points, queries=queries,
                  classes=list(names), version=2)

    def build():
        rng = np.random.default_rng(base)
        shapes, params = [], []
        for i in range(count):
            shape, p, _ = primitive_item(P.CLASSES.index(names[i % len(names)]), rng, resolution, points, queries)
            shape["label"] = i % len(names)
            shapes.append(shape)
            params.append(p)
        return pack(shapes), params

    arrays, params = cached("primitives", recipe, build)
    return ShapeSet(arrays, names, params, ("shape", "label"))


def shapes_world(split: str = "train", count: int | None = None, seed: int = 0, resolution: int = 40,
                 points: int = 2048, queries: int = 2048, image_size: int = 32) -> ShapeSet:
    """Primitives paired with a depth image of the same mesh from a random view and the class label.

    ``image`` [1, S, S] in [-1, 1]: -1 where the ray misses, else 0.5 + 0.5 (d0 - t) / r for the
    hit distance t of an orthographic camera at distance d0 = 2 looking at the origin (r = sqrt(3) / 2,
    so nearer is brighter and every hit lies in [0, 1]).
    """
    from flowcore_shape.render import depth_image, random_view

    count = PRIMITIVE_SIZES[split] if count is None and split in PRIMITIVE_SIZES else count
    base = _split_seed(split, seed)
    recipe = dict(split=split, count=count, seed=seed, resolution=resolution, points=points, queries=queries,
                  image_size=image_size, version=2)

    def build():
        rng = np.random.default_rng(base + 7)
        shapes, params = [], []
        for i in range(count):
            shape, p, _ = primitive_item(i % len(P.CLASSES), rng, resolution, points, queries)
            view = random_view(rng)
            shape["image"] = depth_image(shape["vertices"], shape["faces"], view, image_size)[None]
            shapes.append(shape)
            params.append({**p, "view": view.round(6).tolist()})
        return pack(shapes), params

    arrays, params = cached("shapes_world", recipe, build)
    return ShapeSet(arrays, P.CLASSES, params, ("shape", "image", "label"))


# ----------------------------------------------------------------------------- CGAL meshes


def cgal_files(archive: str = CGAL_ARCHIVE) -> list[Path]:
    """The CGAL example meshes (data/meshes/*.off|ply), unpacked once into the cache."""
    if not Path(archive).is_file():
        raise DataError(f"dataset cgal: {archive} does not exist; install the Debian package libcgal-demo")
    root = cache_dir("shape", "cgal")
    done = root / ".unpacked"
    if not done.is_file():
        root.mkdir(parents=True, exist_ok=True)
        with tarfile.open(archive) as tar:
            for member in tar.getmembers():
                name = Path(member.name)
                if member.isfile() and name.parent.as_posix() == "data/meshes" and name.suffix in (".off", ".ply"):
                    with tar.extractfile(member) as src, atomic_path(root / name.name) as tmp:
                        tmp.write_bytes(src.read())
        done.write_text("")
    return sorted(p for p in root.iterdir() if p.suffix in (".off", ".ply"))


def cgal_split(name: str) -> str:
    """A mesh's split from its name's hash: about 80 / 10 / 10 percent train / val / test."""
    h = int(hashlib.sha1(name.encode()).hexdigest(), 16) % 10
    return "val" if h == 8 else "test" if h == 9 else "train"


class AugmentedMeshes(Dataset):
    """Each base mesh ``repeats`` times, rotated (uniformly) and scaled per axis (0.75..1.25), renormalised.

    Occupancy moves with the mesh: an invertible affine map keeps inside points inside, so the
    labels computed once in the canonical frame stay correct; normals go through the inverse transpose.
    """

    def __init__(self, base: ShapeSet, repeats: int, seed: int, augment: bool):
        self.base, self.repeats, self.seed, self.augment = base, repeats, seed, augment
        self.names = [p["name"] for p in base.params]

    def __len__(self) -> int:
        return len(self.base) * self.repeats

    def __getitem__(self, i: int) -> dict[str, Any]:
        shape = self.base.shape(i % len(self.base))
        if not self.augment:
            return {"shape": shape}
        sup = shape.supervision
        rng = np.random.default_rng([self.seed, i])
        a = P.rotation(rng) * rng.uniform(0.75, 1.25, 3)  # scale the axes, then rotate: [3, 3]
        v = shape["vertices"].double().numpy() @ a.T
        unit, to_world = normalise(v)
        scale, center = to_world[0, 0], to_world[:3, 3]
        m = torch.from_numpy(a / scale)
        shift = torch.from_numpy(center / scale)
        surface = sup["surface"].double()
        normals = surface[:, 3:] @ torch.linalg.inv(m)  # n' = M^-T n
        surface = torch.cat([surface[:, :3] @ m.T - shift, normals / normals.norm(dim=-1, keepdim=True)], -1)
        supervision = {"surface": surface.float(), "queries": (sup["queries"].double() @ m.T - shift).float(),
                       "occupancy": sup["occupancy"]}
        return {"shape": ShapeSample(vertices=torch.from_numpy(unit), faces=shape["faces"], supervision=supervision)}


def cgal(split: str = "train", repeats: int = 1, augment: bool | None = None, seed: int = 0,
         points: int = 2048, queries: int = 2048, min_vertices: int = 500, max_faces: int = 60_000,
         archive: str = CGAL_ARCHIVE) -> AugmentedMeshes:
    """The CGAL example meshes with at least ``min_vertices`` and at most ``max_faces``, by split;
    occupancy from the generalised winding number (many have holes). ``augment`` (default: on for
    train) rotates and scales each of the ``repeats`` copies."""
    from flowcore_shape.codec import MeshCodec

    _split_seed(split, seed)
    recipe = dict(split=split, seed=seed, points=points, queries=queries, min_vertices=min_vertices,
                  max_faces=max_faces, archive=archive, version=2)

    def build():
        codec, shapes, params = MeshCodec(), [], []
        rng = np.random.default_rng(_split_seed(split, seed) + 11)
        for path in cgal_files(archive):
            if cgal_split(path.stem) != split:
                continue
            try:
                mesh = codec.read(path)
            except DataError:
                continue  # the collection holds a few deliberately broken meshes (CGAL's repair examples)
            v, f = mesh["vertices"], mesh["faces"]
            if len(v) < min_vertices or len(f) > max_faces:
                continue
            shape = {"vertices": v.numpy(), "faces": f.numpy(),
                     **supervision(v.numpy(), f.numpy(), lambda q: occupancy(v, f, torch.from_numpy(q)).numpy() > 0,
                                   rng, points, queries)}
            shapes.append(shape)
            params.append({"name": path.stem, "vertices": len(v), "faces": len(f)})
        if not shapes:
            raise DataError(f"dataset cgal: no meshes in {archive} fit split {split!r} and the size limits")
        return pack(shapes), params

    arrays, params = cached("cgal", recipe, build)
    augment = split == "train" if augment is None else augment
    return AugmentedMeshes(ShapeSet(arrays, (), params), repeats, seed, augment)
