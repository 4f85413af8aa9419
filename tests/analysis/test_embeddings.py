"""Embedding extraction and projections: PCA against numpy's SVD, t-SNE keeps clusters apart."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from archlab.analysis.embeddings import extract_features, pca, plot_embedding, project, tsne
from archlab.models import create_model


def test_pca_equals_svd_projection():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(40, 6)) @ rng.normal(size=(6, 6)) + 3.0
    centred = x - x.mean(0)
    _, _, vt = np.linalg.svd(centred, full_matrices=False)
    expected = centred @ vt[:3].T
    ours = pca(x, 3)
    assert ours.shape == (40, 3)
    signs = np.sign((ours * expected).sum(0))  # components are defined up to sign
    np.testing.assert_allclose(ours * signs, expected, rtol=1e-8, atol=1e-8)


def test_tsne_keeps_separated_clusters_apart():
    rng = np.random.default_rng(0)
    centres = rng.normal(scale=20.0, size=(3, 10))
    labels = np.repeat(np.arange(3), 15)
    x = centres[labels] + rng.normal(size=(45, 10))
    points = tsne(x, seed=0)
    assert points.shape == (45, 2) and np.isfinite(points).all()
    d = ((points[:, None] - points[None]) ** 2).sum(-1)
    np.fill_diagonal(d, np.inf)
    assert (labels[d.argmin(1)] == labels).all()  # every nearest neighbour shares the class
    np.testing.assert_allclose(project(x, "tsne", seed=0), points)  # seeded: reproducible


def test_extract_features_are_pre_logits():
    torch.manual_seed(0)
    model = create_model("cnn_tiny", num_classes=3, in_chans=1, img_size=8)
    x, y = torch.randn(10, 1, 8, 8), torch.arange(10) % 3
    batches = [{"x": x[:4], "y": y[:4]}, {"x": x[4:8], "y": y[4:8]}, {"x": x[8:], "y": y[8:]}]
    feats, labels = extract_features(model, batches, max_samples=6)
    model.eval()
    with torch.no_grad():
        expected = model.forward_head(model.forward_features(x[:6]), pre_logits=True)
    np.testing.assert_allclose(feats, expected.numpy(), rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(labels, y[:6].numpy())
    assert feats.shape == (6, model.num_features)


def test_plot_embedding_writes_png(tmp_path):
    rng = np.random.default_rng(0)
    path = plot_embedding(rng.normal(size=(30, 2)), np.arange(30) % 3, tmp_path / "e.png",
                          class_names=["cat", "dog", "bird"], title="test")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_bad_inputs():
    with pytest.raises(ValueError, match="n_components=5"):
        pca(np.zeros((4, 3)), 5)
    with pytest.raises(ValueError, match="unknown projection"):
        project(np.zeros((10, 3)), "umap")
    with pytest.raises(ValueError, match="points \\(N, 2\\)"):
        plot_embedding(np.zeros((5, 3)), np.zeros(5), "x.png")
