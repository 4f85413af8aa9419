"""Predictions, confusion matrix and top losses against sklearn and direct computation."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from sklearn.metrics import confusion_matrix

from archlab.analysis.predictions import (collect_predictions, plot_confusion_matrix,
                                          plot_sample_predictions, plot_top_losses)
from archlab.models import create_model

PNG = b"\x89PNG\r\n\x1a\n"


@pytest.fixture
def predictions():
    torch.manual_seed(0)
    model = create_model("cnn_tiny", num_classes=4, in_chans=1, img_size=8)
    x, y = torch.randn(30, 1, 8, 8), torch.arange(30) % 4
    batches = [{"x": x[i:i + 8], "y": y[i:i + 8]} for i in range(0, 30, 8)]
    model.eval()
    with torch.no_grad():
        logits = model(x[:26])
    return collect_predictions(model, batches, max_samples=26), logits, y[:26], x[:26]


def test_collected_predictions_match_direct_computation(predictions):
    preds, logits, y, x = predictions
    torch.testing.assert_close(preds.probs, logits.softmax(1))
    torch.testing.assert_close(preds.losses, F.cross_entropy(logits, y, reduction="none"))
    torch.testing.assert_close(preds.images, x)
    assert torch.equal(preds.labels, y)
    assert preds.accuracy() == pytest.approx((logits.argmax(1) == y).double().mean().item())


def test_confusion_matches_sklearn(predictions):
    preds, logits, y, _ = predictions
    expected = confusion_matrix(y.numpy(), logits.argmax(1).numpy(), labels=range(4))
    np.testing.assert_array_equal(preds.confusion().numpy(), expected)


def test_top_losses_are_the_largest_cross_entropies(predictions):
    preds, logits, y, _ = predictions
    ce = F.cross_entropy(logits, y, reduction="none").numpy()
    np.testing.assert_array_equal(preds.top_losses(5).numpy(), np.argsort(-ce)[:5])
    assert len(preds.top_losses(100)) == 26


def test_plots_write_pngs(predictions, tmp_path):
    preds = predictions[0]
    names = ["zero", "one", "two", "three"]
    kw = dict(class_names=names, mean=(0.5,), std=(0.5,))
    for path in (plot_confusion_matrix(preds.confusion(), tmp_path / "c.png", class_names=names),
                 plot_top_losses(preds, tmp_path / "t.png", k=6, **kw),
                 plot_sample_predictions(preds, tmp_path / "s.png", n=5, **kw)):
        assert path.read_bytes()[:8] == PNG


@pytest.mark.parametrize("plot, n", [(plot_top_losses, 16), (plot_sample_predictions, 13)])
def test_grid_titles_stay_clear_of_the_images(predictions, tmp_path, monkeypatch, plot, n):
    """Every title (3 lines with the loss) lies outside every other image and inside the
    figure, measured on the rendered figure (tight_layout let them run into the row above)."""
    import archlab.analysis.predictions as module

    figures = []
    real_save = module.save_figure
    monkeypatch.setattr(module, "save_figure",
                        lambda fig, path: figures.append(fig) or real_save(fig, path))
    preds = predictions[0]
    names = ["T-shirt/top", "Trouser", "Pullover", "Ankle boot"]  # Fashion-MNIST-long names
    kwargs = dict(k=n) if plot is plot_top_losses else dict(n=n)
    plot(preds, tmp_path / "grid.png", class_names=names, **kwargs)
    fig = figures[0]
    renderer = fig.canvas.get_renderer()
    axes = [ax for ax in fig.axes if ax.get_visible()]
    assert len(axes) == n
    page = fig.bbox
    for ax in axes:
        title = ax.title.get_window_extent(renderer)
        assert title.x0 >= page.x0 and title.x1 <= page.x1 and title.y1 <= page.y1
        for other in axes:
            image = other.get_window_extent(renderer)  # the drawn image (equal aspect)
            assert not title.overlaps(image) or other is ax and title.y0 >= image.y1 - 1


def test_bad_inputs(predictions, tmp_path):
    preds = predictions[0]
    with pytest.raises(ValueError, match="square"):
        plot_confusion_matrix(torch.zeros(2, 3), tmp_path / "c.png")
    with pytest.raises(ValueError, match="3 class names for a 4x4"):
        plot_confusion_matrix(preds.confusion(), tmp_path / "c.png", class_names=["a", "b", "c"])
    no_images = collect_predictions(torch.nn.Flatten(), [{"x": torch.randn(2, 3), "y": torch.tensor([0, 1])}],
                                    keep_images=False)
    with pytest.raises(ValueError, match="no images"):
        plot_top_losses(no_images, tmp_path / "t.png")
