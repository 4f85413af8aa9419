"""ModelConfig: a registered model name plus its builder's keyword options."""

from __future__ import annotations

from dataclasses import field
from typing import Annotated, Any, Literal

from pydantic import Field, field_validator
from torch import nn

from archlab.config import config_dataclass, known_name


@config_dataclass
class ModelConfig:
    name: str = "cnn_fast"
    """Registered model (``archlab models ls``)."""
    options: dict[str, Any] = field(default_factory=dict)
    """Builder options, e.g. {act: gelu, drop_rate: 0.1}; num_classes/in_chans come from data."""
    dropout: Literal["standard", "gaussian", "variational"] = "standard"
    """What the model's nn.Dropout layers become: Bernoulli (standard), Gaussian noise at the
    same rate, or variational dropout with learned rates (its KL / N_train joins the loss)."""
    drop_connect: Annotated[float, Field(ge=0.0, lt=1.0)] = 0.0
    """DropConnect (Wan et al. 2013) on every nn.Linear: each weight dropped with this rate."""

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

    def build(self, num_classes: int, in_chans: int):
        """The model, with the configured dropout kind and DropConnect applied."""
        from archlab.layers.drop import DropConnect
        from archlab.layers.variational_dropout import convert_dropout
        from archlab.models._factory import create_model

        model = create_model(self.name, num_classes=num_classes, in_chans=in_chans,
                             **self.options)
        if convert_dropout(model, self.dropout) == 0 and self.dropout != "standard":
            raise ValueError(f"model.dropout={self.dropout} but {self.name} has no nn.Dropout "
                             f"with p > 0; set a dropout rate in model.options (e.g. drop_rate)")
        if self.drop_connect > 0:
            for parent in list(model.modules()):
                for name, child in list(parent.named_children()):
                    if type(child) is nn.Linear:
                        setattr(parent, name, DropConnect(child, self.drop_connect))
        return model
