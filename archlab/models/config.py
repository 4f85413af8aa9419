"""ModelConfig: a registered model name plus its builder's keyword options.

A *model spec* is the plain-data description a checkpoint carries (name, every constructor
argument including those the data fixed, dropout kind, DropConnect), so any tool rebuilds the
architecture from the checkpoint alone with :func:`build_model`, without loading a dataset."""

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
    """Builder options, e.g. {act: gelu, drop_rate: 0.1}; num_classes/in_chans (images) and
    vocab_size/block_size (text) come from the data."""
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

        for reserved in DATA_ARGUMENTS:
            if reserved in self.options:
                raise ValueError(f"options.{reserved} is set from the dataset; remove it")
        try:
            check_options(self.name, self.options)
        except TypeError as e:
            raise ValueError(str(e)) from None

    def spec(self, **data_kwargs: Any) -> dict[str, Any]:
        """The model spec with the constructor arguments the data fixes (``num_classes``,
        ``in_chans`` / ``vocab_size``, ``block_size``)."""
        return {"name": self.name, "kwargs": {**self.options, **data_kwargs},
                "dropout": self.dropout, "drop_connect": self.drop_connect}

    def build(self, **data_kwargs: Any) -> nn.Module:
        """The model, with the configured dropout kind and DropConnect applied."""
        return build_model(self.spec(**data_kwargs))


#: Constructor arguments set from the dataset, never from model.options.
DATA_ARGUMENTS = ("num_classes", "in_chans", "vocab_size", "block_size")


def build_model(spec: dict[str, Any]) -> nn.Module:
    """The architecture a model spec describes (fresh weights): registered model, dropout kind,
    DropConnect on every Linear."""
    from archlab.layers.drop import DropConnect
    from archlab.layers.variational_dropout import convert_dropout
    from archlab.models._factory import create_model

    name, dropout = spec["name"], spec.get("dropout", "standard")
    model = create_model(name, **spec["kwargs"])
    if convert_dropout(model, dropout) == 0 and dropout != "standard":
        raise ValueError(f"model.dropout={dropout} but {name} has no nn.Dropout with p > 0; set "
                         f"a dropout rate in model.options (e.g. drop_rate)")
    if spec.get("drop_connect", 0.0) > 0:
        for parent in list(model.modules()):
            for child_name, child in list(parent.named_children()):
                if type(child) is nn.Linear:
                    setattr(parent, child_name, DropConnect(child, spec["drop_connect"]))
    return model
