"""Attention maps per layer and head, and attention rollout, for ViT and Transformer models.

Every attention layer in archlab is :class:`archlab.layers.attention.MultiHeadAttention`, which
keeps its per-head weights in ``last_attn`` when called with ``need_weights=True``. Models call
it without weights (cheaper); :func:`recording_attention` turns them on for one analysis pass
with forward hooks (a pre-hook forces ``need_weights=True``, a post-hook collects
``last_attn``), so no model needs analysis-specific code::

    maps = attention_maps(model, x)          # {"encoder.layers.encoder_layer_0.self_attention":
                                             #   (B, heads, Lq, Lk), ...} in call order
    joint = attention_rollout(list(maps.values()))        # (B, L, L)
    heat = rollout_maps(model, x)            # ViT: (B, H, W) in [0, 1], class token -> patches

Attention rollout (Abnar & Zuidema, Quantifying Attention Flow in Transformers, ACL 2020, §3):
average the heads, account for the residual connection as ``Â = 0.5 W + 0.5 I``, renormalise
rows, and multiply through the layers, ``Ã_l = Â_l Ã_{l-1}``; row i of the product says how much
each input token flows into token i at the top.

Token layout of image transformers: the patch tokens of a (gh, gw) grid, row-major, follow
``L - gh·gw`` prefix tokens (ViT's class token); the grid comes from the model's patch embedding.
"""

from __future__ import annotations

from collections import OrderedDict
from contextlib import contextmanager
from typing import Iterator, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from archlab.analysis.attribution import check_images, evaluation_mode, normalize_maps
from archlab.layers.attention import MultiHeadAttention

HEAD_FUSIONS = ("mean", "max", "min")
NEED_WEIGHTS_POSITION = 6  # MultiHeadAttention.forward(query, key, value, attn_mask, attn_bias,
#                            key_padding_mask, need_weights)


def attention_modules(model: nn.Module) -> list[tuple[str, MultiHeadAttention]]:
    return [(name, m) for name, m in model.named_modules() if isinstance(m, MultiHeadAttention)]


def has_attention(model: nn.Module) -> bool:
    return bool(attention_modules(model))


@contextmanager
def recording_attention(model: nn.Module) -> Iterator[OrderedDict[str, torch.Tensor]]:
    """Collect every attention call's per-head weights (B, heads, Lq, Lk) while inside.

    The dict fills in call order as the model runs; a module called twice keeps the last call.
    """
    modules = attention_modules(model)
    if not modules:
        raise ValueError(f"{type(model).__name__} has no MultiHeadAttention layers; attention "
                         f"maps apply to ViT and Transformer models")
    recorded: OrderedDict[str, torch.Tensor] = OrderedDict()
    handles = []

    def force_weights(module, args, kwargs):
        if len(args) > NEED_WEIGHTS_POSITION:
            args = (*args[:NEED_WEIGHTS_POSITION], True, *args[NEED_WEIGHTS_POSITION + 1:])
        else:
            kwargs = {**kwargs, "need_weights": True}
        return args, kwargs

    for name, module in modules:
        def collect(module, args, output, name=name):
            recorded.pop(name, None)  # re-insert: order follows the latest call
            recorded[name] = module.last_attn
        handles.append(module.register_forward_pre_hook(force_weights, with_kwargs=True))
        handles.append(module.register_forward_hook(collect))
    try:
        yield recorded
    finally:
        for handle in handles:
            handle.remove()


def attention_maps(model: nn.Module, *inputs: torch.Tensor) -> OrderedDict[str, torch.Tensor]:
    """Run ``model(*inputs)`` once (eval mode, no grad) and return each attention layer's
    weights (B, heads, Lq, Lk), keyed by module name, in call order."""
    with evaluation_mode(model), torch.no_grad(), recording_attention(model) as recorded:
        model(*inputs)
    return recorded


def self_attention_maps(maps: dict[str, torch.Tensor]) -> list[torch.Tensor]:
    """The square (Lq == Lk) maps in order: the layers a rollout multiplies through (a
    seq2seq model's cross-attention and decoder layers act on another sequence)."""
    square = [a for a in maps.values() if a.shape[-1] == a.shape[-2]]
    if not square:
        raise ValueError("no self-attention maps (Lq == Lk) to roll out")
    length = square[0].shape[-1]
    return [a for a in square if a.shape[-1] == length]


def attention_rollout(attentions: Sequence[torch.Tensor], head_fusion: str = "mean",
                      residual: bool = True) -> torch.Tensor:
    """Rollout (B, L, L) of per-layer attention (B, heads, L, L), first layer first.

    ``head_fusion``: how heads combine ("mean" as in the paper; "max"/"min" are common
    variants). ``residual``: add the identity for the skip connection before renormalising.
    """
    if head_fusion not in HEAD_FUSIONS:
        raise ValueError(f"unknown head_fusion '{head_fusion}'; choose one of {HEAD_FUSIONS}")
    if not attentions:
        raise ValueError("attention_rollout needs at least one layer's attention")
    rollout = None
    for i, attn in enumerate(attentions):
        if attn.ndim != 4 or attn.shape[-1] != attn.shape[-2]:
            raise ValueError(f"layer {i}: expected self-attention (B, heads, L, L), got "
                             f"{tuple(attn.shape)}")
        attn = attn.double()
        fused = (attn.mean(1) if head_fusion == "mean" else
                 attn.amax(1) if head_fusion == "max" else attn.amin(1))  # (B, L, L)
        if residual:
            fused = fused + torch.eye(fused.shape[-1], dtype=fused.dtype, device=fused.device)
        fused = fused / fused.sum(-1, keepdim=True)
        rollout = fused if rollout is None else fused @ rollout
    return rollout.to(attentions[0].dtype)


def patch_grid(model: nn.Module) -> tuple[int, int] | None:
    """(gh, gw) of the model's patch embedding (any submodule with ``grid_size``), else None."""
    for module in model.modules():
        grid = getattr(module, "grid_size", None)
        if isinstance(grid, tuple) and len(grid) == 2:
            return int(grid[0]), int(grid[1])
    return None


def tokens_to_map(tokens: torch.Tensor, grid: tuple[int, int]) -> torch.Tensor:
    """Patch tokens as a feature map: (B, L, D) -> (B, D, gh, gw), prefix tokens dropped."""
    gh, gw = grid
    prefix = tokens.shape[1] - gh * gw
    if tokens.ndim != 3 or prefix < 0:
        raise ValueError(f"tokens of shape {tuple(tokens.shape)} do not hold a {gh}x{gw} patch "
                         f"grid (expected (B, L, D) with L >= {gh * gw})")
    return tokens[:, prefix:].transpose(1, 2).unflatten(2, (gh, gw))


def query_to_patches(attn: torch.Tensor, grid: tuple[int, int], query: int = 0) -> torch.Tensor:
    """What token ``query`` (default: the class token) attends to, on the patch grid:
    (..., L, L) -> (..., gh, gw)."""
    gh, gw = grid
    prefix = attn.shape[-1] - gh * gw
    if prefix < 0:
        raise ValueError(f"attention over {attn.shape[-1]} tokens cannot hold a {gh}x{gw} grid")
    return attn[..., query, prefix:].unflatten(-1, (gh, gw))


def upsample_maps(maps: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """(B, h, w) -> (B, H, W), bilinear (align_corners=False, as Grad-CAM's reference code)."""
    return F.interpolate(maps[:, None].float(), size=size, mode="bilinear",
                         align_corners=False)[:, 0]


def rollout_maps(model: nn.Module, x: torch.Tensor, head_fusion: str = "mean") -> torch.Tensor:
    """Attention rollout of an image transformer as (B, H, W) heat maps in [0, 1]: how much
    each patch flows into the class token through all layers, upsampled to the image."""
    check_images(x)
    grid = patch_grid(model)
    if grid is None:
        raise ValueError(f"{type(model).__name__} has no patch embedding; rollout maps need an "
                         f"image transformer (ViT)")
    rollout = attention_rollout(self_attention_maps(attention_maps(model, x)), head_fusion)
    return normalize_maps(upsample_maps(query_to_patches(rollout, grid), tuple(x.shape[-2:])))
