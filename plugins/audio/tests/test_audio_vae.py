"""The KL-VAE on the mel: 4x down in time and frequency, exact tokens of its latent, the KL term
against torch.distributions, and a reconstruction loss that falls in a few steps."""

import pytest
import torch
from pydantic import ValidationError
from torch.distributions import Normal, kl_divergence

from flowcore_audio.modality import Audio
from flowcore_audio.options import AudioOptions
from flowcore_audio.vae import MelVAE

TINY = dict(space="vae", patch=[2, 2], latent_channels=8, vae_width=8)


def test_latent_shapes_tokens_and_decoded_lengths_for_two_durations(tone):
    audio = Audio(**TINY)
    vae = audio.autoencoder()
    assert isinstance(vae, MelVAE)
    batch = audio.collate([tone(1.0), tone(0.5)])
    with torch.no_grad():
        latent = vae.encode(batch)
    # 101 and 51 mel frames round up to 104 and 56 (multiples of 4 x 2), 26 and 14 latent frames
    assert latent["mel"].shape == (2, 8, 16, 26) and latent["frames"].tolist() == [26, 14]
    assert (latent["mel"][1, ..., 14:] == 0).all()
    tokens = audio.tokenizer.encode(latent)
    assert tokens.values.shape == (2, 13 * 8, 8 * 2 * 2) and tokens.mask.sum(1).tolist() == [104, 7 * 8]
    back = audio.tokenizer.decode(tokens)
    assert torch.equal(back["mel"], latent["mel"]) and torch.equal(back["frames"], latent["frames"])
    assert audio.tokenizer.layout(3, 1.0).values.shape == (3, 104, 32)
    out = vae.decode(latent)
    assert out["lengths"].tolist() == [103 * 160, 55 * 160] and out["wave"].shape == (2, 103 * 160)
    assert (out["wave"][1, 55 * 160:] == 0).all()


def test_the_kl_term_is_the_closed_form_of_torch_distributions(tone):
    vae = Audio(**TINY).autoencoder()
    batch = Audio().collate([tone(0.5)] * 2)
    mean, logvar = vae.moments(vae.log_mel(batch)[0])
    expected = kl_divergence(Normal(mean, (0.5 * logvar).exp()), Normal(0.0, 1.0)).mean()
    assert float(vae.loss(batch)["kl"]) == pytest.approx(float(expected.detach()), rel=1e-5)


def test_a_few_steps_lower_the_reconstruction_error_of_a_clip(tone):
    torch.manual_seed(0)
    vae = Audio(**TINY).autoencoder().train()
    batch = Audio().collate([tone(0.5)] * 2)
    opt = torch.optim.Adam(vae.parameters(), lr=3e-3)
    first = float(vae.loss(batch)["recon"])
    for _ in range(25):
        loss = vae.loss(batch)["loss"]
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert float(vae.loss(batch)["recon"]) < 0.6 * first
    assert not torch.equal(vae.latent_scale, torch.ones(8))  # the running statistics moved


def test_the_default_space_stays_the_fixed_log_mel():
    assert AudioOptions().space == "mel"
    assert not any(True for _ in Audio().autoencoder().parameters())
    assert Audio().tokenizer.channels == 64
    with pytest.raises(ValidationError, match="multiple of 4"):
        AudioOptions(space="vae", patch=[2, 32])  # 64 mels / 4 = 16 latent bins: fewer than a patch of 32
