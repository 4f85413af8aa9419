"""Conv2d -> norm -> activation, the unit every mobile / efficient CNN is built from.

``ConvNormAct`` is a ``nn.Sequential`` whose children are named ``0`` (conv), ``1`` (norm),
``2`` (activation), exactly like torchvision's ``Conv2dNormActivation``, so torchvision
checkpoints load unchanged. A missing norm or activation leaves its slot out (the activation
then sits at ``1``), again as torchvision does. Usage::

    stem = ConvNormAct(3, 32, kernel_size=3, stride=2, act="relu6")
    project = ConvNormAct(96, 24, kernel_size=1, act=None)     # linear bottleneck
    dw = ConvNormAct(96, 96, groups=96, norm_layer=batch_norm(eps=1e-3, momentum=0.01))
"""

from __future__ import annotations

from functools import partial
from typing import Callable

from torch import nn

from archlab.layers.activations import create_act
from archlab.layers.norms import create_norm

NormLayer = Callable[[int], nn.Module]


def batch_norm(eps: float = 1e-5, momentum: float = 0.1) -> NormLayer:
    """A BatchNorm2d factory with non-default eps / momentum (e.g. 1e-3 / 0.01 as in the
    TensorFlow-trained MobileNetV3 and EfficientNet-B5+ checkpoints)."""
    return partial(nn.BatchNorm2d, eps=eps, momentum=momentum)


def norm_layer_by_name(name: str, eps: float = 1e-5, momentum: float = 0.1) -> NormLayer:
    """``"batch"`` -> BatchNorm2d with the given eps/momentum; any other name goes through
    :func:`archlab.layers.norms.create_norm` (``"group"``, ``"layer"``, ``"none"``, ...)."""
    if name == "batch":
        return batch_norm(eps, momentum)
    create_norm(name, 8)  # fail now, with the list of valid names, rather than deep in a model
    return partial(create_norm, name, dims=2)


class ConvNormAct(nn.Sequential):
    def __init__(self, in_channels: int, out_channels: int, kernel_size: int = 3,
                 stride: int = 1, groups: int = 1, dilation: int = 1,
                 norm_layer: NormLayer | None = nn.BatchNorm2d, act: str | None = "relu",
                 inplace: bool = True) -> None:
        norm = norm_layer(out_channels) if norm_layer is not None else None
        # The norm's shift makes a conv bias redundant; keep it only without a real norm.
        bias = norm is None or isinstance(norm, nn.Identity)
        padding = (kernel_size - 1) // 2 * dilation  # "same" size for odd kernels at stride 1
        layers: list[nn.Module] = [nn.Conv2d(in_channels, out_channels, kernel_size, stride,
                                             padding, dilation=dilation, groups=groups,
                                             bias=bias)]
        if norm is not None:
            layers.append(norm)
        if act is not None:
            layers.append(create_act(act, inplace=inplace))
        super().__init__(*layers)
        self.out_channels = out_channels
