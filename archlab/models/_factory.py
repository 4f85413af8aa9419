"""create_model / list_models / model_info over the model registry."""

from __future__ import annotations

import inspect
from dataclasses import dataclass
from typing import Any, Callable

import torch
from torch import nn

from archlab.registry import Registry

MODELS: Registry[Callable[..., nn.Module]] = Registry("model")


def register_model(name: str | None = None, *, family: str, paper: str = "", **meta: Any):
    """Register a builder ``fn(num_classes=..., in_chans=..., **kw) -> nn.Module``."""
    return MODELS.register(name, family=family, paper=paper, **meta)


def list_models(pattern: str = "*", family: str | None = None) -> list[str]:
    names = MODELS.list(pattern)
    if family is not None:
        names = [n for n in names if MODELS.entry(n).meta.get("family") == family]
    return names


def create_model(name: str, num_classes: int | None = None, in_chans: int | None = None,
                 **overrides: Any) -> nn.Module:
    """Build a registered model; ``None`` arguments keep the variant's defaults.

    Unknown keyword overrides fail with the list of valid ones instead of being ignored.
    """
    builder = MODELS.get(name)
    kwargs = dict(overrides)
    if num_classes is not None:
        kwargs["num_classes"] = num_classes
    if in_chans is not None:
        kwargs["in_chans"] = in_chans
    check_options(name, kwargs)
    return builder(**kwargs)


def check_options(name: str, options: dict[str, Any]) -> None:
    """Raise a TypeError listing the valid options if ``options`` has a key the builder lacks."""
    builder = MODELS.get(name)
    target = builder
    if any(p.kind is p.VAR_KEYWORD for p in inspect.signature(builder).parameters.values()):
        # Builders forwarding **kwargs to a model class: validate against the class signature.
        target = MODELS.entry(name).meta.get("model_cls") or builder
    valid = _accepted_kwargs(target)
    if valid is not None:
        unknown = sorted(set(options) - valid)
        if unknown:
            raise TypeError(f"model '{name}' got unknown option(s) {unknown}; "
                            f"valid options: {sorted(valid)}")


def _accepted_kwargs(fn: Callable) -> set[str] | None:
    params = inspect.signature(fn).parameters
    if any(p.kind is p.VAR_KEYWORD for p in params.values()):
        return None
    return {n for n, p in params.items() if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)
            and n != "self"}


@dataclass(frozen=True)
class ModelInfo:
    name: str
    family: str
    paper: str
    params: int
    flops: int  # forward FLOPs for one image at input_size (2 per multiply-accumulate)
    input_size: tuple[int, ...]

    def as_dict(self) -> dict:
        return self.__dict__.copy()


def example_inputs(model: nn.Module, input_size: tuple[int, ...]) -> tuple:
    """Arguments for one forward pass at batch size 1: the model's own ``example_inputs`` when it
    has one (token ids, (src, tgt) pairs), else a zero image of ``input_size``."""
    if hasattr(model, "example_inputs"):
        inputs = model.example_inputs(1)
        return inputs if isinstance(inputs, tuple) else (inputs,)
    device = next(iter(model.parameters()), torch.zeros(())).device
    return (torch.zeros(1, *input_size, device=device),)


def count_flops(model: nn.Module, input_size: tuple[int, ...]) -> int:
    """FLOPs of one forward pass at batch size 1, as torch.utils.flop_counter counts them."""
    from torch.utils.flop_counter import FlopCounterMode

    was_training = model.training
    model.eval()
    try:
        with torch.no_grad(), FlopCounterMode(display=False) as counter:
            model(*example_inputs(model, input_size))
    finally:
        model.train(was_training)
    return int(counter.get_total_flops())


def _meta_flops(model: nn.Module, input_size: tuple[int, ...]) -> int:
    with torch.device("meta"):
        return count_flops(model, input_size)


def model_info(name: str, **kwargs: Any) -> ModelInfo:
    """Parameters and FLOPs at the default input size, counted on the ``meta`` device: no
    memory is allocated and no arithmetic is done, so even efficientnet_b7 takes ~1 s."""
    with torch.device("meta"):
        model = create_model(name, **kwargs)
    entry = MODELS.entry(name)
    cfg = getattr(model, "default_cfg", None)
    input_size = tuple(cfg.input_size) if cfg is not None else (1, 28, 28)
    return ModelInfo(
        name=name,
        family=entry.meta.get("family", ""),
        paper=entry.meta.get("paper", ""),
        params=sum(p.numel() for p in model.parameters()),
        flops=_meta_flops(model, input_size),
        input_size=input_size,  # type: ignore[arg-type]
    )
