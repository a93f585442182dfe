"""The Pillow codec: exact 8/16-bit round trips, peer agreement with Pillow, named errors."""

import numpy as np
import pytest
import torch
from PIL import Image

from flowcore.errors import DataError
from flowcore_image.codec import ImageCodec


def eight_bit(c, h=5, w=7, seed=0):
    """A sample whose values lie exactly on the 8-bit grid."""
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, (c, h, w), generator=g).float() * (2 / 255) - 1


@pytest.mark.parametrize("channels", [1, 2, 3, 4])
@pytest.mark.parametrize("suffix", [".png", ".webp"])
def test_lossless_formats_round_trip_exactly(tmp_path, channels, suffix):
    if suffix == ".webp" and channels in (1, 2):
        pytest.skip("WebP stores colour only: grey comes back as RGB")
    x = eight_bit(channels)
    codec = ImageCodec()
    codec.write(x, tmp_path / f"a{suffix}")
    back = codec.read(tmp_path / f"a{suffix}")
    assert back.shape == x.shape
    assert torch.allclose(back, x, atol=1e-6)


def test_sixteen_bit_grey_png_keeps_sixteen_bits(tmp_path):
    g = torch.Generator().manual_seed(1)
    x = torch.randint(0, 65536, (1, 6, 9), generator=g).float() * (2 / 65535) - 1
    ImageCodec(bits=16).write(x, tmp_path / "deep.png")
    with Image.open(tmp_path / "deep.png") as img:
        assert img.mode.startswith("I;16")
        raw = np.asarray(img).astype(np.int64)
    assert raw.max() > 255  # really 16 bits on disk, not 8
    assert torch.allclose(ImageCodec().read(tmp_path / "deep.png"), x, atol=1e-6)


def test_jpeg_read_agrees_with_pillow(tmp_path):
    rgb = np.random.default_rng(0).integers(0, 256, (16, 16, 3), dtype=np.uint8)
    Image.fromarray(rgb).save(tmp_path / "p.jpg", quality=90)
    expected = np.asarray(Image.open(tmp_path / "p.jpg")).astype(np.float32) / 127.5 - 1
    got = ImageCodec().read(tmp_path / "p.jpg")
    assert torch.allclose(got, torch.from_numpy(expected).permute(2, 0, 1), atol=1e-6)


def test_jpeg_write_is_close_and_rejects_alpha(tmp_path):
    x = torch.zeros(3, 16, 16)
    x[0, 4:12, 4:12] = 1
    ImageCodec(quality=95).write(x, tmp_path / "q.jpeg")
    assert (ImageCodec().read(tmp_path / "q.jpeg") - x).abs().mean() < 0.05
    with pytest.raises(DataError, match="alpha"):
        ImageCodec().write(torch.zeros(4, 8, 8), tmp_path / "r.jpg")


def test_channels_option_converts_like_pillow(tmp_path):
    rgb = np.random.default_rng(2).integers(0, 256, (8, 8, 3), dtype=np.uint8)
    Image.fromarray(rgb).save(tmp_path / "c.png")
    grey = np.asarray(Image.fromarray(rgb).convert("L")).astype(np.float32) / 127.5 - 1
    got = ImageCodec(channels=1).read(tmp_path / "c.png")
    assert torch.allclose(got[0], torch.from_numpy(grey), atol=1e-6)


def test_palette_with_transparency_reads_as_rgba(tmp_path):
    img = Image.new("P", (4, 4), 1)
    img.putpalette([0, 0, 0, 255, 0, 0] + [0] * 762)
    img.info["transparency"] = 0
    img.save(tmp_path / "p.png", transparency=0)
    got = ImageCodec().read(tmp_path / "p.png")
    assert got.shape == (4, 4, 4)
    assert torch.allclose(got[:, 0, 0], torch.tensor([1.0, -1, -1, 1]))


@pytest.mark.parametrize("damage", ["garbage", "truncated", "empty"])
def test_corrupt_files_raise_data_error_naming_the_file(tmp_path, damage):
    good = tmp_path / "good.png"
    ImageCodec().write(eight_bit(3, 64, 64), good)
    data = good.read_bytes()
    bad = tmp_path / f"bad_{damage}.png"
    bad.write_bytes({"garbage": b"not an image at all" * 10, "truncated": data[: len(data) // 2],
                     "empty": b""}[damage])
    with pytest.raises(DataError, match=f"bad_{damage}.png"):
        ImageCodec().read(bad)


def test_unknown_suffix_is_refused(tmp_path):
    with pytest.raises(DataError, match="suffix"):
        ImageCodec().write(torch.zeros(1, 4, 4), tmp_path / "x.bmpx")
