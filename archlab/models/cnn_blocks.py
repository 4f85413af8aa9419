"""The conv block kinds of the small CNNs: the standard 3x3 conv and the cheaper designs the
efficient-CNN study compares against it, at the same input/output widths.

* ``standard``  — conv3x3 (in -> out).  Params 9·in·out.
* ``separable`` — depthwise conv3x3 (in -> in, one filter per channel) then pointwise 1x1
  (in -> out), each followed by norm + act (MobileNet v1, Howard et al. 2017, Fig. 3).
  Params 9·in + in·out: about 8-9x fewer than standard for widths >= 32.
* ``bottleneck`` — 1x1 reduce (in -> out/r), conv3x3 (out/r -> out/r), 1x1 expand (out/r -> out)
  (He et al. 2016, Fig. 5 right, without the shortcut: the cost of the layout itself).
* ``reduce``    — 1x1 reduction (in -> out/r) then conv3x3 (out/r -> out): Inception's
  "1x1 convolutions before the expensive 3x3" (Szegedy et al. 2015, Sec. 4) and SqueezeNet's
  squeeze layer.

Every block ends with ``[max-pool 2] -> norm -> act`` on its last conv, so a stage's first block
pools right after its conv whatever the kind (see :mod:`archlab.models.cnn`). The first conv of
the network stays standard in every kind: a depthwise conv on one input channel does nothing
useful, and MobileNet also starts with a full conv.
"""

from __future__ import annotations

from torch import nn

from archlab.layers.activations import create_act
from archlab.layers.norms import create_norm

BLOCK_KINDS = ("standard", "separable", "bottleneck", "reduce")


def _conv(in_chans: int, out_chans: int, k: int, norm: str, groups: int = 1) -> nn.Conv2d:
    # A conv followed by a norm layer needs no bias (the norm's shift replaces it).
    return nn.Conv2d(in_chans, out_chans, k, padding=k // 2, groups=groups, bias=norm == "none")


def _norm_act(chans: int, act: str, norm: str) -> list[nn.Module]:
    return [create_norm(norm, chans), create_act(act, inplace=True)]


def conv_block(kind: str, in_chans: int, out_chans: int, act: str, norm: str, pool: bool,
               reduction: int = 4) -> nn.Sequential:
    """One block of kind ``kind`` (see the module docstring); ``reduction`` is r, the width
    divisor of ``bottleneck`` and ``reduce``."""
    if kind not in BLOCK_KINDS:
        raise ValueError(f"unknown conv block kind '{kind}'; choose one of "
                         f"{', '.join(BLOCK_KINDS)}")
    if reduction < 1:
        raise ValueError(f"reduction must be >= 1, got {reduction}")
    mid = max(1, out_chans // reduction)
    layers: list[nn.Module] = []
    if kind == "standard":
        last = _conv(in_chans, out_chans, 3, norm)
    elif kind == "separable":
        layers += [_conv(in_chans, in_chans, 3, norm, groups=in_chans), *_norm_act(in_chans, act, norm)]
        last = _conv(in_chans, out_chans, 1, norm)
    elif kind == "bottleneck":
        layers += [_conv(in_chans, mid, 1, norm), *_norm_act(mid, act, norm),
                   _conv(mid, mid, 3, norm), *_norm_act(mid, act, norm)]
        last = _conv(mid, out_chans, 1, norm)
    else:  # reduce
        layers += [_conv(in_chans, mid, 1, norm), *_norm_act(mid, act, norm)]
        last = _conv(mid, out_chans, 3, norm)
    layers.append(last)
    if pool:
        layers.append(nn.MaxPool2d(2))
    layers += _norm_act(out_chans, act, norm)
    return nn.Sequential(*layers)
