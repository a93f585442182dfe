"""The audio modality passes the conformance kit; options, validation, decode and preview."""

import subprocess
import sys

import numpy as np
import pytest
import torch
from PIL import Image

from flowcore.errors import ConfigError, DataError
from flowcore.testing import check_modality


def test_conformance_with_three_durations(registry, tmp_path, tone):
    m = registry.modality("audio")
    samples = [tone(0.6), tone(0.25, freqs=(440.0,)), tone(0.4, freqs=(196.0, 246.9))]
    report = check_modality(m, tmp_path, samples=samples, sizes=[0.5, 1, 1.5])
    assert {"collate round trip", "autoencoder shapes", "tokenizer round trip", "variable-length layouts",
            "codec round trip", "metrics"} <= set(report.passed)


def test_collate_pads_and_split_restores_lengths(registry, tone):
    m = registry.modality("audio")
    batch = m.collate([tone(0.1), tone(0.3)])
    assert batch["wave"].shape == (2, 4800) and batch["lengths"].tolist() == [1600, 4800]
    assert not batch["wave"][0, 1600:].any()
    assert [len(w) for w in m.split(batch)] == [1600, 4800]


def test_generated_tokens_decode_to_waveforms_of_their_duration(registry):
    m = registry.modality("audio")
    tokens = m.tokenizer.layout(2, [1.0, 0.5])
    tokens = tokens.with_values(torch.randn(tokens.values.shape, generator=torch.Generator().manual_seed(0)))
    ae = m.autoencoder()
    waves = m.split(ae.decode(m.tokenizer.decode(tokens)))
    assert [len(w) for w in waves] == [103 * 160, 55 * 160]  # (frames - 1) hop: encodes to the same frames
    assert all(w.abs().max() <= 1 for w in waves)


def test_validate_names_where(registry):
    m = registry.modality("audio")
    assert m.validate(torch.zeros(10), "x").shape == (10,)
    m.validate(torch.full((4,), 1.0005), "within tolerance")
    bad = {"stereo": torch.zeros(2, 10), "empty": torch.zeros(0), "ints": torch.zeros(10, dtype=torch.int16),
           "nan": torch.tensor([0.0, float("nan")]), "loud": torch.tensor([0.0, 1.5])}
    for where, sample in bad.items():
        with pytest.raises(DataError, match=f"^{where}:"):
            m.validate(sample, where)


def test_options_are_checked_before_building(registry):
    with pytest.raises(ConfigError, match="n_mels"):
        registry.modality("audio", n_mels=60)
    with pytest.raises(ConfigError, match="hop"):
        registry.modality("audio", hop=2048)
    with pytest.raises(ConfigError, match="vocoder"):
        registry.modality("audio", vocoder="runs/vocoder")
    m = registry.modality("audio", patch=4, n_mels=32, duration=0.5)
    assert m.tokenizer.channels == 16 and m.tokenizer.layout(1).values.shape == (1, 13 * 8, 16)  # 51 frames -> 52


def test_preview_is_a_spectrogram_png(registry, tmp_path, tone):
    m = registry.modality("audio")
    path = m.preview([tone(0.5), tone(1.0), torch.zeros(800)], tmp_path / "spec")
    assert path.name == "spec.png" and not list(tmp_path.glob(".*tmp"))
    with Image.open(path) as img:
        assert img.format == "PNG" and img.size == (101 * 2, 3 * 64 * 2 + 2 * 4)
        pixels = np.asarray(img.convert("RGB"))
    assert (pixels[-64 * 2:, : 6 * 2] == [0, 0, 4]).all()  # the silent clip is black
    assert (pixels[64 * 2: 64 * 2 + 4] == 255).all()  # a white gutter


def test_discovery_does_not_import_torch_or_soundfile():
    code = "import sys, flowcore_audio.plugin; print(any(m in sys.modules for m in ('torch', 'soundfile')))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
