"""Log-mel shapes and range, the device it runs on, and Griffin-Lim's reconstruction of real sound."""

from pathlib import Path

import pytest
import torch

from flowcore_audio.codec import AudioCodec
from flowcore_audio.mel import SILENCE, LogMel, denormalise, normalise
from flowcore_audio.metrics import lsd, mel_l1

#: a recorded sound that ships with many Linux desktops (freedesktop sound theme)
RECORDED = Path("/usr/share/sounds/freedesktop/stereo/complete.oga")
#: Griffin-Lim (64 iterations, zero-phase start) measured LSD 1.25 on the chord and 1.47 on the recording
#: (log10 power, flowcore_audio.metrics.lsd); mel_l1 0.56 and 0.46
LSD_BOUND = 1.6


def test_shapes_follow_the_hop_and_mels():
    mel = LogMel()
    assert mel(torch.zeros(16000)).shape == (64, 101)
    assert mel(torch.zeros(3, 1600)).shape == (3, 64, 11)
    assert mel.frames(16000) == 101
    assert LogMel(n_mels=80, hop=256, n_fft=512)(torch.zeros(2048)).shape == (80, 9)


def test_silence_is_minus_one_and_a_full_scale_sine_stays_below_one(tone):
    mel = LogMel()
    assert torch.equal(mel(torch.zeros(4000)), torch.full((64, 26), SILENCE))
    t = torch.arange(16000) / 16000
    loud = mel(torch.sin(2 * torch.pi * 440 * t))
    assert 0.9 < float(loud.max()) <= 1.0
    assert float(mel(tone(1.0)).min()) >= -1.0
    x = torch.linspace(-12, 3, 50)
    assert torch.allclose(denormalise(normalise(x)), x, atol=1e-5)


def test_a_waveform_has_the_same_frames_alone_and_zero_padded(tone):
    mel = LogMel()
    short = tone(0.3)
    padded = torch.cat([short, torch.zeros(5000)])
    frames = mel.frames(len(short))
    assert torch.allclose(mel(short), mel(padded)[:, :frames], atol=1e-6)


def test_runs_without_a_gpu_and_on_one_when_there_is(tone):
    mel = LogMel()
    cpu = mel(tone(0.5))
    assert cpu.device.type == "cpu"
    if not torch.cuda.is_available():
        pytest.skip("no GPU here: the CPU path is the one checked")
    gpu = mel.to("cuda")(tone(0.5).cuda())
    assert gpu.device.type == "cuda" and torch.allclose(gpu.cpu(), cpu, atol=1e-4)
    assert mel.inverse(gpu).device.type == "cuda"


def test_stays_float32_under_autocast(tone):
    mel = LogMel()
    wave = tone(0.3)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        inside = mel(wave)
        back = mel.inverse(inside)
    assert inside.dtype == back.dtype == torch.float32
    assert torch.equal(inside, mel(wave))


def test_griffin_lim_reconstructs_a_chord_within_the_lsd_bound(tone):
    mel = LogMel()
    wave = tone(1.0)
    back = mel.inverse(mel(wave))
    assert back.shape == (100 * 160,)
    score = lsd([wave], [back])
    assert score < LSD_BOUND, score
    assert lsd([wave], [torch.randn_like(wave) * 0.1]) > 2 * LSD_BOUND  # the bound is far from noise
    assert mel_l1([wave], [back]) < 0.7


@pytest.mark.skipif(not RECORDED.is_file(), reason="no freedesktop sound theme here")
def test_griffin_lim_reconstructs_a_recorded_sound_within_the_lsd_bound():
    mel = LogMel()
    wave = AudioCodec(16000).read(RECORDED)
    back = mel.inverse(mel(wave))
    score = lsd([wave], [back])
    assert score < LSD_BOUND, score
