"""The trimesh codec: formats in and out, the unit-cube transform, and one clear error for bad files."""

import numpy as np
import pytest
import torch
import trimesh

from flowcore.errors import DataError
from flowcore_shape.codec import MeshCodec
from flowcore_shape.mesh import apply


@pytest.fixture
def box_file(tmp_path):
    """A 2 x 4 x 6 box centred at (10, 0, -3), as OFF (a format the codec reads but does not write)."""
    mesh = trimesh.creation.box(extents=(2, 4, 6))
    mesh.apply_translation((10, 0, -3))
    path = tmp_path / "box.off"
    path.write_text(mesh.export(file_type="off"))
    return path, mesh


def test_reading_normalises_to_the_unit_cube_and_to_world_restores_the_file(box_file):
    path, mesh = box_file
    s = MeshCodec().read(path)
    v = s["vertices"].numpy()
    assert np.allclose(v.min(0), [-1 / 6, -1 / 3, -0.5]) and np.allclose(v.max(0), [1 / 6, 1 / 3, 0.5])
    assert np.allclose(apply(s["to_world"].numpy(), v), mesh.vertices, atol=1e-5)


@pytest.mark.parametrize("suffix", [".ply", ".obj", ".glb"])
def test_write_then_read_gives_the_sample_back_and_the_file_keeps_world_scale(box_file, tmp_path, suffix):
    codec = MeshCodec()
    s = codec.read(box_file[0])
    out = tmp_path / f"again{suffix}"
    codec.write(s, out)
    back = codec.read(out)
    assert torch.allclose(back["vertices"], s["vertices"], atol=1e-5)
    assert torch.equal(back["faces"], s["faces"]) and torch.allclose(back["to_world"], s["to_world"], atol=1e-5)
    world = trimesh.load(out, force="mesh", process=False)
    assert np.allclose(world.bounds, box_file[1].bounds, atol=1e-4)


@pytest.mark.parametrize("file_type", ["stl", "gltf", "off"])
def test_other_formats_read_to_the_same_unit_mesh(tmp_path, file_type):
    mesh = trimesh.creation.icosphere(2, radius=3.0)
    path = tmp_path / f"ball.{file_type}"
    if file_type == "gltf":
        for name, data in mesh.export(file_type="gltf").items():
            (tmp_path / name).write_bytes(data)
        path = tmp_path / "model.gltf"
    else:
        data = mesh.export(file_type=file_type)
        path.write_bytes(data.encode() if isinstance(data, str) else data)
    s = MeshCodec().read(path)
    assert len(s["faces"]) == 320 and len(s["vertices"]) == 162  # STL's loose corners merged
    assert np.allclose(np.linalg.norm(s["vertices"].numpy(), axis=1), 0.5, atol=1e-5)


def test_empty_corrupt_and_point_only_files_give_one_error_naming_the_file(tmp_path):
    files = {"empty.ply": b"", "noise.obj": np.random.default_rng(0).bytes(300), "cut.glb": b"glTF\x02\x00"}
    cloud = trimesh.PointCloud(np.random.default_rng(0).normal(size=(10, 3)))
    files["cloud.ply"] = cloud.export(file_type="ply")
    for name, blob in files.items():
        (tmp_path / name).write_bytes(blob)
        with pytest.raises(DataError, match=name):
            MeshCodec().read(tmp_path / name)
    with pytest.raises(DataError, match="written as"):
        MeshCodec().write({"vertices": torch.zeros(3, 3), "faces": torch.tensor([[0, 1, 2]])}, tmp_path / "x.stl")
