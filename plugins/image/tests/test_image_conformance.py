"""The image modality passes the conformance kit, in pixel and latent space; preview grids."""

import subprocess
import sys

import numpy as np
import torch
from PIL import Image

from flowcore.testing import check_modality
from flowcore_image.modality import make_grid


def test_pixel_space_digits_conformance(registry, tmp_path):
    m = registry.modality("image", channels=1, image_size=8, patch=2, classifier="digits")
    report = check_modality(m, tmp_path, datasets=["digits"], sizes=[(8, 8), (8, 16), (4, 6)])
    assert m.autoencoder() is None
    assert {"codec round trip", "variable-length layouts", "metrics"} <= set(report.passed)
    assert set(m.metrics()) == {"pixel_moments", "pixel_histogram_tv", "classifier_fd", "class_histogram_tv"}


def test_latent_space_shapes_conformance(registry, tmp_path):
    m = registry.modality("image", channels=3, image_size=16, patch=1, space="latent", downsample=4,
                          latent_channels=3, vae_width=8)
    report = check_modality(m, tmp_path, datasets=["shapes"], sizes=[(16, 16), (32, 16)])
    assert "autoencoder shapes" in report.passed
    assert m.tokenizer.layout(2).values.shape == (2, 16, 3)


def test_preview_is_a_grid_png_of_the_samples(registry, tmp_path):
    m = registry.modality("image", channels=1, image_size=8)
    samples = [torch.rand(1, 8, 8) * 2 - 1 for _ in range(10)]
    path = m.preview(samples, tmp_path / "grid.png")
    with Image.open(path) as img:
        assert img.format == "PNG" and img.size == (4 * 66 + 2, 3 * 66 + 2)  # 4 x 3 cells of 8 px x 8 + gutter
        pixels = np.asarray(img).astype(np.float32) / 127.5 - 1
    cell = pixels[2 + 66: 2 + 66 + 64: 8, 2 + 66: 2 + 66 + 64: 8]  # row 1, column 1 = sample 5
    assert np.abs(cell - samples[5][0].numpy()).max() <= 1 / 255 + 1e-6
    assert (pixels[:2] == 1).all()  # white gutter


def test_grid_of_colour_images_keeps_channels():
    grid = make_grid(torch.zeros(3, 3, 16, 16), columns=3, min_cell=16)
    assert grid.shape == (3, 16 + 4, 3 * 18 + 2)


def test_discovery_does_not_import_torch_or_pillow():
    code = "import sys, flowcore_image.plugin; print(any(m in sys.modules for m in ('torch', 'PIL')))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_example_configs_validate(registry):
    from pathlib import Path

    from flowcore.train.bundle import build_modality
    from flowcore.train.config import load_config

    root = Path(__file__).resolve().parents[3] / "examples" / "configs"
    for name in ("image_mnist.yaml", "image_fashion.yaml"):
        config = load_config(root / name, registry=registry)
        image = build_modality(config, "image", registry)
        assert image.tokenizer.layout(1).values.shape == (1, 49, 16)
