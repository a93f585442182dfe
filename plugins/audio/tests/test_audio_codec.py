"""The codec reads WAV/FLAC/OGG (MP3 where libsndfile has it) as mono at the model's rate, and
refuses damaged files with one DataError naming them."""

import numpy as np
import pytest
import soundfile as sf
import torch

from flowcore.errors import DataError
from flowcore_audio import codec as C
from flowcore_audio.codec import AudioCodec

SAMPLE_RATE = 16000


@pytest.mark.parametrize("suffix", [".wav", ".flac"])
def test_lossless_round_trip_within_16_bit_steps(tmp_path, suffix, tone):
    codec = AudioCodec(SAMPLE_RATE)
    wave = tone(0.5)
    codec.write(wave, tmp_path / f"a{suffix}")
    back = codec.read(tmp_path / f"a{suffix}")
    assert back.dtype == torch.float32 and back.shape == wave.shape
    assert (back - wave).abs().max() <= codec.round_trip_atol[suffix]
    assert sf.info(tmp_path / f"a{suffix}").subtype == "PCM_16"


def test_ogg_round_trip_is_close_but_lossy(tmp_path, tone):
    codec = AudioCodec(SAMPLE_RATE)
    wave = tone(0.5)
    codec.write(wave, tmp_path / "a.ogg")
    back = codec.read(tmp_path / "a.ogg")
    assert back.shape == wave.shape
    rms = (back - wave).pow(2).mean().sqrt() / wave.pow(2).mean().sqrt()
    assert rms < 0.1  # Vorbis at its default quality: about -30 dB of error on this chord


def test_resampling_keeps_the_frequency(tmp_path):
    t = np.arange(44100) / 44100
    sf.write(tmp_path / "sine.wav", 0.5 * np.sin(2 * np.pi * 440 * t), 44100, subtype="PCM_16")
    wave = AudioCodec(16000).read(tmp_path / "sine.wav")
    assert abs(len(wave) - 16000) <= 1
    spectrum = torch.fft.rfft(wave * torch.hann_window(len(wave)))
    peak_hz = int(spectrum.abs().argmax()) * 16000 / len(wave)
    assert abs(peak_hz - 440) <= 1.0
    assert abs(float(wave.abs().max()) - 0.5) < 0.01


def test_awkward_rate_resamples_through_soxr(tmp_path):
    t = np.arange(44101) / 44101
    sf.write(tmp_path / "odd.wav", 0.5 * np.sin(2 * np.pi * 1000 * t), 44101, subtype="PCM_16")
    wave = AudioCodec(16000).read(tmp_path / "odd.wav")
    assert abs(len(wave) - 16000) <= 1
    assert abs(int(torch.fft.rfft(wave).abs().argmax()) * 16000 / len(wave) - 1000) <= 1.0


def test_stereo_is_averaged_to_mono(tmp_path, tone):
    left, right = tone(0.25).numpy(), np.full(4000, 0.2, dtype=np.float32)
    sf.write(tmp_path / "stereo.flac", np.stack([left, right], 1), SAMPLE_RATE, subtype="PCM_16")
    wave = AudioCodec().read(tmp_path / "stereo.flac")
    assert wave.dim() == 1
    assert np.abs(wave.numpy() - (left + right) / 2).max() < 1e-4


def test_write_is_atomic_and_refuses_unknown_suffixes(tmp_path, tone):
    codec = AudioCodec()
    paths = codec.write_all([tone(0.1), tone(0.2)], tmp_path / "out")
    assert [p.name for p in sorted((tmp_path / "out").iterdir())] == ["sample_0000.wav", "sample_0001.wav"]
    assert [len(codec.read(p)) for p in paths] == [1600, 3200]
    with pytest.raises(DataError, match="suffix"):
        codec.write(tone(0.1), tmp_path / "a.mp4")
    with pytest.raises(DataError, match="NaN"):
        codec.write(torch.tensor([0.0, float("nan")]), tmp_path / "nan.wav")
    assert not (tmp_path / "nan.wav").exists()


@pytest.mark.parametrize("suffix", [".wav", ".flac", ".ogg"])
def test_corrupt_empty_and_truncated_files_are_one_data_error_naming_them(tmp_path, suffix, tone):
    codec = AudioCodec()
    codec.write(tone(0.5), tmp_path / f"good{suffix}")
    raw = (tmp_path / f"good{suffix}").read_bytes()
    damaged = {"empty": b"", "junk": bytes(range(256)) * 8, "truncated": raw[: len(raw) // 2]}
    for name, blob in damaged.items():
        path = tmp_path / f"{name}{suffix}"
        path.write_bytes(blob)
        with pytest.raises(DataError) as info:
            codec.read(path)
        assert path.name in str(info.value), str(info.value)


def test_a_file_without_frames_and_non_finite_samples_are_refused(tmp_path):
    sf.write(tmp_path / "silent.wav", np.zeros(0, np.float32), SAMPLE_RATE)
    with pytest.raises(DataError, match="no audio frames"):
        AudioCodec().read(tmp_path / "silent.wav")
    sf.write(tmp_path / "nan.wav", np.array([0.0, np.nan, 0.1], np.float32), SAMPLE_RATE, subtype="FLOAT")
    with pytest.raises(DataError, match="nan.wav.*NaN"):
        AudioCodec().read(tmp_path / "nan.wav")
    sf.write(tmp_path / "loud.wav", np.array([0.0, 3.0, 0.1], np.float32), SAMPLE_RATE, subtype="FLOAT")
    with pytest.raises(DataError, match="loud.wav.*peak"):
        AudioCodec().read(tmp_path / "loud.wav")


@pytest.mark.skipif(not C.MP3, reason="this libsndfile has no MP3")
def test_mp3_reads_where_libsndfile_has_it(tmp_path, tone):
    wave = tone(0.5)
    sf.write(tmp_path / "a.mp3", wave.numpy(), SAMPLE_RATE, format="MP3", subtype="MPEG_LAYER_III")
    back = AudioCodec().read(tmp_path / "a.mp3")
    assert abs(len(back) - len(wave)) < 2000  # the encoder's padding
    assert ".mp3" in AudioCodec.extensions
    raw = (tmp_path / "a.mp3").read_bytes()
    (tmp_path / "cut.mp3").write_bytes(raw[: len(raw) // 2])
    with pytest.raises(DataError, match="cut.mp3: truncated"):
        AudioCodec().read(tmp_path / "cut.mp3")


def test_mp3_is_refused_cleanly_without_it(tmp_path, monkeypatch):
    monkeypatch.setattr(C, "MP3", False)
    (tmp_path / "a.mp3").write_bytes(b"ID3")
    with pytest.raises(DataError, match="a.mp3.*cannot read MP3"):
        AudioCodec().read(tmp_path / "a.mp3")
