"""The datasets: primitives (classes, parameters, exact occupancy), the shapes world, the CGAL meshes."""

import os

import numpy as np
import pytest
import torch

from flowcore.errors import DataError
from flowcore_shape import primitives as P
from flowcore_shape.data import CGAL_ARCHIVE, cgal, primitives, shapes_world
from flowcore_shape.mesh import occupancy

SMALL = dict(resolution=24, points=256, queries=256)


def test_primitives_cycle_the_classes_record_parameters_and_sit_in_the_unit_cube():
    ds = primitives("val", count=16, **SMALL)
    assert len(ds) == 16 and ds.classes == P.CLASSES
    for i in range(16):
        item = ds[i]
        assert item["label"] == i % 8 and ds.params[i]["class"] == P.CLASSES[i % 8]
        v = item["shape"]["vertices"]
        assert torch.allclose(v.max(0).values + v.min(0).values, torch.zeros(3), atol=1e-5)
        assert abs(float((v.max(0).values - v.min(0).values).max()) - 1) < 1e-5
    assert set(ds.params[6]) >= {"a", "b", "scale", "center"} and "offset" in ds.params[6]["b"]


def test_primitive_occupancy_agrees_with_the_winding_number_of_its_mesh():
    ds = primitives("test", count=8, **SMALL)
    for i in range(8):
        s = ds[i]["shape"]
        sup = s.supervision
        uniform = sup["queries"][: 128]  # the first half is uniform in the cube
        w = occupancy(s["vertices"], s["faces"], uniform)
        assert (w == sup["occupancy"][:128]).float().mean() > 0.95, ds.params[i]["class"]
        assert 0 < float(sup["occupancy"][128:].mean()) < 1  # near-surface queries fall on both sides


def test_sets_are_reproducible_and_splits_differ():
    a, b = primitives("train", count=4, **SMALL), primitives("train", count=4, **SMALL)
    assert torch.equal(a[3]["shape"].supervision["queries"], b[3]["shape"].supervision["queries"])
    c = primitives("val", count=4, **SMALL)
    assert not torch.equal(a[0]["shape"]["vertices"][:10], c[0]["shape"]["vertices"][:10])
    d = primitives("train", count=4, classes=["torus", "box"], **SMALL)
    assert [d[i]["label"] for i in range(4)] == [0, 1, 0, 1] and d.params[0]["class"] == "torus"
    with pytest.raises(DataError, match="unknown classes"):
        primitives("train", count=2, classes=["teapot"])


def test_shapes_world_pairs_a_depth_view_of_the_same_mesh_with_the_class():
    ds = shapes_world("val", count=8, image_size=16, **SMALL)
    item = ds[3]
    assert set(item) == {"shape", "image", "label"} and item["label"] == 3
    image = item["image"]
    assert image.shape == (1, 16, 16) and image.dtype == torch.float32
    assert image.min() >= -1 and image.max() <= 1
    hit = image > -1
    assert 0 < hit.float().mean() < 1 and (image[hit] >= 0).all()


@pytest.mark.skipif(not os.path.exists(CGAL_ARCHIVE), reason="Debian package libcgal-demo is not installed")
def test_cgal_meshes_load_and_augmentation_keeps_the_labels_true():
    ds = cgal("val", repeats=2, augment=True, points=128, queries=128)
    assert len(ds) == 2 * len(ds.base) and ds.names
    s = ds[1]["shape"]
    v = s["vertices"]
    assert abs(float((v.max(0).values - v.min(0).values).max()) - 1) < 1e-5
    sup = s.supervision
    w = occupancy(v, s["faces"], sup["queries"][:64])
    assert (w == sup["occupancy"][:64]).float().mean() > 0.95
    normals = sup["surface"][:, 3:]
    assert torch.allclose(normals.norm(dim=1), torch.ones(len(normals)), atol=1e-5)
    assert not torch.equal(ds[0]["shape"]["vertices"], ds[1]["shape"]["vertices"])  # two different draws


def test_a_solid_thinner_than_the_coarse_pass_is_still_meshed_and_no_solid_gives_no_triangles():
    v, f = P.mesh_implicit(P.torus(0.8, 0.04), resolution=64)  # 0.08 thick, the coarse step is 0.11
    assert len(f) > 100 and np.abs(np.linalg.norm(v[:, :2], axis=1) - 0.8).max() < 0.05
    v, f = P.mesh_implicit(lambda p: np.ones(len(p)), resolution=16)
    assert v.shape == (0, 3) and f.shape == (0, 3)
