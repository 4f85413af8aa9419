"""Grad-CAM (Selvaraju et al., ICCV 2017) and Grad-CAM++ (Chattopadhay et al., WACV 2018).

Both weight the channels of a feature map A (B, K, h, w) by the gradient of a class score y_c
and keep the positive part of the weighted sum:

* Grad-CAM, Eqs. 1-2: ``α_k = mean_ij ∂y_c/∂A_kij``, ``map = ReLU(Σ_k α_k A_k)``.
* Grad-CAM++, Eqs. 7, 10 and 19: ``w_k = Σ_ij a_kij ReLU(g_kij)`` with ``g = ∂y_c/∂A`` and
  ``a_kij = g² / (2 g² + Σ_ab A_kab g³)``. The paper differentiates exp(y_c); for a network that
  is piecewise linear in A the higher derivatives are then powers of g times exp(y_c), which
  cancels in ``a`` and scales ``w`` by a per-example constant that the normalisation removes.

Maps are upsampled bilinearly to the input size and min-max scaled to [0, 1] per example::

    maps = grad_cam(model, x)                             # (B, H, W), predicted classes
    maps = grad_cam(model, x, target=labels, layer="stages.1")
    maps = grad_cam_plus_plus(model, x)

Which feature map (``layer``):

* ``None``: the backbone output ``forward_features(x)`` when it is a map (B, C, h, w), as for
  every CNN. When it is a token sequence (B, L, D) (ViT), the head reads only the class token,
  so the final patch tokens receive no gradient; the default is then the input of the last
  attention layer, where every patch token still feeds the class token (the layer the
  pytorch-grad-cam ViT example uses: the last block's first LayerNorm).
  A 1x1 backbone map (a CNN on tiny images: 8x8 digits end at 1x1) has no spatial detail;
  the default then falls back to the last module whose output is larger than 1x1
  (:func:`last_spatial_layer`).
* a module name (``"stages.1"``, ``"encoder.layers.encoder_layer_10"``): that module's output.
  If the next op overwrites it in place (a BatchNorm before ``ReLU(inplace=True)``), the map
  is that op's result, values and gradients alike.

Token outputs (B, L, D) become (B, D, gh, gw) on the model's patch grid, prefix tokens dropped.
"""

from __future__ import annotations

import torch
from torch import nn

from archlab.analysis.attention_maps import (attention_modules, patch_grid, tokens_to_map,
                                             upsample_maps)
from archlab.analysis.attribution import (check_images, class_score, evaluation_mode,
                                          normalize_maps, resolve_targets)

METHODS = ("gradcam", "gradcam++")


def find_module(model: nn.Module, name: str) -> nn.Module:
    """``model.get_submodule(name)`` with an error listing nearby module names."""
    try:
        return model.get_submodule(name)
    except AttributeError:
        names = [n for n, _ in model.named_modules() if n]
        close = [n for n in names if n.startswith(name.rsplit(".", 1)[0])][:12] or names[:12]
        raise ValueError(f"{type(model).__name__} has no module '{name}'; modules include "
                         f"{close}") from None


def last_spatial_layer(model: nn.Module, x: torch.Tensor) -> str:
    """Name of the last module (in the order outputs are produced) whose output is a feature
    map (B, C, h, w) with h·w > 1, found with one hooked forward pass of ``x[:1]``."""
    found: list[str] = []
    handles = [module.register_forward_hook(
        lambda m, args, out, name=name: found.append(name)
        if isinstance(out, torch.Tensor) and out.ndim == 4 and out.shape[-2:].numel() > 1
        else None) for name, module in model.named_modules() if name]
    try:
        with evaluation_mode(model), torch.no_grad():
            model(x[:1])
    finally:
        for handle in handles:
            handle.remove()
    if not found:
        raise ValueError(f"{type(model).__name__} produces no feature map larger than 1x1 for "
                         f"{tuple(x.shape[-2:])} inputs; Grad-CAM has nothing to localise")
    return found[-1]


def target_layer_name(model: nn.Module, x: torch.Tensor, layer: str | None = None) -> str:
    """Which feature map ``layer`` resolves to for inputs like ``x``, in words (for titles)."""
    if layer is not None:
        return layer
    with evaluation_mode(model), torch.no_grad():
        features = model.forward_features(x[:1])
    attention = attention_modules(model)
    if features.ndim == 3 and attention and patch_grid(model) is not None:
        return f"input of {attention[-1][0]}"
    if features.ndim == 4 and features.shape[-2:].numel() == 1:
        return last_spatial_layer(model, x)
    return "forward_features"


def feature_gradients(model: nn.Module, x: torch.Tensor, target: int | torch.Tensor | None = None,
                      layer: str | None = None
                      ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(activations A (B, K, h, w), ∂y_c/∂A (B, K, h, w), targets (B,)) for the chosen layer."""
    check_images(x)
    captured: dict[str, torch.Tensor] = {}
    handles = []
    with evaluation_mode(model), torch.enable_grad():
        # x requires grad so the graph exists even for a frozen (requires_grad=False) model
        x = x.detach().requires_grad_(True)
        try:
            if layer is not None:
                handles.append(find_module(model, layer).register_forward_hook(
                    lambda module, args, output: captured.__setitem__("map", output)))
                logits = model(x)
            else:
                if not hasattr(model, "forward_features"):
                    raise ValueError(f"{type(model).__name__} has no forward_features; name the "
                                     f"feature layer with layer=...")
                attention = attention_modules(model)
                if attention:
                    handles.append(attention[-1][1].register_forward_pre_hook(
                        lambda module, args, kwargs: captured.__setitem__(
                            "tokens", args[0] if args else kwargs["query"]), with_kwargs=True))
                features = model.forward_features(x)
                logits = model.forward_head(features)
                captured["map"] = features if features.ndim == 4 else captured.get("tokens",
                                                                                   features)
        finally:
            for handle in handles:
                handle.remove()
        if "map" not in captured:
            raise ValueError(f"layer '{layer}' was not called in the forward pass")
        raw = captured["map"]
        if layer is None and raw.ndim == 4 and raw.shape[-2:].numel() == 1:
            return feature_gradients(model, x, target, last_spatial_layer(model, x))
        if not isinstance(raw, torch.Tensor):
            raise ValueError(f"layer '{layer}' returns {type(raw).__name__}, not a tensor")
        targets = resolve_targets(logits, target)
        (grad,) = torch.autograd.grad(class_score(logits, targets), raw)
    return _as_map(model, raw.detach(), layer), _as_map(model, grad, layer), targets


def _as_map(model: nn.Module, t: torch.Tensor, layer: str | None) -> torch.Tensor:
    if t.ndim == 4:
        return t
    grid = patch_grid(model)
    if t.ndim == 3 and grid is not None:
        return tokens_to_map(t, grid)  # (B, L, D) -> (B, D, gh, gw)
    where = f"layer '{layer}'" if layer else "forward_features"
    raise ValueError(f"{where} gives {tuple(t.shape)}, not a feature map (B, C, h, w) or the "
                     f"patch tokens (B, L, D) of an image transformer; pick a spatial layer")


def channel_weights(activations: torch.Tensor, gradients: torch.Tensor,
                    method: str = "gradcam") -> torch.Tensor:
    """Per-channel weights (B, K) from A and ∂y_c/∂A (B, K, h, w)."""
    if method == "gradcam":
        return gradients.mean((2, 3))  # global-average-pooled gradients, Eq. 1
    if method == "gradcam++":
        g2 = gradients.pow(2)
        denom = 2 * g2 + activations.sum((2, 3), keepdim=True) * gradients.pow(3)
        alpha = torch.where(denom != 0, g2 / torch.where(denom != 0, denom, 1.0),
                            torch.zeros_like(g2))  # 0/0 where the gradient vanishes
        return (alpha * gradients.clamp_min(0)).sum((2, 3))
    raise ValueError(f"unknown CAM method '{method}'; choose one of {METHODS}")


def class_activation_maps(model: nn.Module, x: torch.Tensor,
                          target: int | torch.Tensor | None = None, layer: str | None = None,
                          method: str = "gradcam") -> torch.Tensor:
    """(B, H, W) maps in [0, 1] at the input resolution; see the module docstring."""
    if method not in METHODS:
        raise ValueError(f"unknown CAM method '{method}'; choose one of {METHODS}")
    activations, gradients, _ = feature_gradients(model, x, target, layer)
    weights = channel_weights(activations, gradients, method)
    cam = torch.relu((weights[:, :, None, None] * activations).sum(1))  # (B, h, w), Eq. 2
    return normalize_maps(upsample_maps(cam, tuple(x.shape[-2:])))


def grad_cam(model: nn.Module, x: torch.Tensor, target: int | torch.Tensor | None = None,
             layer: str | None = None) -> torch.Tensor:
    """Grad-CAM maps (B, H, W) in [0, 1]."""
    return class_activation_maps(model, x, target, layer, "gradcam")


def grad_cam_plus_plus(model: nn.Module, x: torch.Tensor,
                       target: int | torch.Tensor | None = None,
                       layer: str | None = None) -> torch.Tensor:
    """Grad-CAM++ maps (B, H, W) in [0, 1]."""
    return class_activation_maps(model, x, target, layer, "gradcam++")
