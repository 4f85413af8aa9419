"""Activations chosen by name: ``create_act("gelu")``.

One spelling per activation across code, YAML and CLI; ``swish`` is an alias of ``silu``
because both names are common in the literature (Ramachandran et al. 2017; Elfwing et al. 2018).
"""

from __future__ import annotations

from typing import Callable

from torch import nn

from archlab.registry import Registry

ACTIVATIONS: Registry[Callable[[bool], nn.Module]] = Registry("activation")

ACTIVATIONS.add("relu", lambda inplace: nn.ReLU(inplace=inplace))
ACTIVATIONS.add("relu6", lambda inplace: nn.ReLU6(inplace=inplace))
ACTIVATIONS.add("leaky_relu", lambda inplace: nn.LeakyReLU(0.01, inplace=inplace))
ACTIVATIONS.add("prelu", lambda inplace: nn.PReLU())
ACTIVATIONS.add("elu", lambda inplace: nn.ELU(inplace=inplace))
ACTIVATIONS.add("selu", lambda inplace: nn.SELU(inplace=inplace))
ACTIVATIONS.add("gelu", lambda inplace: nn.GELU())
ACTIVATIONS.add("silu", lambda inplace: nn.SiLU(inplace=inplace))
ACTIVATIONS.add("swish", lambda inplace: nn.SiLU(inplace=inplace))
ACTIVATIONS.add("hard_swish", lambda inplace: nn.Hardswish(inplace=inplace))
ACTIVATIONS.add("hard_sigmoid", lambda inplace: nn.Hardsigmoid(inplace=inplace))
ACTIVATIONS.add("mish", lambda inplace: nn.Mish(inplace=inplace))
ACTIVATIONS.add("sigmoid", lambda inplace: nn.Sigmoid())
ACTIVATIONS.add("tanh", lambda inplace: nn.Tanh())
ACTIVATIONS.add("identity", lambda inplace: nn.Identity())


def create_act(name: str, inplace: bool = False) -> nn.Module:
    """A fresh activation module for ``name`` (see ``ACTIVATIONS.list()``)."""
    return ACTIVATIONS.get(name)(inplace)
