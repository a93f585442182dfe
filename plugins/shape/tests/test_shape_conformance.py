"""The shape modality passes the conformance kit; options, validation, tokens, autoencoder, preview."""

import subprocess
import sys

import numpy as np
import pytest
import torch
import trimesh
from PIL import Image

from flowcore.errors import ConfigError, DataError
from flowcore.testing import check_modality

TINY = dict(latents=8, channels=4, width=32, heads=2, resolution=16, coarse=0, points=64, queries=64,
            train_points=64, train_queries=64)
SMALL_DATA = dict(count=4, resolution=16, points=64, queries=64)


def read_back(tmp_path, mesh, name):
    """A trimesh written as PLY and read by the modality's codec (so it carries to_world)."""
    from flowcore_shape.codec import MeshCodec

    path = tmp_path / f"{name}.ply"
    path.write_bytes(mesh.export(file_type="ply"))
    return MeshCodec().read(path)


def test_conformance(registry, tmp_path):
    m = registry.modality("shape", **TINY)
    samples = [read_back(tmp_path, trimesh.creation.icosphere(1), "ball"),
               read_back(tmp_path, trimesh.creation.box((1, 2, 3)), "box"),
               read_back(tmp_path, trimesh.creation.capsule(1.0, 0.3, count=[8, 8]), "capsule")]
    # meshes differ in vertex count, so the kit checks them as variable-size: sizes are latent-set sizes
    report = check_modality(m, tmp_path, datasets=["primitives", "shapes_world"], samples=samples,
                            dataset_options=SMALL_DATA, sizes=[4, 8])
    assert {"dataset primitives", "dataset shapes_world", "collate round trip", "autoencoder shapes",
            "tokenizer round trip", "variable-length layouts", "codec round trip", "codec damaged files",
            "metrics"} <= set(report.passed)


def test_dataset_items_validate_unchanged_and_collate_with_their_supervision(registry):
    m = registry.modality("shape", **TINY)
    ds = registry.dataset("primitives").build("val", **SMALL_DATA)
    items = [ds[i]["shape"] for i in range(3)]
    assert all(m.validate(s, "x") is s for s in items)  # tensors already: the pipeline checks each once
    assert set(items[0]) == {"vertices", "faces"}
    batch = m.collate(items)
    assert batch["surface"].shape == (3, 64, 6) and batch["occupancy"].shape == (3, 64)
    assert torch.equal(batch["queries"][1], items[1].supervision["queries"])
    # a mesh without supervision gets it from the winding number
    plain = m.collate([dict(items[0]), dict(items[1])])
    assert plain["surface"].shape == (2, 64, 6)
    exact = items[0].supervision
    from flowcore_shape.mesh import occupancy
    assert torch.equal(occupancy(items[0]["vertices"], items[0]["faces"], exact["queries"][:32]),
                       exact["occupancy"][:32])


def test_validate_names_where():
    from flowcore_shape.modality import Shape

    m = Shape(**TINY)
    tri = {"vertices": torch.eye(3), "faces": torch.tensor([[0, 1, 2]])}
    from flowcore_shape.mesh import ShapeSample

    bad = {"nofaces": {"vertices": torch.eye(3), "faces": torch.zeros(0, 3, dtype=torch.long)},
           "partial": ShapeSample(tri, supervision={"surface": torch.zeros(10, 6)}),
           "surface": ShapeSample(tri, supervision={"surface": torch.zeros(10, 3), "queries": torch.zeros(5, 3),
                                                    "occupancy": torch.zeros(5)})}
    for where, sample in bad.items():
        with pytest.raises(DataError, match=f"^{where}:"):
            m.validate(sample, where)


def test_tokens_are_an_unordered_set_of_fixed_size():
    from flowcore_shape.tokenizer import SetTokenizer

    tok = SetTokenizer(8, 4)
    latent = torch.randn(2, 8, 4)
    tokens = tok.encode(latent)
    assert tokens.positions.shape == (2, 8, 1) and not tokens.positions.any() and tokens.mask.all()
    assert torch.equal(tok.decode(tokens), latent) and tok.layout(3).values.shape == (3, 8, 4)
    assert tok.layout(2, 5).values.shape == (2, 5, 4)
    with pytest.raises(DataError, match="latent tokens"):
        tok.layout(1, 0)


def test_autoencoder_learns_the_occupancy_of_two_shapes(registry):
    torch.manual_seed(0)
    m = registry.modality("shape", **{**TINY, "points": 256, "queries": 256, "train_queries": 256})
    ds = registry.dataset("primitives").build("val", count=2, resolution=16, points=256, queries=256)
    batch = m.collate([ds[0]["shape"], ds[1]["shape"]])
    ae = m.autoencoder()
    opt = torch.optim.Adam(ae.parameters(), lr=3e-3)
    first = float(ae.loss(batch)["bce"])
    for _ in range(60):
        loss = ae.loss(batch)["loss"]
        opt.zero_grad()
        loss.backward()
        opt.step()
    ae.eval()
    assert float(ae.loss(batch)["bce"]) < 0.6 * first
    assert float(ae.loss(batch)["accuracy"]) > 0.8


def test_options_are_checked_before_building(registry):
    with pytest.raises(ConfigError, match="resolution"):
        registry.modality("shape", resolution=100, coarse=32)
    with pytest.raises(ConfigError, match="heads"):
        registry.modality("shape", width=30, heads=4)


def test_preview_is_a_png_of_three_views_per_shape(registry, tmp_path):
    m = registry.modality("shape", **TINY)
    ball = read_back(tmp_path, trimesh.creation.icosphere(2), "ball")
    path = m.preview([ball, ball], tmp_path / "sheet")
    with Image.open(path) as img:
        assert img.format == "PNG" and img.size == (3 * 132 + 4, 2 * 132 + 4)
        pixels = np.asarray(img.convert("RGB"))
    centre = pixels[4 + 64, 4 + 64]
    assert centre[2] > 200  # the ball's centre faces the viewer: normal (0, 0, 1) is blue


def test_discovery_does_not_import_torch_or_trimesh():
    code = "import sys, flowcore_shape.plugin; print(any(m in sys.modules for m in ('torch', 'trimesh')))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
