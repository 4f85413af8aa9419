"""ModelConfig: a registered model name plus its builder's keyword options."""

from __future__ import annotations

from dataclasses import field
from typing import Any

from pydantic import field_validator

from archlab.config import config_dataclass, known_name


@config_dataclass
class ModelConfig:
    name: str = "cnn_fast"
    """Registered model (``archlab models ls``)."""
    options: dict[str, Any] = field(default_factory=dict)
    """Builder options, e.g. {act: gelu, drop_rate: 0.1}; num_classes/in_chans come from data."""

    @field_validator("name")
    @classmethod
    def _registered(cls, name: str) -> str:
        from archlab.models._factory import MODELS

        return known_name(MODELS, name)

    def __post_init__(self) -> None:
        from archlab.models._factory import check_options

        for reserved in ("num_classes", "in_chans"):
            if reserved in self.options:
                raise ValueError(f"options.{reserved} is set from the dataset; remove it")
        try:
            check_options(self.name, self.options)
        except TypeError as e:
            raise ValueError(str(e)) from None
