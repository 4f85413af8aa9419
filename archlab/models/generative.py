"""Generative image models: autoencoders, the VAE and DCGAN, all ``task="generative"``.

What each ``forward`` returns (a Task turns it into a loss):

* :class:`Autoencoder` / :class:`DenoisingAutoencoder`: ``x (B, C, H, W)`` in [0, 1] ->
  ``{"recon": sigmoid(logits), "logits", "z"}`` (+ ``"noisy"``, the corrupted input, for the
  denoising one); loss e.g. ``F.binary_cross_entropy_with_logits(out["logits"], x)``.
* :class:`VAE`: ``x`` in [0, 1] -> ``{"recon", "logits", "mu", "logvar", "z"}``; loss
  ``elbo_loss(x, out["recon"], out["mu"], out["logvar"])["loss"]``. z is sampled in training and
  is ``mu`` in eval mode; ``sample(n)`` decodes z ~ N(0, I).
* :class:`DCGANGenerator`: ``z (B, latent_dim)`` -> images (B, C, H, W) in [-1, 1] (tanh);
  :class:`DCGANDiscriminator`: images -> logits (B,) (use ``BCEWithLogits``). These return plain
  tensors because a GAN task alternates between the two models itself.

Autoencoders work in pixel units ([0, 1], ``default_cfg`` mean 0 / std 1); DCGAN models in
[-1, 1] (mean 0.5 / std 0.5 maps [0, 1] pixels there). Sizes: any ``img_size`` divisible by 4
for the autoencoders; 28 and 32 (and 64, ...) for DCGAN.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from archlab.layers.activations import create_act
from archlab.models._contract import DefaultCfg
from archlab.models._factory import register_model

PAPER_AE = ("Hinton & Salakhutdinov, Reducing the Dimensionality of Data with Neural Networks, "
            "Science 2006")
PAPER_DAE = ("Vincent et al., Extracting and Composing Robust Features with Denoising "
             "Autoencoders, ICML 2008")
PAPER_VAE = "Kingma & Welling, Auto-Encoding Variational Bayes, ICLR 2014"
PAPER_DCGAN = ("Radford et al., Unsupervised Representation Learning with Deep Convolutional "
               "Generative Adversarial Networks, ICLR 2016")
NOISES = ("gaussian", "masking")
LIKELIHOODS = ("bernoulli", "gaussian")


# --------------------------------------------------------------------------- autoencoders
class ConvEncoder(nn.Module):
    """(B, C, H, W) -> (B, out_dim): stride-2 4x4 convs halve the size per width, then a linear."""

    def __init__(self, in_chans: int, img_size: int, widths: tuple[int, ...], out_dim: int,
                 act: str = "relu") -> None:
        super().__init__()
        layers, chans = [], in_chans
        for width in widths:
            layers += [nn.Conv2d(chans, width, 4, stride=2, padding=1), create_act(act)]
            chans = width
        self.convs = nn.Sequential(*layers)
        side = img_size // 2 ** len(widths)
        self.fc = nn.Linear(chans * side * side, out_dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.convs(x).flatten(1))  # (B, C', h, w) -> (B, out_dim)


class ConvDecoder(nn.Module):
    """(B, latent) -> logits (B, C, H, W): the mirror image of :class:`ConvEncoder`."""

    def __init__(self, latent_dim: int, out_chans: int, img_size: int, widths: tuple[int, ...],
                 act: str = "relu") -> None:
        super().__init__()
        widths = tuple(reversed(widths))
        self.side, self.chans = img_size // 2 ** len(widths), widths[0]
        self.fc = nn.Linear(latent_dim, widths[0] * self.side * self.side)
        layers = [create_act(act)]
        for width_in, width_out in zip(widths, widths[1:] + (out_chans,)):
            layers += [nn.ConvTranspose2d(width_in, width_out, 4, stride=2, padding=1),
                       create_act(act)]
        self.deconvs = nn.Sequential(*layers[:-1])  # logits out: no activation after the last

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        x = self.fc(z).unflatten(1, (self.chans, self.side, self.side))  # (B, D) -> (B, C', h, w)
        return self.deconvs(x)


def _check_size(img_size: int, widths: tuple[int, ...]) -> None:
    if img_size % 2 ** len(widths):
        raise ValueError(f"img_size={img_size} must be divisible by 2**len(widths)="
                         f"{2 ** len(widths)} (each width halves the resolution)")


class Autoencoder(nn.Module):
    """Deterministic conv autoencoder: x -> z (latent_dim) -> reconstruction."""

    family, paper = "autoencoder", PAPER_AE

    def __init__(self, in_chans: int = 1, img_size: int = 28, latent_dim: int = 32,
                 widths: tuple[int, ...] = (32, 64), act: str = "relu") -> None:
        super().__init__()
        widths = tuple(widths)
        _check_size(img_size, widths)
        self.latent_dim = latent_dim
        self.encoder = ConvEncoder(in_chans, img_size, widths, self._code_dim(latent_dim), act)
        self.decoder = ConvDecoder(latent_dim, in_chans, img_size, widths, act)
        self.default_cfg = DefaultCfg(input_size=(in_chans, img_size, img_size), num_classes=0,
                                      classifier="", first_conv="encoder.convs.0",
                                      mean=(0.0,) * in_chans, std=(1.0,) * in_chans,
                                      family=self.family, paper=self.paper)

    @staticmethod
    def _code_dim(latent_dim: int) -> int:
        return latent_dim

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        return self.encoder(x)

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """Latent (B, latent_dim) -> logits (B, C, H, W); ``sigmoid`` gives pixels in [0, 1]."""
        return self.decoder(z)

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        z = self.encode(x)
        logits = self.decode(z)
        return {"recon": torch.sigmoid(logits), "logits": logits, "z": z}


class DenoisingAutoencoder(Autoencoder):
    """Autoencoder trained to undo input corruption; corruption applies in training mode only.

    ``noise="masking"`` zeroes each input value with probability ``mask_prob`` (Vincent et al.'s
    masking noise); ``"gaussian"`` adds N(0, noise_std²). The target stays the clean input.
    """

    family, paper = "autoencoder", PAPER_DAE

    def __init__(self, in_chans: int = 1, img_size: int = 28, latent_dim: int = 32,
                 widths: tuple[int, ...] = (32, 64), act: str = "relu",
                 noise: str = "masking", noise_std: float = 0.3, mask_prob: float = 0.3) -> None:
        if noise not in NOISES:
            raise ValueError(f"unknown noise '{noise}'; choose one of {NOISES}")
        if not 0.0 <= mask_prob < 1.0 or noise_std < 0:
            raise ValueError(f"need 0 <= mask_prob < 1 and noise_std >= 0, "
                             f"got mask_prob={mask_prob}, noise_std={noise_std}")
        super().__init__(in_chans, img_size, latent_dim, widths, act)
        self.noise, self.noise_std, self.mask_prob = noise, noise_std, mask_prob

    def corrupt(self, x: torch.Tensor) -> torch.Tensor:
        if self.noise == "gaussian":
            return x + self.noise_std * torch.randn_like(x)
        return x * (torch.rand_like(x) >= self.mask_prob).to(x.dtype)

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        noisy = self.corrupt(x) if self.training else x
        out = super().forward(noisy)
        out["noisy"] = noisy
        return out


class VAE(Autoencoder):
    """Variational autoencoder: the encoder outputs (mu, logvar) of q(z|x) = N(mu, exp(logvar))."""

    family, paper = "vae", PAPER_VAE

    def __init__(self, in_chans: int = 1, img_size: int = 28, latent_dim: int = 16,
                 widths: tuple[int, ...] = (32, 64), act: str = "relu") -> None:
        super().__init__(in_chans, img_size, latent_dim, widths, act)

    @staticmethod
    def _code_dim(latent_dim: int) -> int:
        return 2 * latent_dim  # mu and logvar

    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:  # type: ignore
        mu, logvar = self.encoder(x).chunk(2, dim=-1)  # (B, 2 latent) -> 2 x (B, latent)
        return mu, logvar

    @staticmethod
    def reparameterize(mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
        """z = mu + sigma * eps, eps ~ N(0, I): a sample differentiable in mu and logvar."""
        return mu + torch.exp(0.5 * logvar) * torch.randn_like(mu)

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        mu, logvar = self.encode(x)
        z = self.reparameterize(mu, logvar) if self.training else mu
        logits = self.decode(z)
        return {"recon": torch.sigmoid(logits), "logits": logits, "mu": mu, "logvar": logvar,
                "z": z}

    @torch.no_grad()
    def sample(self, num_samples: int) -> torch.Tensor:
        """Images (N, C, H, W) in [0, 1] decoded from the prior z ~ N(0, I)."""
        z = torch.randn(num_samples, self.latent_dim, device=self.decoder.fc.weight.device)
        return torch.sigmoid(self.decode(z))


def gaussian_kl(mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """KL(N(mu, exp(logvar)) || N(0, I)) per sample, (B, D) -> (B,) (Kingma & Welling, App. B)."""
    return 0.5 * (logvar.exp() + mu.pow(2) - 1.0 - logvar).sum(-1)


def elbo_loss(x: torch.Tensor, recon: torch.Tensor, mu: torch.Tensor, logvar: torch.Tensor,
              likelihood: str = "bernoulli", beta: float = 1.0) -> dict[str, torch.Tensor]:
    """Negative ELBO averaged over the batch: recon NLL (summed over pixels) + beta * KL.

    ``likelihood="bernoulli"``: ``recon`` are pixel probabilities and x in [0, 1] (BCE);
    ``"gaussian"``: ``recon`` is the mean of N(recon, I), NLL = 0.5 * squared error (dropping
    the constant). ``beta != 1`` gives the beta-VAE objective (Higgins et al. 2017).
    Returns ``{"loss", "recon_loss", "kl"}``, each a scalar per-sample mean.
    """
    if likelihood not in LIKELIHOODS:
        raise ValueError(f"unknown likelihood '{likelihood}'; choose one of {LIKELIHOODS}")
    if recon.shape != x.shape:
        raise ValueError(f"recon shape {tuple(recon.shape)} differs from x {tuple(x.shape)}")
    if likelihood == "bernoulli":
        nll = F.binary_cross_entropy(recon, x, reduction="none")
    else:
        nll = 0.5 * (recon - x).pow(2)
    recon_loss = nll.flatten(1).sum(1).mean()
    kl = gaussian_kl(mu, logvar).mean()
    return {"loss": recon_loss + beta * kl, "recon_loss": recon_loss, "kl": kl}


# --------------------------------------------------------------------------- DCGAN
def dcgan_stages(img_size: int) -> tuple[int, int]:
    """(number of stride-2 stages, starting side): halve while even and above 4.

    32 -> (3, 4): 4 -> 8 -> 16 -> 32; 28 -> (2, 7): 7 -> 14 -> 28; 64 -> (4, 4).
    """
    stages, side = 0, img_size
    while side % 2 == 0 and side > 4:
        stages, side = stages + 1, side // 2
    if stages == 0:
        raise ValueError(f"img_size={img_size} cannot be built from stride-2 stages; "
                         f"use e.g. 28, 32 or 64")
    return stages, side


def dcgan_init_(module: nn.Module) -> None:
    """All conv weights N(0, 0.02) (Radford et al. §4); BN scale N(1, 0.02), shift 0."""
    if isinstance(module, (nn.Conv2d, nn.ConvTranspose2d)):
        nn.init.normal_(module.weight, 0.0, 0.02)
    elif isinstance(module, nn.BatchNorm2d):
        nn.init.normal_(module.weight, 1.0, 0.02)
        nn.init.zeros_(module.bias)


class DCGANGenerator(nn.Module):
    """z (B, latent_dim) -> images (B, C, H, W) in [-1, 1].

    A projection to (ngf * 2^(n-1), s, s) then n fractionally-strided convs doubling the side;
    BN + ReLU everywhere except the tanh output layer (no BN there, §3).
    """

    def __init__(self, in_chans: int = 1, img_size: int = 28, latent_dim: int = 100,
                 ngf: int = 64) -> None:
        super().__init__()
        stages, side = dcgan_stages(img_size)
        self.latent_dim = latent_dim
        widths = [ngf * 2 ** (stages - 1 - i) for i in range(stages)]  # e.g. 256, 128, 64
        layers: list[nn.Module] = [  # project z: (B, latent, 1, 1) -> (B, C0, s, s)
            nn.ConvTranspose2d(latent_dim, widths[0], side, 1, 0, bias=False),
            nn.BatchNorm2d(widths[0]), nn.ReLU(inplace=True)]
        for width_in, width_out in zip(widths, widths[1:]):
            layers += [nn.ConvTranspose2d(width_in, width_out, 4, 2, 1, bias=False),
                       nn.BatchNorm2d(width_out), nn.ReLU(inplace=True)]
        layers += [nn.ConvTranspose2d(widths[-1], in_chans, 4, 2, 1, bias=False), nn.Tanh()]
        self.net = nn.Sequential(*layers)
        self.apply(dcgan_init_)
        self.default_cfg = DefaultCfg(input_size=(latent_dim,), num_classes=0,
                                      classifier="", first_conv="net.0",
                                      mean=(0.5,) * in_chans, std=(0.5,) * in_chans,
                                      family="dcgan", paper=PAPER_DCGAN)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        if z.ndim == 2:
            z = z[:, :, None, None]  # (B, latent) -> (B, latent, 1, 1)
        if z.ndim != 4 or z.shape[1:] != (self.latent_dim, 1, 1):
            raise ValueError(f"expected z of shape (B, {self.latent_dim}), got {tuple(z.shape)}")
        return self.net(z)


class DCGANDiscriminator(nn.Module):
    """Images (B, C, H, W) in [-1, 1] -> real/fake logits (B,).

    n strided 4x4 convs with LeakyReLU(0.2), BN on all but the input layer (§3), then a conv
    covering the remaining s x s map gives one logit.
    """

    def __init__(self, in_chans: int = 1, img_size: int = 28, ndf: int = 64) -> None:
        super().__init__()
        stages, side = dcgan_stages(img_size)
        self.in_chans, self.img_size = in_chans, img_size
        widths = [ndf * 2 ** i for i in range(stages)]  # e.g. 64, 128, 256
        layers: list[nn.Module] = [nn.Conv2d(in_chans, widths[0], 4, 2, 1, bias=False),
                                   nn.LeakyReLU(0.2, inplace=True)]
        for width_in, width_out in zip(widths, widths[1:]):
            layers += [nn.Conv2d(width_in, width_out, 4, 2, 1, bias=False),
                       nn.BatchNorm2d(width_out), nn.LeakyReLU(0.2, inplace=True)]
        self.features = nn.Sequential(*layers)
        # one conv over the whole remaining map: (B, C', s, s) -> (B, 1, 1, 1)
        self.head = nn.Conv2d(widths[-1], 1, side, 1, 0, bias=False)
        self.apply(dcgan_init_)
        self.default_cfg = DefaultCfg(input_size=(in_chans, img_size, img_size), num_classes=1,
                                      classifier="head", first_conv="features.0",
                                      mean=(0.5,) * in_chans, std=(0.5,) * in_chans,
                                      family="dcgan", paper=PAPER_DCGAN)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.ndim != 4 or x.shape[1:] != (self.in_chans, self.img_size, self.img_size):
            raise ValueError(f"expected images (B, {self.in_chans}, {self.img_size}, "
                             f"{self.img_size}), got {tuple(x.shape)}")
        return self.head(self.features(x)).flatten()  # (B, 1, 1, 1) -> (B,)


@register_model("autoencoder", family="autoencoder", paper=PAPER_AE, task="generative",
                model_cls=Autoencoder)
def autoencoder(**kwargs) -> Autoencoder:
    """Conv autoencoder for 1x28x28 (``in_chans=3, img_size=32`` for CIFAR), 32-d code."""
    return Autoencoder(**kwargs)


@register_model("denoising_autoencoder", family="autoencoder", paper=PAPER_DAE,
                task="generative", model_cls=DenoisingAutoencoder)
def denoising_autoencoder(**kwargs) -> DenoisingAutoencoder:
    """The conv autoencoder with masking noise (p=0.3) on its input during training."""
    return DenoisingAutoencoder(**kwargs)


@register_model("vae", family="vae", paper=PAPER_VAE, task="generative", model_cls=VAE)
def vae(**kwargs) -> VAE:
    """Conv VAE with a 16-d Gaussian latent; train with ``elbo_loss``."""
    return VAE(**kwargs)


@register_model("dcgan_generator", family="dcgan", paper=PAPER_DCGAN, task="generative",
                model_cls=DCGANGenerator)
def dcgan_generator(**kwargs) -> DCGANGenerator:
    """100-d z -> 1x28x28 (``in_chans=3, img_size=32`` for 3x32x32), ngf=64."""
    return DCGANGenerator(**kwargs)


@register_model("dcgan_discriminator", family="dcgan", paper=PAPER_DCGAN, task="generative",
                model_cls=DCGANDiscriminator)
def dcgan_discriminator(**kwargs) -> DCGANDiscriminator:
    """1x28x28 (or ``in_chans=3, img_size=32``) -> one real/fake logit, ndf=64."""
    return DCGANDiscriminator(**kwargs)
