"""The trained vocoder: its iSTFT head inverts an analytic STFT, its loss falls in training, its file
round-trips, and the audio modality decodes through it when configured."""

import math

import pytest
import torch

from flowcore.errors import ConfigError, DataError
from flowcore_audio.mel import LogMel
from flowcore_audio.modality import Audio
from flowcore_audio.vocoder import (
    FILE,
    Vocoder,
    VocoderRecipe,
    istft,
    load_vocoder,
    stft_magnitude,
    train_vocoder,
    vocoder_loss,
)

TINY = dict(dim=16, blocks=1, head_fft=640)


def chirp(seconds: float = 0.5, rate: int = 16000) -> torch.Tensor:
    """A linear chirp 200 -> 2000 Hz at amplitude 0.5: an analytic signal with a moving spectrum."""
    t = torch.arange(round(seconds * rate), dtype=torch.float64) / rate
    return (0.5 * torch.sin(2 * math.pi * (200 * t + 1800 / (2 * seconds) * t**2))).float()


def test_the_istft_head_inverts_the_stft_of_an_analytic_signal():
    wave = chirp()
    hop, n_fft = 160, 640
    spec = torch.stft(wave[None], n_fft, hop, window=torch.hann_window(n_fft), center=True, return_complex=True)
    frames = spec.shape[-1]
    assert frames == len(wave) // hop + 1  # the mel's frames: F frames give (F - 1) hop samples
    back = istft(spec.abs().clamp_min(1e-12).log(), spec.angle(), hop, (frames - 1) * hop)
    assert back.shape == (1, (frames - 1) * hop)
    assert torch.allclose(back[0], wave[: back.shape[1]], atol=1e-4)


def test_the_loss_is_zero_for_the_same_wave_and_positive_otherwise(tone):
    mel, wave = LogMel(), tone(0.5)[None]
    same = vocoder_loss(wave, wave, mel)
    assert float(same["loss"]) == pytest.approx(0.0, abs=1e-6)
    assert float(vocoder_loss(0.5 * wave, wave, mel)["loss"]) > 0.5  # log |S| off by log 2 = 0.69
    assert stft_magnitude(wave, 512, 128).shape == (1, 257, len(wave[0]) // 128 + 1)


def test_a_vocoder_outputs_the_length_griffin_lim_does():
    mel = LogMel()(chirp(0.5))[None]  # [1, 64, 51]
    assert Vocoder(**TINY)(mel).shape == (1, 50 * 160)


def test_its_magnitude_starts_from_the_inverse_filter_bank_so_silence_stays_silent():
    vocoder = Vocoder(**TINY)
    torch.nn.init.zeros_(vocoder.head.weight)  # no correction: the prior magnitude, phase 0
    torch.nn.init.zeros_(vocoder.head.bias)
    with torch.no_grad():
        silent = vocoder(torch.full((1, 64, 51), -1.0))
    assert float(silent.abs().max()) < 1e-3
    wave = chirp(0.5)
    log_mag, _ = vocoder.spectrum(LogMel()(wave)[None])
    # the prior's loudest bin in each frame follows the chirp's frequency (within a mel band)
    found = log_mag[0, :, 5:-5].argmax(0).float() * 16000 / 640
    t = (torch.arange(5, 46) * 160 / 16000).float()
    assert ((found - (200 + 1800 / 0.5 * t)).abs() < 120).float().mean() > 0.9


def test_training_lowers_the_loss_on_one_clip_and_the_file_round_trips(tmp_path, tone):
    clip = tone(0.5)[None]
    recipe = VocoderRecipe(steps=60, minutes=5, batch_size=2, segment=0.5, lr=3e-3, warmup=5, **TINY)
    path = train_vocoder(tmp_path, recipe, clips=clip, save_every=1000, log=None)
    assert path == tmp_path / FILE
    mel = LogMel()
    torch.manual_seed(recipe.seed)
    untrained = Vocoder(**TINY)
    trained = load_vocoder(tmp_path, {"sample_rate": 16000, "n_fft": 1024, "hop": 160, "n_mels": 64, "f_max": None})
    with torch.no_grad():
        before = float(vocoder_loss(untrained(mel(clip)), clip[:, :8000], mel)["loss"])
        after = float(vocoder_loss(trained(mel(clip)), clip[:, :8000], mel)["loss"])
    assert after < 0.7 * before
    assert not any(p.requires_grad for p in trained.parameters())


def test_a_vocoder_for_another_mel_a_damaged_file_and_a_missing_one_are_refused(tmp_path, tone):
    recipe = VocoderRecipe(steps=1, minutes=5, batch_size=1, segment=0.25, warmup=1, **TINY)
    path = train_vocoder(tmp_path / "v", recipe, clips=tone(0.3)[None], log=None)
    with pytest.raises(ConfigError, match="trained for the mel"):
        load_vocoder(path, {"sample_rate": 16000, "n_fft": 1024, "hop": 160, "n_mels": 80, "f_max": None})
    damaged = tmp_path / "damaged.safetensors"
    damaged.write_bytes(path.read_bytes()[:100])
    with pytest.raises(DataError, match="damaged.safetensors"):
        load_vocoder(damaged)
    with pytest.raises(ConfigError, match="does not exist"):
        Audio(vocoder=str(tmp_path / "nowhere"))


def test_the_modality_decodes_through_a_configured_vocoder_and_keeps_it_out_of_its_state(tmp_path, tone):
    recipe = VocoderRecipe(steps=1, minutes=5, batch_size=1, segment=0.25, warmup=1, **TINY)
    train_vocoder(tmp_path, recipe, clips=tone(0.3)[None], log=None)
    audio = Audio(vocoder=str(tmp_path))
    ae = audio.autoencoder()
    batch = audio.collate([tone(0.5), tone(0.3)])
    latent = ae.encode(batch)
    out = ae.decode(latent)
    assert torch.equal(out["lengths"], (latent["frames"] - 1) * 160)
    expected = audio.vocoder()(latent["mel"][:, 0]).clamp(-1, 1)
    inside = torch.arange(out["wave"].shape[1])[None] < out["lengths"][:, None]
    assert torch.allclose(out["wave"], expected * inside, atol=1e-6)
    # a flow run saves the autoencoder's state: the vocoder's weights are not in it, so it stays a fixed transform
    assert set(ae.state_dict()) == set(Audio().autoencoder().state_dict())
    assert not any(True for _ in ae.parameters())
    assert Audio(vocoder="griffin_lim").autoencoder().vocoder is None
    plain = Audio().autoencoder()
    plain.use_vocoder(audio.vocoder())  # a loaded flow run switches to the vocoder the same way
    assert torch.allclose(plain.decode(latent)["wave"], out["wave"], atol=1e-6)
    assert set(plain.state_dict()) == set(Audio().autoencoder().state_dict())
