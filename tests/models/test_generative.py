"""Autoencoders, VAE and DCGAN: the ELBO against torch.distributions, reparameterization
gradients, training-only noise, and the paper's shapes / layer pattern / init."""

import pytest
import torch
from torch import nn
from torch.distributions import Normal, kl_divergence

from archlab.models import MODELS, create_model
from archlab.models.generative import VAE, Autoencoder, dcgan_stages, elbo_loss, gaussian_kl

SIZES = [(1, 28), (3, 32)]


def test_kl_matches_torch_distributions():
    torch.manual_seed(0)
    mu, logvar = torch.randn(4, 6, dtype=torch.float64), torch.randn(4, 6, dtype=torch.float64)
    expected = kl_divergence(Normal(mu, torch.exp(0.5 * logvar)), Normal(0.0, 1.0)).sum(-1)
    torch.testing.assert_close(gaussian_kl(mu, logvar), expected, rtol=0, atol=1e-12)
    x = torch.rand(4, 1, 2, 2, dtype=torch.float64)
    out = elbo_loss(x, torch.rand_like(x), mu, logvar)
    torch.testing.assert_close(out["kl"], expected.mean(), rtol=0, atol=1e-12)


@pytest.mark.parametrize("likelihood", ["bernoulli", "gaussian"])
def test_elbo_reconstruction_terms(likelihood):
    torch.manual_seed(1)
    x, recon = torch.rand(3, 1, 4, 4), torch.rand(3, 1, 4, 4).clamp(0.01, 0.99)
    mu, logvar = torch.randn(3, 2), torch.randn(3, 2)
    out = elbo_loss(x, recon, mu, logvar, likelihood=likelihood, beta=0.5)
    if likelihood == "bernoulli":  # -log p(x|z) = -sum x log p + (1 - x) log(1 - p)
        nll = -(x * recon.log() + (1 - x) * (1 - recon).log())
    else:  # N(recon, I) up to its constant
        nll = 0.5 * (x - recon) ** 2
    torch.testing.assert_close(out["recon_loss"], nll.sum((1, 2, 3)).mean())
    torch.testing.assert_close(out["loss"], out["recon_loss"] + 0.5 * out["kl"])
    with pytest.raises(ValueError, match="likelihood"):
        elbo_loss(x, recon, mu, logvar, likelihood="poisson")


def test_reparameterization_gradients_reach_mu_and_logvar():
    mu = torch.randn(2, 3, requires_grad=True)
    logvar = torch.randn(2, 3, requires_grad=True)
    torch.manual_seed(5)
    z = VAE.reparameterize(mu, logvar)
    torch.manual_seed(5)
    eps = torch.randn(2, 3)  # the same noise draw
    torch.testing.assert_close(z, mu + torch.exp(logvar / 2) * eps)
    z.sum().backward()
    torch.testing.assert_close(mu.grad, torch.ones(2, 3))  # dz/dmu = 1
    torch.testing.assert_close(logvar.grad, 0.5 * torch.exp(logvar.detach() / 2) * eps)


def test_vae_trains_encoder_through_sampling_and_uses_mean_in_eval():
    torch.manual_seed(0)
    model = create_model("vae", latent_dim=4)
    x = torch.rand(2, 1, 28, 28)
    out = model(x)
    assert not torch.equal(out["z"], out["mu"])  # sampled in training
    elbo_loss(x, out["recon"], out["mu"], out["logvar"])["loss"].backward()
    assert model.encoder.fc.weight.grad.abs().sum() > 0
    model.eval()
    out = model(x)
    assert torch.equal(out["z"], out["mu"])
    assert model.sample(3).shape == (3, 1, 28, 28)


@pytest.mark.parametrize("name", ["autoencoder", "denoising_autoencoder", "vae"])
@pytest.mark.parametrize("in_chans,img_size", SIZES)
def test_autoencoder_shapes(name, in_chans, img_size):
    model = create_model(name, in_chans=in_chans, img_size=img_size).eval()
    x = torch.rand(2, in_chans, img_size, img_size)
    out = model(x)
    assert out["recon"].shape == x.shape and out["logits"].shape == x.shape
    assert out["recon"].min() >= 0 and out["recon"].max() <= 1
    torch.testing.assert_close(out["recon"], torch.sigmoid(out["logits"]))
    assert model.default_cfg.input_size == (in_chans, img_size, img_size)
    assert MODELS.entry(name).meta["task"] == "generative"


@pytest.mark.parametrize("noise", ["masking", "gaussian"])
def test_denoising_noise_only_in_training(noise):
    torch.manual_seed(0)
    model = create_model("denoising_autoencoder", noise=noise, mask_prob=0.3, noise_std=0.2)
    clean = Autoencoder()
    clean.load_state_dict(model.state_dict())
    x = torch.rand(2, 1, 28, 28) + 0.1  # no exact zeros, so masked entries are countable
    noisy = model(x)["noisy"]
    if noise == "masking":
        assert abs((noisy == 0).float().mean().item() - 0.3) < 0.06
        kept = noisy != 0
        assert torch.equal(noisy[kept], x[kept])
    else:
        assert abs((noisy - x).std().item() - 0.2) < 0.03
    model.eval()
    out = model(x)
    assert torch.equal(out["noisy"], x)
    torch.testing.assert_close(out["recon"], clean.eval()(x)["recon"], rtol=0, atol=0)


@pytest.mark.parametrize("in_chans,img_size", SIZES)
def test_dcgan_shapes_and_gradients(in_chans, img_size):
    torch.manual_seed(0)
    gen = create_model("dcgan_generator", in_chans=in_chans, img_size=img_size, ngf=8)
    disc = create_model("dcgan_discriminator", in_chans=in_chans, img_size=img_size, ndf=8)
    images = gen(torch.randn(2, 100))
    assert images.shape == (2, in_chans, img_size, img_size)
    assert images.abs().max() <= 1  # tanh output
    logits = disc(images)
    assert logits.shape == (2,)
    nn.functional.binary_cross_entropy_with_logits(logits, torch.ones(2)).backward()
    assert all(p.grad is not None for p in gen.parameters())


def test_dcgan_layer_pattern_and_init():
    torch.manual_seed(0)
    gen, disc = create_model("dcgan_generator", in_chans=3, img_size=32), \
        create_model("dcgan_discriminator", in_chans=3, img_size=32)
    gen_types = [type(m) for m in gen.net]
    assert gen_types[-2:] == [nn.ConvTranspose2d, nn.Tanh]  # no BN on the output layer
    assert gen_types.count(nn.ConvTranspose2d) == 4 and gen_types.count(nn.BatchNorm2d) == 3
    assert [type(m) for m in disc.features[:2]] == [nn.Conv2d, nn.LeakyReLU]  # no BN on input
    slopes = {m.negative_slope for m in disc.modules() if isinstance(m, nn.LeakyReLU)}
    assert slopes == {0.2}
    convs = [m.weight for m in [*gen.modules(), *disc.modules()]
             if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d))]
    weights = torch.cat([w.flatten() for w in convs])
    assert abs(weights.mean().item()) < 1e-3 and abs(weights.std().item() - 0.02) < 1e-3
    assert dcgan_stages(28) == (2, 7) and dcgan_stages(32) == (3, 4)
    with pytest.raises(ValueError, match="img_size"):
        create_model("dcgan_generator", img_size=27)
    with pytest.raises(ValueError, match="images"):
        disc(torch.randn(2, 1, 32, 32))
