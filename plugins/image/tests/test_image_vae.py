"""The KL-VAE: shapes per downsampling, latent shift/scale from data and saved with the weights."""

import pytest
import torch
from safetensors.torch import load_file, save_file

from flowcore.errors import DataError
from flowcore_image.data import shapes
from flowcore_image.vae import KLVAE


def shape_batch(n=32, size=16):
    ds = shapes("train", limit=n, image_size=size)
    return torch.stack([ds[i]["image"] for i in range(n)])


@pytest.mark.parametrize("f", [1, 2, 4, 8])
def test_latent_is_downsampled_by_f(f):
    vae = KLVAE(channels=3, latent_channels=5, downsample=f, width=8)
    x = torch.rand(2, 3, 16, 24) * 2 - 1
    with torch.no_grad():
        z = vae.encode(x)
        assert z.shape == (2, 5, 16 // f, 24 // f)
        assert vae.decode(z).shape == x.shape


def test_bad_downsample_and_sizes_are_refused():
    with pytest.raises(DataError, match="downsample"):
        KLVAE(downsample=3)
    with pytest.raises(DataError, match="multiples of 4"):
        KLVAE(channels=1, downsample=4, width=8).encode(torch.zeros(1, 1, 10, 12))


def test_kl_term_is_the_gaussian_kl():
    vae = KLVAE(channels=3, latent_channels=2, downsample=2, width=8, kl_weight=0.0)
    x = shape_batch(4)
    mean, logvar = vae.moments(x)
    expected = torch.distributions.kl_divergence(
        torch.distributions.Normal(mean, (0.5 * logvar).exp()), torch.distributions.Normal(0.0, 1.0)).mean()
    torch.manual_seed(0)
    assert torch.allclose(vae.loss(x)["kl"], expected, atol=1e-5)


def test_calibrate_whitens_the_latents_of_the_data():
    torch.manual_seed(0)
    vae = KLVAE(channels=3, latent_channels=3, downsample=2, width=8).eval()
    x = shape_batch(64)
    shift, scale = vae.calibrate([x[:32], x[32:]])
    with torch.no_grad():
        z = vae.encode(x)
        means = vae.moments(x)[0]
    assert torch.allclose(z.mean(dim=(0, 2, 3)), torch.zeros(3), atol=1e-4)
    assert torch.allclose(z.std(dim=(0, 2, 3), unbiased=False), torch.ones(3), atol=1e-3)
    assert torch.allclose(shift, means.mean(dim=(0, 2, 3)), atol=1e-5)
    with torch.no_grad():  # decode undoes the affine map: same image as decoding the raw mean
        assert torch.allclose(vae.decode(z), vae.decoder(means), atol=1e-4)


def test_training_tracks_latent_statistics():
    torch.manual_seed(0)
    vae = KLVAE(channels=3, latent_channels=2, downsample=2, width=8, stats_momentum=1.0).train()
    x = shape_batch(16)
    vae.loss(x)
    means = vae.moments(x)[0].detach()
    assert torch.allclose(vae.latent_shift, means.mean(dim=(0, 2, 3)), atol=1e-5)
    assert torch.allclose(vae.latent_scale, 1 / means.std(dim=(0, 2, 3)), rtol=1e-4)


def test_latent_stats_are_saved_with_the_weights(tmp_path):
    vae = KLVAE(channels=3, latent_channels=2, downsample=2, width=8).eval()
    x = shape_batch(8)
    vae.calibrate([x])
    save_file({k: v.contiguous() for k, v in vae.state_dict().items()}, str(tmp_path / "vae.safetensors"))
    fresh = KLVAE(channels=3, latent_channels=2, downsample=2, width=8).eval()
    fresh.load_state_dict(load_file(str(tmp_path / "vae.safetensors")))
    with torch.no_grad():
        assert torch.allclose(fresh.encode(x), vae.encode(x))


def test_a_few_steps_reduce_the_reconstruction_loss():
    torch.manual_seed(0)
    vae = KLVAE(channels=3, latent_channels=4, downsample=2, width=8)
    x = shape_batch(32)
    opt = torch.optim.Adam(vae.parameters(), lr=3e-3)
    first = None
    for _ in range(40):
        losses = vae.loss(x)
        opt.zero_grad()
        losses["loss"].backward()
        opt.step()
        first = first if first is not None else float(losses["recon"])
    assert float(losses["recon"]) < 0.6 * first
