"""Penultimate-layer embeddings projected to 2-D with PCA and t-SNE, coloured by class.

The embedding is what the classifier sees: ``forward_head(forward_features(x), pre_logits=True)``
(pooled features before the last linear layer), so classes a model separates well appear as
separate clusters::

    feats, labels = extract_features(model, loader, max_samples=2000)
    plot_embedding(pca(feats), labels, "pca.png", class_names=bundle.classes, title="PCA")
    plot_embedding(tsne(feats, seed=0), labels, "tsne.png", class_names=bundle.classes)

PCA (linear, Pearson 1901) keeps global distances; t-SNE (van der Maaten & Hinton, JMLR 2008)
keeps neighbourhoods, so its cluster sizes and gaps are not to be read as distances.
"""

from __future__ import annotations

from pathlib import Path
from typing import Iterable, Mapping, Sequence

import numpy as np
import torch
from torch import nn

from archlab.analysis.attribution import evaluation_mode
from archlab.analysis.attribution_plots import new_figure, save_figure

METHODS = ("pca", "tsne")


def embed(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """Pre-logit features (B, D). Sequence classifiers that pool over padding get their mask."""
    features = model.forward_features(x)
    if hasattr(model, "padding_mask"):
        return model.forward_head(features, pre_logits=True, padding_mask=model.padding_mask(x))
    return model.forward_head(features, pre_logits=True)


def extract_features(model: nn.Module, batches: Iterable[Mapping[str, torch.Tensor]],
                     max_samples: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(features (N, D) float32, labels (N,) int64) over ``{"x", "y"}`` batches, eval mode."""
    if not hasattr(model, "forward_features") or not hasattr(model, "forward_head"):
        raise TypeError(f"{type(model).__name__} does not follow the model contract "
                        f"(forward_features / forward_head)")
    feats, labels, seen = [], [], 0
    with evaluation_mode(model), torch.no_grad():
        for batch in batches:
            x, y = batch["x"], batch["y"]
            if max_samples is not None and seen >= max_samples:
                break
            f = embed(model, x).flatten(1)
            take = f.shape[0] if max_samples is None else min(f.shape[0], max_samples - seen)
            feats.append(f[:take].float().cpu())
            labels.append(y[:take].cpu())
            seen += take
    if not feats:
        raise ValueError("no batches to extract features from")
    return torch.cat(feats).numpy(), torch.cat(labels).long().numpy()


def _check_features(features: np.ndarray, n_components: int) -> np.ndarray:
    features = np.asarray(features, dtype=np.float64)
    if features.ndim != 2:
        raise ValueError(f"features must be (N, D), got shape {features.shape}")
    if not 1 <= n_components <= min(features.shape):
        raise ValueError(f"n_components={n_components} must be in [1, min(N, D)="
                         f"{min(features.shape)}]")
    return features


def pca(features: np.ndarray, n_components: int = 2) -> np.ndarray:
    """Principal-component scores (N, n_components): centred data on the top components."""
    from sklearn.decomposition import PCA

    features = _check_features(features, n_components)
    return PCA(n_components=n_components, svd_solver="full").fit_transform(features)


def tsne(features: np.ndarray, n_components: int = 2, perplexity: float = 30.0,
         seed: int = 0) -> np.ndarray:
    """t-SNE coordinates (N, n_components); PCA initialisation (stable across runs).

    The perplexity (effective number of neighbours) is capped at (N - 1) / 3, the largest
    sklearn accepts with its 3·perplexity neighbour search, so small sets still work.
    """
    from sklearn.manifold import TSNE

    features = _check_features(features, n_components)
    if features.shape[0] < 4:
        raise ValueError(f"t-SNE needs at least 4 points, got {features.shape[0]}")
    perplexity = min(perplexity, (features.shape[0] - 1) / 3)
    return TSNE(n_components=n_components, perplexity=perplexity, init="pca",
                random_state=seed).fit_transform(features)


def project(features: np.ndarray, method: str = "pca", seed: int = 0) -> np.ndarray:
    """2-D projection by name: "pca" or "tsne"."""
    if method not in METHODS:
        raise ValueError(f"unknown projection '{method}'; choose one of {METHODS}")
    return pca(features) if method == "pca" else tsne(features, seed=seed)


def plot_embedding(points: np.ndarray, labels: np.ndarray, path: str | Path, *,
                   class_names: Sequence[str] | None = None, title: str = "",
                   axis_names: tuple[str, str] = ("component 1", "component 2")) -> Path:
    """Scatter of (N, 2) points, one colour per class, legend with class names."""
    points, labels = np.asarray(points), np.asarray(labels)
    if points.ndim != 2 or points.shape[1] != 2 or labels.shape != (points.shape[0],):
        raise ValueError(f"need points (N, 2) and labels (N,), got {points.shape} and "
                         f"{labels.shape}")
    fig = new_figure(7.5, 6.0)
    ax = fig.add_subplot()
    classes = np.unique(labels)
    import matplotlib

    cmap = matplotlib.colormaps["tab10" if len(classes) <= 10 else "tab20"]
    for i, c in enumerate(classes):
        mask = labels == c
        name = class_names[int(c)] if class_names is not None else str(int(c))
        ax.scatter(points[mask, 0], points[mask, 1], s=10, alpha=0.75,
                   color=cmap(i % cmap.N), label=f"{name} ({mask.sum()})")
    ax.set_xlabel(axis_names[0])
    ax.set_ylabel(axis_names[1])
    ax.set_title(title or f"embedding of {len(points)} examples")
    if len(classes) <= 30:
        ax.legend(title="class (count)", fontsize=7, markerscale=1.5, loc="center left",
                  bbox_to_anchor=(1.01, 0.5))
    ax.grid(True, alpha=0.3)
    fig.tight_layout()
    return save_figure(fig, path)
