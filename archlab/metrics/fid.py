"""Fréchet distance between Gaussian fits of two feature sets (FID, Heusel et al. 2017).

    d^2 = ||mu_r - mu_g||^2 + Tr(S_r + S_g - 2 (S_r S_g)^{1/2})

The original FID uses Inception-v3 pool features; here the features come from any archlab model
(its pre-logits embedding ``model.forward_head(model.forward_features(x), pre_logits=True)``) or
are passed in directly, so scores are comparable only between runs using the same extractor.

Usage::

    fid = build_metric("fid", model=classifier)          # or num_features=D and features
    for batch in loader:
        fid.update(batch["x"], real=True)
    fid.update(generator.sample(1000), real=False)
    fid.compute()["fid"]

State per side: n, sum x (D,), sum x x^T (D, D), float64 running sums, so it accumulates over
batches and ranks. The covariance is the unbiased one (n - 1), as ``numpy.cov`` / pytorch-fid.
Trace of the square root: (S_r S_g)^{1/2} is similar to the symmetric PSD matrix
M = S_r^{1/2} S_g S_r^{1/2}, so Tr (S_r S_g)^{1/2} = sum sqrt(eig(M)). Using two symmetric
eigendecompositions in float64 (negative round-off eigenvalues clamped to 0) avoids the complex
parts and the ill-conditioning ``scipy.linalg.sqrtm`` meets on singular covariances (n <= D).
"""

from __future__ import annotations

from typing import Callable, Optional

import torch
from torch import nn

from archlab.metrics.base import METRICS, SummedStateMetric


def _psd_sqrt(matrix: torch.Tensor) -> torch.Tensor:
    values, vectors = torch.linalg.eigh(matrix)
    return (vectors * values.clamp_min(0).sqrt()) @ vectors.T


def frechet_distance(mu1: torch.Tensor, sigma1: torch.Tensor, mu2: torch.Tensor,
                     sigma2: torch.Tensor) -> float:
    """Squared Fréchet distance between N(mu1, sigma1) and N(mu2, sigma2), in float64."""
    mu1, mu2, sigma1, sigma2 = (t.double() for t in (mu1, mu2, sigma1, sigma2))
    root1 = _psd_sqrt((sigma1 + sigma1.T) / 2)
    middle = root1 @ sigma2 @ root1
    eig = torch.linalg.eigvalsh((middle + middle.T) / 2).clamp_min(0)
    trace_sqrt = eig.sqrt().sum()
    dist = (mu1 - mu2).square().sum() + sigma1.trace() + sigma2.trace() - 2 * trace_sqrt
    return dist.item()


def model_features(model: nn.Module) -> Callable[[torch.Tensor], torch.Tensor]:
    """The pre-logits embedding of an archlab classifier: (B, ...) -> (B, D)."""
    return lambda x: model.forward_head(model.forward_features(x), pre_logits=True)


@METRICS.register("fid", inputs="features")
class FrechetDistance(SummedStateMetric):
    """``{"fid": d^2}``. ``update(x, real)``: ``x`` are (B, D) features, or model inputs when
    built with ``model`` (then features are extracted under ``no_grad`` in the model's current
    mode; call ``model.eval()`` first). ``real`` says which distribution the batch belongs to.

    State: ``count`` (2,), ``feature_sum`` (2, D) and ``outer_sum`` (2, D, D), all float64;
    index 0 real, 1 generated.
    """

    def __init__(self, num_features: Optional[int] = None,
                 model: Optional[nn.Module] = None) -> None:
        super().__init__()
        if num_features is None:
            num_features = getattr(model, "num_features", None)
        if num_features is None:
            raise ValueError("fid needs num_features (the feature width D) or an archlab model "
                             "with a num_features attribute")
        self.num_features = int(num_features)
        self.extract = model_features(model) if model is not None else None
        d = self.num_features
        self.add_state("count", torch.zeros(2, dtype=torch.float64))
        self.add_state("feature_sum", torch.zeros(2, d, dtype=torch.float64))
        self.add_state("outer_sum", torch.zeros(2, d, d, dtype=torch.float64))

    def update(self, x: torch.Tensor, real: bool) -> None:
        if self.extract is not None:
            with torch.no_grad():
                x = self.extract(x)
        if x.ndim != 2 or x.shape[1] != self.num_features:
            raise ValueError(f"fid expects features of shape (B, {self.num_features}), "
                             f"got {tuple(x.shape)}")
        self._follow(x.device)
        side = 0 if real else 1
        feats = x.detach().double()
        self.count[side] += feats.shape[0]
        self.feature_sum[side] += feats.sum(0)
        self.outer_sum[side] += feats.T @ feats  # (D, B) @ (B, D) -> (D, D)

    def gaussian(self, real: bool) -> tuple[torch.Tensor, torch.Tensor]:
        """Mean (D,) and unbiased covariance (D, D) of one side."""
        side = 0 if real else 1
        n = self.count[side]
        if n < 2:
            raise ValueError(f"fid needs at least 2 {'real' if real else 'generated'} samples, "
                             f"got {int(n)}")
        mu = self.feature_sum[side] / n
        cov = (self.outer_sum[side] - n * torch.outer(mu, mu)) / (n - 1)
        return mu, cov

    def compute(self) -> dict[str, float]:
        return {"fid": frechet_distance(*self.gaussian(True), *self.gaussian(False))}
