"""Point-cloud files: round trips of every format, real PLY files, clear errors for broken ones."""

import tarfile
from pathlib import Path

import numpy as np
import pytest
import torch

from flowcore.errors import DataError
from flowcore_lidar.codec import ScanCodec, read_points, write_points
from flowcore_lidar.sensor import Sensor

CGAL_DATA = "/usr/share/doc/libcgal-dev/data.tar.gz"


def cloud(n=50, seed=0):
    rng = np.random.default_rng(seed)
    pts = rng.uniform(-20, 20, (n, 4)).astype(np.float32)
    pts[:, 3] = rng.random(n)
    return pts


@pytest.mark.parametrize("suffix", [".bin", ".ply", ".pcd"])
def test_written_points_read_back_exactly(tmp_path, suffix):
    pts = cloud()
    write_points(pts, tmp_path / f"scan{suffix}")
    assert np.array_equal(read_points(tmp_path / f"scan{suffix}"), pts)


def test_kitti_bin_is_float32_records_of_four(tmp_path):
    pts = cloud(7)
    (tmp_path / "k.bin").write_bytes(pts.tobytes())
    assert np.array_equal(read_points(tmp_path / "k.bin"), pts)


def test_ascii_ply_and_pcd_with_8_bit_intensity(tmp_path):
    (tmp_path / "a.ply").write_text("ply\nformat ascii 1.0\nelement vertex 2\nproperty float x\nproperty float y\n"
                                    "property float z\nproperty uchar intensity\nelement face 0\n"
                                    "property list uchar int vertex_indices\nend_header\n1 2 3 255\n4 5 6 51\n")
    assert read_points(tmp_path / "a.ply").tolist() == [[1, 2, 3, 1.0], pytest.approx([4, 5, 6, 0.2])]
    (tmp_path / "a.pcd").write_text("VERSION 0.7\nFIELDS x y z intensity\nSIZE 4 4 4 4\nTYPE F F F F\n"
                                    "COUNT 1 1 1 1\nWIDTH 2\nHEIGHT 1\nPOINTS 2\nDATA ascii\n1 2 3 0.5\n4 5 6 0.25\n")
    assert read_points(tmp_path / "a.pcd").tolist() == [[1, 2, 3, 0.5], [4, 5, 6, 0.25]]


def test_binary_pcd_with_mixed_field_types(tmp_path):
    rec = np.zeros(3, dtype=[("x", "<f8"), ("y", "<f8"), ("z", "<f8"), ("ring", "<u2"), ("intensity", "<f4")])
    rec["x"], rec["y"], rec["z"], rec["ring"], rec["intensity"] = [1, 2, 3], [4, 5, 6], [7, 8, 9], 5, [0.1, 0.2, 0.3]
    header = ("VERSION 0.7\nFIELDS x y z ring intensity\nSIZE 8 8 8 2 4\nTYPE F F F U F\nCOUNT 1 1 1 1 1\n"
              "WIDTH 3\nHEIGHT 1\nPOINTS 3\nDATA binary\n")
    (tmp_path / "m.pcd").write_bytes(header.encode() + rec.tobytes())
    assert np.allclose(read_points(tmp_path / "m.pcd"), [[1, 4, 7, 0.1], [2, 5, 8, 0.2], [3, 6, 9, 0.3]])


def test_a_real_binary_ply_reads(tmp_path):
    if not Path(CGAL_DATA).is_file():
        pytest.skip("Debian package libcgal-demo not installed")
    with tarfile.open(CGAL_DATA) as tar:
        tar.extract("data/points_3/b9_training.ply", tmp_path, filter="data")
    pts = read_points(tmp_path / "data/points_3/b9_training.ply")
    assert pts.shape == (22300, 4) and np.isfinite(pts).all() and (pts[:, 3] == 0).all()  # no intensity field


@pytest.mark.parametrize("name,data,match", [
    ("cut.bin", b"\0" * 30, "multiple of 16"),
    ("empty.ply", b"", "empty file"),
    ("noend.ply", b"ply\nformat ascii 1.0\nelement vertex 3\n", "end_header"),
    ("short.ply", b"ply\nformat binary_little_endian 1.0\nelement vertex 9\nproperty float x\nproperty float y\n"
                  b"property float z\nend_header\n" + b"\0" * 20, "cut short"),
    ("noxyz.pcd", b"FIELDS a b\nSIZE 4 4\nTYPE F F\nPOINTS 0\nDATA ascii\n", "no x, y, z"),
    ("huge.pcd", b"FIELDS x y z\nSIZE 4 4 4\nTYPE F F F\nPOINTS 99999999999\nDATA binary\n", "at most"),
    ("nan.bin", np.array([[np.nan, 0, 0, 0]], np.float32).tobytes(), "NaN"),
    ("garbage.pcd", bytes(range(256)) * 4, "corrupt PCD|no 'DATA'"),
])
def test_broken_files_raise_a_data_error_naming_them(tmp_path, name, data, match):
    (tmp_path / name).write_bytes(data)
    with pytest.raises(DataError, match=match) as err:
        read_points(tmp_path / name)
    assert str(err.value).startswith(str(tmp_path / name))


def test_the_codec_writes_scans_as_kitti_bin_and_reads_any_format(tmp_path):
    s = Sensor(rows=8, cols=32)
    rng = np.random.default_rng(1)
    image = torch.from_numpy(s.from_depth(rng.uniform(2, 70, s.shape), rng.random(s.shape)))
    codec = ScanCodec(s)
    paths = codec.write_all([image, image], tmp_path)
    assert [p.name for p in paths] == ["sample_0000.bin", "sample_0001.bin"]
    write_points(read_points(paths[0]), tmp_path / "same.pcd")
    assert torch.allclose(codec.read(tmp_path / "same.pcd"), image, atol=2e-6)
