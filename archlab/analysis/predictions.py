"""What a classifier gets right and wrong: confusion matrix, top-loss examples, sample predictions.

::

    preds = collect_predictions(model, loader, max_samples=10_000)
    plot_confusion_matrix(preds.confusion(), "confusion.png", class_names=bundle.classes)
    plot_top_losses(preds, "top_losses.png", k=16, class_names=bundle.classes,
                    mean=bundle.mean, std=bundle.std)
    plot_sample_predictions(preds, "samples.png", n=16, class_names=bundle.classes, ...)

Top losses (fastai's ``plot_top_losses``) are the examples with the largest cross-entropy: the
confidently wrong predictions, mislabelled data, or ambiguous images.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Mapping, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from archlab.analysis.attribution import evaluation_mode
from archlab.analysis.attribution_plots import (display_images, grid_shape, image_grid,
                                                new_figure, prediction_titles, save_figure,
                                                show_image)
from archlab.metrics.confusion import confusion_counts, normalize_confusion


@dataclass
class Predictions:
    """One pass over a split: inputs (if kept), true labels, softmax outputs, per-example loss."""
    labels: torch.Tensor  # (N,) int64
    probs: torch.Tensor  # (N, K) float32
    losses: torch.Tensor  # (N,) cross-entropy of each example
    images: torch.Tensor | None = None  # (N, C, H, W) as the model saw them

    @property
    def preds(self) -> torch.Tensor:
        return self.probs.argmax(1)

    @property
    def confidence(self) -> torch.Tensor:
        return self.probs.amax(1)

    @property
    def num_classes(self) -> int:
        return self.probs.shape[1]

    def accuracy(self) -> float:
        return (self.preds == self.labels).double().mean().item()

    def confusion(self) -> torch.Tensor:
        """(K, K) int64 counts, rows true classes, columns predictions (sklearn's layout)."""
        return confusion_counts(self.preds, self.labels, self.num_classes)

    def top_losses(self, k: int) -> torch.Tensor:
        """Indices of the ``k`` largest losses, largest first."""
        return self.losses.topk(min(k, len(self.losses))).indices


def collect_predictions(model: nn.Module, batches: Iterable[Mapping[str, torch.Tensor]],
                        max_samples: int | None = None,
                        keep_images: bool = True) -> Predictions:
    """Run ``model`` (eval mode, no grad) over ``{"x", "y"}`` batches; results on the CPU."""
    labels, probs, losses, images, seen = [], [], [], [], 0
    with evaluation_mode(model), torch.no_grad():
        for batch in batches:
            x, y = batch["x"], batch["y"]
            if max_samples is not None and seen >= max_samples:
                break
            take = x.shape[0] if max_samples is None else min(x.shape[0], max_samples - seen)
            x, y = x[:take], y[:take]
            logits = model(x).float()
            if logits.ndim != 2:
                raise ValueError(f"expected classifier logits (B, num_classes), got "
                                 f"{tuple(logits.shape)}")
            labels.append(y.cpu().long())
            probs.append(logits.softmax(1).cpu())
            losses.append(F.cross_entropy(logits, y.long(), reduction="none").cpu())
            if keep_images:
                images.append(x.detach().cpu())
            seen += take
    if not labels:
        raise ValueError("no batches to predict on")
    return Predictions(torch.cat(labels), torch.cat(probs), torch.cat(losses),
                       torch.cat(images) if keep_images else None)


def plot_confusion_matrix(matrix: torch.Tensor | np.ndarray, path: str | Path, *,
                          class_names: Sequence[str] | None = None, title: str = "") -> Path:
    """Counts and row-normalised rates (recall per true class) side by side."""
    counts = torch.as_tensor(matrix)
    if counts.ndim != 2 or counts.shape[0] != counts.shape[1]:
        raise ValueError(f"confusion matrix must be square (K, K), got {tuple(counts.shape)}")
    k = counts.shape[0]
    names = list(class_names) if class_names is not None else [str(i) for i in range(k)]
    if len(names) != k:
        raise ValueError(f"{len(names)} class names for a {k}x{k} confusion matrix")
    rates = normalize_confusion(counts, "true").numpy()
    counts = counts.numpy()
    size = min(max(4.5, 0.4 * k + 2.0), 24.0)
    fig = new_figure(2 * size + 1.0, size)
    annotate = k <= 20
    for i, (data, label, fmt) in enumerate(((counts, "count", "d"),
                                            (rates, "fraction of true class", ".2f"))):
        ax = fig.add_subplot(1, 2, i + 1)
        im = ax.imshow(data, cmap="Blues", vmin=0, vmax=None if i == 0 else 1)
        fig.colorbar(im, ax=ax, fraction=0.046, pad=0.04, label=label)
        ticks = range(k)
        ax.set_xticks(ticks, names, rotation=45 if k > 5 else 0, ha="right" if k > 5 else "center",
                      fontsize=8)
        ax.set_yticks(ticks, names, fontsize=8)
        ax.set_xlabel("predicted class")
        ax.set_ylabel("true class")
        ax.set_title("counts" if i == 0 else "row-normalised (recall on the diagonal)")
        if annotate:
            high = data.max() / 2 if data.max() > 0 else 0.5
            for r in range(k):
                for c in range(k):
                    ax.text(c, r, format(data[r, c], fmt), ha="center", va="center",
                            fontsize=7, color="white" if data[r, c] > high else "black")
    accuracy = np.trace(counts) / max(counts.sum(), 1)
    fig.suptitle(title or f"confusion matrix: {int(counts.sum())} examples, "
                 f"accuracy {accuracy:.4f}")
    fig.tight_layout()
    return save_figure(fig, path)


def plot_examples(predictions: Predictions, index: torch.Tensor, path: str | Path, *,
                  title: str, class_names: Sequence[str] | None = None,
                  mean: Sequence[float] | None = None, std: Sequence[float] | None = None,
                  show_loss: bool = False, max_cols: int = 8) -> Path:
    """A grid of the examples at ``index``: image, true / predicted class, confidence (red
    title when wrong)."""
    if predictions.images is None or predictions.images.ndim != 4:
        raise ValueError("these predictions kept no images (B, C, H, W) to show")
    index = torch.as_tensor(index).long()
    if index.numel() == 0:
        raise ValueError("no examples to plot")
    pics = display_images(predictions.images[index], mean, std)
    titles = prediction_titles(predictions.labels[index], predictions.probs[index], class_names)
    rows, cols = grid_shape(len(index), max_cols)
    fig, axes = image_grid(rows, cols, title_lines=3 if show_loss else 2)
    for ax in axes[len(index):]:
        ax.set_visible(False)
    for ax, (j, i) in zip(axes, enumerate(index.tolist())):
        show_image(ax, pics[j])
        text = titles[j].replace(" / ", "\n")
        if show_loss:
            text += f"\nloss {predictions.losses[i]:.2f}"
        wrong = predictions.preds[i] != predictions.labels[i]
        ax.set_title(text, fontsize=7, color="tab:red" if wrong else "black")
    fig.suptitle(title, fontsize=11)
    return save_figure(fig, path)


def plot_top_losses(predictions: Predictions, path: str | Path, k: int = 16, **kwargs) -> Path:
    """The ``k`` highest-loss examples, largest first."""
    return plot_examples(predictions, predictions.top_losses(k), path, show_loss=True,
                         title=f"top {min(k, len(predictions.losses))} losses "
                               "(true / predicted, confidence)", **kwargs)


def plot_sample_predictions(predictions: Predictions, path: str | Path, n: int = 16,
                            **kwargs) -> Path:
    """The first ``n`` examples with their predictions (the split's order, not cherry-picked)."""
    n = min(n, len(predictions.labels))
    correct = (predictions.preds[:n] == predictions.labels[:n]).sum().item()
    return plot_examples(predictions, torch.arange(n), path,
                         title=f"sample predictions: {correct}/{n} correct "
                               "(true / predicted, confidence)", **kwargs)
