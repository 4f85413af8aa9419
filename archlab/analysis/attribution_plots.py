"""PNG figures for attribution and attention: heat maps over images, attention per head.

Figures are drawn on matplotlib's Agg canvas directly (no pyplot state, no display needed)::

    plot_heatmap_grid(x, grad_cam(model, x), "gradcam.png", mean=bundle.mean, std=bundle.std,
                      titles=prediction_titles(labels, probs, bundle.classes), title="Grad-CAM")
    plot_attention_heads(x[0], maps, "attention.png", grid=(4, 4))   # ViT: class token per head
    plot_attention_heads(None, maps, "attention.png")                # text: (L, L) per head

Images come in as the model saw them (normalised); ``mean``/``std`` undo the normalisation.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Sequence

import numpy as np
import torch

HEAT_CMAP = "jet"  # Grad-CAM paper's colour map: red = most evidence


def new_figure(width_in: float, height_in: float):
    """A matplotlib Figure on the Agg canvas (thread-safe, leaves pyplot's backend alone)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width_in, height_in))
    FigureCanvasAgg(fig)
    return fig


def save_figure(fig, path: str | Path, dpi: int = 100) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=dpi)
    return path


def display_images(images: torch.Tensor, mean: Sequence[float] | None = None,
                   std: Sequence[float] | None = None) -> np.ndarray:
    """Normalised (B, C, H, W) -> displayable (B, H, W) grey or (B, H, W, 3) RGB in [0, 1].

    Without mean/std each image is min-max scaled on its own.
    """
    x = images.detach().float().cpu()
    if mean is not None and std is not None:
        x = x * torch.tensor(std)[None, :, None, None] + torch.tensor(mean)[None, :, None, None]
        x = x.clamp(0, 1)
    else:
        flat = x.flatten(1)
        low, high = flat.amin(1)[:, None, None, None], flat.amax(1)[:, None, None, None]
        x = (x - low) / (high - low).clamp_min(1e-12)
    if x.shape[1] == 1:
        return x[:, 0].numpy()
    return x[:, :3].permute(0, 2, 3, 1).numpy()


def prediction_titles(labels: Sequence[int] | torch.Tensor, probs: torch.Tensor,
                      class_names: Sequence[str] | None = None) -> list[str]:
    """'true 3 / pred 5 (0.87)' per example; probs (B, K) softmax outputs."""
    names = (lambda i: class_names[i]) if class_names else str
    conf, pred = probs.max(1)
    return [f"true {names(int(t))} / pred {names(int(p))} ({c:.2f})"
            for t, p, c in zip(torch.as_tensor(labels).tolist(), pred.tolist(), conf.tolist())]


def grid_shape(n: int, max_cols: int = 8) -> tuple[int, int]:
    cols = min(n, max_cols)
    return math.ceil(n / cols), cols


def image_grid(rows: int, cols: int, title_lines: int, image_in: float = 2.0,
               gap_in: float = 0.25, suptitle_in: float = 0.55):
    """A figure and its ``rows x cols`` axes for square images with ``title_lines``-line titles.

    Axes are placed in inches rather than by ``tight_layout``: an equal-aspect image keeps its
    width when tight_layout shrinks the row height, so multi-line titles would run into the row
    above. Returns ``(fig, axes)``, axes in row-major order.
    """
    title_in = 0.14 * title_lines + 0.08  # 7 pt lines
    cell_w, cell_h = image_in + gap_in, image_in + title_in + gap_in / 2
    width, height = cols * cell_w + gap_in, rows * cell_h + suptitle_in
    fig = new_figure(width, height)
    axes = []
    for r in range(rows):
        for c in range(cols):
            left = gap_in + c * cell_w
            bottom = height - suptitle_in - (r + 1) * cell_h + gap_in / 2
            axes.append(fig.add_axes((left / width, bottom / height, image_in / width,
                                      image_in / height)))
    return fig, axes


def show_image(ax, image: np.ndarray) -> None:
    ax.imshow(image, cmap="gray" if image.ndim == 2 else None, vmin=0, vmax=1,
              interpolation="nearest")
    ax.set_xticks([])
    ax.set_yticks([])


def plot_heatmap_grid(images: torch.Tensor, maps: torch.Tensor, path: str | Path, *,
                      titles: Sequence[str] | None = None, title: str = "",
                      mean: Sequence[float] | None = None, std: Sequence[float] | None = None,
                      alpha: float = 0.5, max_cols: int = 8) -> Path:
    """Each image with its (H, W) heat map in [0, 1] overlaid; one colour bar for the grid."""
    if images.ndim != 4 or maps.ndim != 3 or images.shape[0] != maps.shape[0]:
        raise ValueError(f"need images (B, C, H, W) and maps (B, H, W) with the same B, got "
                         f"{tuple(images.shape)} and {tuple(maps.shape)}")
    n = images.shape[0]
    rows, cols = grid_shape(n, max_cols)
    height = 2.5 * rows + 0.6
    fig = new_figure(2.3 * cols + 0.8, height)
    pics, heat = display_images(images, mean, std), maps.detach().float().cpu().numpy()
    mappable = None
    for i in range(rows * cols):
        ax = fig.add_subplot(rows, cols, i + 1)
        if i >= n:
            ax.axis("off")
            continue
        show_image(ax, pics[i])
        mappable = ax.imshow(heat[i], cmap=HEAT_CMAP, alpha=alpha, vmin=0, vmax=1,
                             interpolation="bilinear")
        if titles is not None:
            ax.set_title(titles[i], fontsize=7)
    fig.suptitle(title, fontsize=11)
    fig.tight_layout(rect=(0, 0, 0.92, 1 - 0.45 / height))
    cax = fig.add_axes((0.93, 0.15, 0.015, 0.7))
    fig.colorbar(mappable, cax=cax, label="relative importance")
    return save_figure(fig, path)


def plot_attention_heads(image: torch.Tensor | None, maps: dict[str, torch.Tensor],
                         path: str | Path, *, grid: tuple[int, int] | None = None,
                         title: str = "", query: int = 0, tokens: Sequence[str] | None = None,
                         mean: Sequence[float] | None = None,
                         std: Sequence[float] | None = None) -> Path:
    """One row per attention layer, one column per head, for one example.

    ``maps``: layer name -> (heads, Lq, Lk) weights of that example. With a patch ``grid``
    (ViT) a cell shows what token ``query`` (the class token) attends to on the grid, next to
    the ``image``; without one a cell shows the full (Lq, Lk) matrix, labelled with ``tokens``.
    """
    from archlab.analysis.attention_maps import query_to_patches

    if not maps:
        raise ValueError("no attention maps to plot")
    layers = list(maps.items())
    heads = max(a.shape[0] for _, a in layers)
    offset = 1 if (grid is not None and image is not None) else 0
    cell = 1.8 if grid is not None else 2.6
    fig = new_figure(cell * (heads + offset) + 1.2, cell * len(layers) + 0.8)
    for r, (name, attn) in enumerate(layers):
        attn = attn.detach().float().cpu()
        if offset:
            ax = fig.add_subplot(len(layers), heads + offset, r * (heads + offset) + 1)
            show_image(ax, display_images(image[None], mean, std)[0])
            ax.set_ylabel(_short(name), fontsize=7)
        for h in range(attn.shape[0]):
            ax = fig.add_subplot(len(layers), heads + offset, r * (heads + offset) + offset + h + 1)
            if grid is not None:
                cell_map = query_to_patches(attn[h], grid, query).numpy()
                im = ax.imshow(cell_map, cmap="viridis", interpolation="nearest")
                ax.set_xticks([])
                ax.set_yticks([])
            else:
                im = ax.imshow(attn[h].numpy(), cmap="viridis", vmin=0, interpolation="nearest")
                _label_tokens(ax, tokens, attn.shape[-2], attn.shape[-1])
                ax.set_xlabel("key", fontsize=7)
            fig.colorbar(im, ax=ax, fraction=0.046, pad=0.04).ax.tick_params(labelsize=6)
            if r == 0:
                ax.set_title(f"head {h}", fontsize=9)
            if h == 0 and not offset:
                ax.set_ylabel(f"{_short(name)}\nquery", fontsize=7)
    fig.suptitle(title or ("attention of the class token to each patch, per layer and head"
                           if grid is not None else "attention weights per layer and head"),
                 fontsize=10)
    fig.tight_layout(rect=(0, 0, 1, 0.96))
    return save_figure(fig, path)


def _short(name: str) -> str:
    parts = name.split(".")
    return ".".join(parts[-2:]) if len(parts) > 3 else name


def _label_tokens(ax, tokens: Sequence[str] | None, rows: int, cols: int) -> None:
    if tokens is None or max(rows, cols) > 32:
        ax.tick_params(labelsize=6)
        return
    ax.set_xticks(range(cols), list(tokens)[-cols:], rotation=90, fontsize=6)
    ax.set_yticks(range(rows), list(tokens)[-rows:], fontsize=6)


def plot_rollout(images: torch.Tensor, maps: torch.Tensor, path: str | Path, *,
                 titles: Sequence[str] | None = None, mean: Sequence[float] | None = None,
                 std: Sequence[float] | None = None) -> Path:
    """Attention-rollout heat maps (B, H, W) over their images (Abnar & Zuidema 2020)."""
    return plot_heatmap_grid(images, maps, path, titles=titles, mean=mean, std=std,
                             title="attention rollout: flow from each patch into the class token")
