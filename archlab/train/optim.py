"""Optimizers by name, parameter groups, and loss-side L1/L2 (elastic-net) penalties.

Parameter groups follow two rules:

* no weight decay on norm scales and biases (ndim < 2): decay on BN/LN scales and biases only
  shrinks them toward zero without regularizing the function (their scale is re-normalized
  away), so the default follows timm / nanoGPT and decays only weights with ndim >= 2;
* per-prefix lr multipliers (``lr_multipliers={"fc": 10.0, "stages.0": 0.1}``), the basis of
  discriminative fine-tuning (Howard & Ruder 2018): each group's lr is ``lr * multiplier``, and
  LR schedules scale every group's lr by the same factor.

Weight decay comes two ways: through the optimizer (``weight_decay``; coupled or decoupled
depending on the optimizer, see :class:`OptimConfig`), or as a penalty added to the loss
(:func:`regularization_penalty`, ``l1`` / ``l2_penalty``).

    opt = build_optimizer(model, OptimConfig(name="lookahead", base="adamw", lr=1e-3))
"""

from __future__ import annotations

import dataclasses
import difflib
from typing import Annotated, Callable, Optional, Sequence

import torch
from pydantic import Field, field_validator
from torch import nn

from archlab.config import config_dataclass, known_name
from archlab.registry import Registry
from archlab.train.optimizers import SAM, Lion, Lookahead

OPTIMIZERS: Registry[Callable[..., torch.optim.Optimizer]] = Registry("optimizer")

Beta = Annotated[float, Field(ge=0.0, lt=1.0)]
ADAM_BETAS = (0.9, 0.999)  # Kingma & Ba 2015
LION_BETAS = (0.9, 0.99)  # Chen et al. 2023, Table 12 default


@config_dataclass
class OptimConfig:
    name: str = "sgd"
    """sgd | adam | adamw | rmsprop | adagrad | adafactor | nadam | radam | lion | sam |
    lookahead."""
    lr: Annotated[float, Field(gt=0.0)] = 0.1
    weight_decay: Annotated[float, Field(ge=0.0)] = 5e-4
    """Given to the optimizer. Coupled (added to the gradient, so Adam-type optimizers rescale
    it) for sgd, adam, rmsprop, adagrad, nadam, radam; decoupled (w -= lr * weight_decay * w,
    Loshchilov & Hutter 2019) for adamw, lion, adafactor."""
    momentum: Annotated[float, Field(ge=0.0, lt=1.0)] = 0.9
    """SGD/RMSprop momentum."""
    nesterov: bool = True
    betas: Optional[tuple[Beta, Beta]] = None
    """(beta1, beta2) for adam, adamw, nadam, radam, lion; None = the paper's default:
    (0.9, 0.999) for the Adam family, (0.9, 0.99) for lion."""
    eps: Optional[Annotated[float, Field(gt=0.0)]] = None
    """Denominator epsilon; None = torch's default for the optimizer (1e-8, adagrad 1e-10,
    adafactor dtype eps)."""
    decay_norm_and_bias: bool = False
    """Apply weight decay (and the l1 / l2_penalty terms) to norm parameters and biases too."""
    lr_multipliers: dict[str, Annotated[float, Field(ge=0.0)]] = dataclasses.field(
        default_factory=dict)
    """Parameter-name prefix -> lr multiplier, e.g. ``{fc: 10.0, stages.0: 0.1}``. A prefix
    matches whole dotted components (``fc`` matches ``fc.weight``, not ``fc2.weight``); the
    longest matching prefix wins; unmatched parameters keep 1.0; 0 freezes a part."""
    base: str = "sgd"
    """sam, lookahead: the wrapped optimizer (any other name), built from these same fields."""
    rho: Annotated[float, Field(gt=0.0)] = 0.05
    """sam: radius of the neighbourhood (Foret et al. 2021 use 0.05; ASAM uses larger, ~0.5-2)."""
    adaptive: bool = False
    """sam: ASAM (Kwon et al. 2021), the radius measured relative to |w| per weight."""
    lookahead_k: Annotated[int, Field(ge=1)] = 5
    """lookahead: fast steps per slow step (Zhang et al. 2019 use 5 or 10)."""
    lookahead_alpha: Annotated[float, Field(gt=0.0, le=1.0)] = 0.5
    """lookahead: slow step size toward the fast weights."""
    l1: Annotated[float, Field(ge=0.0)] = 0.0
    """Loss penalty ``l1 * sum |w|`` over the decayed parameters (see regularization_penalty)."""
    l2_penalty: Annotated[float, Field(ge=0.0)] = 0.0
    """Loss penalty ``l2_penalty / 2 * sum w^2``; its gradient ``l2_penalty * w`` equals SGD's
    coupled weight_decay. With ``l1`` > 0 too: the elastic net (Zou & Hastie 2005)."""

    @field_validator("name")
    @classmethod
    def _registered(cls, name: str) -> str:
        return known_name(OPTIMIZERS, name)

    @field_validator("base")
    @classmethod
    def _plain_base(cls, base: str) -> str:
        known_name(OPTIMIZERS, base)
        if OPTIMIZERS.entry(base).meta.get("wrapper"):
            plain = [n for n in OPTIMIZERS if not OPTIMIZERS.entry(n).meta.get("wrapper")]
            raise ValueError(f"base optimizer '{base}' is itself a wrapper; choose one of "
                             f"{', '.join(plain)}")
        return base

    @field_validator("lr_multipliers")
    @classmethod
    def _non_empty_prefixes(cls, multipliers: dict[str, float]) -> dict[str, float]:
        for prefix in multipliers:
            if not prefix or prefix.startswith(".") or prefix.endswith("."):
                raise ValueError(f"lr_multipliers prefix {prefix!r} must be a dotted parameter "
                                 f"name prefix such as 'fc' or 'stages.0'")
        return multipliers


def _betas(cfg: OptimConfig, default: tuple[float, float]) -> tuple[float, float]:
    return tuple(cfg.betas) if cfg.betas is not None else default


def _eps(cfg: OptimConfig) -> dict:
    return {} if cfg.eps is None else {"eps": cfg.eps}


def _sgd(params, cfg: OptimConfig):
    return torch.optim.SGD(params, lr=cfg.lr, momentum=cfg.momentum,
                           nesterov=cfg.nesterov and cfg.momentum > 0)


# Groups carry their own "weight_decay" (and "lr"), which override these constructor defaults.
OPTIMIZERS.add("sgd", _sgd)
OPTIMIZERS.add("adam", lambda params, cfg: torch.optim.Adam(
    params, lr=cfg.lr, betas=_betas(cfg, ADAM_BETAS), **_eps(cfg)))
OPTIMIZERS.add("adamw", lambda params, cfg: torch.optim.AdamW(
    params, lr=cfg.lr, betas=_betas(cfg, ADAM_BETAS), **_eps(cfg)))
OPTIMIZERS.add("nadam", lambda params, cfg: torch.optim.NAdam(
    params, lr=cfg.lr, betas=_betas(cfg, ADAM_BETAS), **_eps(cfg)))
OPTIMIZERS.add("radam", lambda params, cfg: torch.optim.RAdam(
    params, lr=cfg.lr, betas=_betas(cfg, ADAM_BETAS), **_eps(cfg)))
OPTIMIZERS.add("rmsprop", lambda params, cfg: torch.optim.RMSprop(
    params, lr=cfg.lr, momentum=cfg.momentum, **_eps(cfg)))
OPTIMIZERS.add("adagrad", lambda params, cfg: torch.optim.Adagrad(params, lr=cfg.lr, **_eps(cfg)))
# Shazeer & Stern 2018, torch's variant: factored second moment, no first moment, fixed lr.
OPTIMIZERS.add("adafactor", lambda params, cfg: torch.optim.Adafactor(
    params, lr=cfg.lr, **({} if cfg.eps is None else {"eps": (cfg.eps, 1e-3)})))
OPTIMIZERS.add("lion", lambda params, cfg: Lion(params, lr=cfg.lr, betas=_betas(cfg, LION_BETAS)))
OPTIMIZERS.add("sam", lambda params, cfg: SAM(OPTIMIZERS.get(cfg.base)(params, cfg),
                                              rho=cfg.rho, adaptive=cfg.adaptive), wrapper=True)
OPTIMIZERS.add("lookahead", lambda params, cfg: Lookahead(
    OPTIMIZERS.get(cfg.base)(params, cfg), k=cfg.lookahead_k, alpha=cfg.lookahead_alpha),
    wrapper=True)


def is_decayed(param: torch.Tensor, decay_norm_and_bias: bool = False) -> bool:
    """Whether weight decay / penalties apply: weights with ndim >= 2 (not norms, biases)."""
    return decay_norm_and_bias or param.ndim >= 2


def _multiplier(name: str, multipliers: dict[str, float]) -> float:
    best, value = -1, 1.0
    for prefix, mult in multipliers.items():
        if (name == prefix or name.startswith(prefix + ".")) and len(prefix) > best:
            best, value = len(prefix), mult
    return value


def _check_prefixes(multipliers: dict[str, float], names: list[str]) -> None:
    prefixes = {".".join(n.split(".")[:i]) for n in names for i in range(1, n.count(".") + 2)}
    for prefix in multipliers:
        if prefix not in prefixes:
            close = difflib.get_close_matches(prefix, sorted(prefixes), n=3)
            hint = f"; did you mean {', '.join(close)}?" if close else ""
            top = sorted({n.split(".")[0] for n in names})
            raise ValueError(f"lr_multipliers prefix {prefix!r} matches no parameter{hint} "
                             f"(top-level modules: {', '.join(top)})")


def param_groups(model: nn.Module, weight_decay: float, decay_norm_and_bias: bool = False,
                 lr_multipliers: Optional[dict[str, float]] = None) -> list[dict]:
    """Groups by (lr multiplier, decayed?), each with ``params``, ``weight_decay`` and
    ``lr_multiplier``. The multiplier-1 groups come first (decayed, then not), possibly empty;
    without multipliers this is ``[decayed, not decayed]`` (or one group if everything decays)."""
    multipliers = dict(lr_multipliers or {})
    named = list(model.named_parameters())
    _check_prefixes(multipliers, [n for n, _ in named])
    keys = [(1.0, True)] if decay_norm_and_bias else [(1.0, True), (1.0, False)]
    groups = {key: {"params": [], "weight_decay": weight_decay if key[1] else 0.0,
                    "lr_multiplier": key[0]} for key in keys}
    for name, p in named:
        if not p.requires_grad:
            continue
        decay, mult = is_decayed(p, decay_norm_and_bias), _multiplier(name, multipliers)
        group = groups.setdefault((mult, decay), {
            "params": [], "weight_decay": weight_decay if decay else 0.0, "lr_multiplier": mult})
        group["params"].append(p)
    return list(groups.values())


def build_optimizer(model: nn.Module, cfg: OptimConfig,
                    extra_groups: Sequence[dict] = ()) -> torch.optim.Optimizer:
    """The configured optimizer over ``model``'s parameter groups plus ``extra_groups`` (complete
    groups with their own ``lr``, e.g. a task's center-loss centers)."""
    groups = param_groups(model, cfg.weight_decay, cfg.decay_norm_and_bias, cfg.lr_multipliers)
    groups = [{**g, "lr": cfg.lr * g["lr_multiplier"]} for g in groups if g["params"]]
    return OPTIMIZERS.get(cfg.name)(groups + list(extra_groups), cfg)


def build_phase_optimizers(task, cfg: OptimConfig) -> dict[str, torch.optim.Optimizer]:
    """One optimizer per phase of ``task``: the phase's module under ``cfg``'s rules plus the
    task's own groups for that phase. Training and ``lr-find`` both build them here."""
    return {phase: build_optimizer(task.phase_module(phase), cfg,
                                   task.param_groups(phase, cfg.lr))
            for phase in task.phases}


def regularization_penalty(model: nn.Module, l1: float = 0.0, l2: float = 0.0,
                           decay_norm_and_bias: bool = False) -> torch.Tensor:
    """``l1 * sum|w| + l2 / 2 * sum w^2`` over the trainable parameters that weight decay
    applies to (:func:`is_decayed`), as a scalar to add to the loss. The 1/2 makes the L2
    gradient ``l2 * w``, i.e. SGD's weight_decay; both terms together are the elastic net.

        loss = task_loss + regularization_penalty(model, l1=cfg.l1, l2=cfg.l2_penalty)
    """
    if l1 < 0 or l2 < 0:
        raise ValueError(f"penalty coefficients must be >= 0, got l1={l1}, l2={l2}")
    params = [p for p in model.parameters()
              if p.requires_grad and is_decayed(p, decay_norm_and_bias)]
    if not params:
        raise ValueError("regularization_penalty: the model has no trainable parameter that "
                         "weight decay applies to")
    total = params[0].new_zeros(())
    for p in params:
        if l1:
            total = total + l1 * p.abs().sum()
        if l2:
            total = total + (0.5 * l2) * p.square().sum()
    return total
