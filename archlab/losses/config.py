"""LossConfig: a registered loss name plus its options (``task.loss`` in experiment configs)."""

from __future__ import annotations

from dataclasses import field
from typing import Any

from pydantic import field_validator

from archlab.config import config_dataclass, known_name


@config_dataclass
class LossConfig:
    name: str = "cross_entropy"
    """Registered loss (archlab.losses.LOSSES)."""
    options: dict[str, Any] = field(default_factory=dict)
    """Keyword options, e.g. {label_smoothing: 0.1} or {gamma: 2.0, alpha: 0.25}."""

    @field_validator("name")
    @classmethod
    def _registered(cls, name: str) -> str:
        from archlab.losses import LOSSES

        return known_name(LOSSES, name)

    def __post_init__(self) -> None:
        from archlab.losses import build_loss

        build_loss(self.name, **self.options)  # bad options fail now, at config time

    def build(self):
        from archlab.losses import build_loss

        return build_loss(self.name, **self.options)

    def inputs(self) -> tuple[str, ...]:
        """What the loss's forward takes, e.g. ("logits", "target") (the registry's metadata)."""
        from archlab.losses import LOSSES

        return tuple(LOSSES.entry(self.name).meta.get("inputs", ("logits", "target")))
