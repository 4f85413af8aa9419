"""The AutoAugment image operations, batched over uint8 (B, C, H, W) tensors with one value each.

Every op is ``op(x, value) -> x`` with ``value`` a (B,) float tensor holding each image's own
parameter, so a policy that drew different ops and magnitudes per image applies each op to its
group of images in one call (see :func:`apply_per_sample`). Semantics follow PIL's ImageOps /
ImageEnhance / Image.transform, which AutoAugment, RandAugment and TrivialAugment were defined
with (and torchvision reproduces): enhance ops blend with a degenerate image and truncate,
geometric ops sample the nearest pixel and fill with 0. C may be 1 (gray) or 3 (RGB).

=============  ======================================================  ==================
op             value                                                   identity at
=============  ======================================================  ==================
identity       ignored
shear_x/y      shear factor s: x_in = x + s * y (about the top-left)   0
translate_x/y  pixels the content moves right / down (truncated)       0
rotate         degrees counter-clockwise about the centre              0
brightness     enhance factor (0 black, 1 unchanged)                   1
color          saturation factor (0 gray); identity for 1 channel      1
contrast       contrast factor (0 = the image's mean gray level)       1
sharpness      sharpness factor (0 = PIL's SMOOTH filter)              1
posterize      bits kept (rounded)                                     8
solarize       threshold: values >= threshold are inverted             256
autocontrast   ignored: stretch each channel to [0, 255]
equalize       ignored: histogram-equalize each channel
invert         ignored: 255 - x
=============  ======================================================  ==================
"""

from __future__ import annotations

import functools
import math
from typing import Callable, Sequence

import torch
import torch.nn.functional as F

ImageOp = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def check_images(x: torch.Tensor, who: str) -> None:
    if x.dtype != torch.uint8 or x.dim() != 4 or x.shape[1] not in (1, 3):
        raise ValueError(f"{who}: expects a uint8 (B, C, H, W) batch with C = 1 or 3 (augment "
                         f"before normalization), got {x.dtype} of shape {tuple(x.shape)}")


# ---------------------------------------------------------------- geometric (inverse affine maps)
@functools.lru_cache(maxsize=16)
def _pixel_centres(h: int, w: int, device: torch.device) -> torch.Tensor:
    """(3, H*W) homogeneous pixel centres (x + 0.5, y + 0.5, 1) in row-major order."""
    cols = torch.arange(w, device=device, dtype=torch.float32) + 0.5
    rows = torch.arange(h, device=device, dtype=torch.float32) + 0.5
    ones = torch.ones(h * w, device=device)
    return torch.stack([cols.repeat(h), rows.repeat_interleave(w), ones])


def affine_nearest(x: torch.Tensor, matrix: torch.Tensor) -> torch.Tensor:
    """Resample each image through its own inverse affine map, nearest neighbour, fill 0.

    ``matrix`` (B, 2, 3) maps an output pixel centre (x + 0.5, y + 0.5) to input coordinates
    in which pixel i covers [i, i + 1) -- PIL's ``Image.transform(AFFINE)`` convention -- so the
    sampled pixel is the floor of the mapped point. One gather for the whole batch from the
    image padded by a zero border, to which every outside point is clamped; the image stays
    uint8 (no float round trip as with grid_sample).
    """
    b, c, h, w = x.shape
    src = (matrix.to(device=x.device, dtype=torch.float32) @ _pixel_centres(h, w, x.device))
    src.floor_()  # (B, 2, H*W)
    sx = src[:, 0].clamp_(-1, w)  # -1 and w land in the zero border
    sy = src[:, 1].clamp_(-1, h)
    index = ((sy + 1) * (w + 2) + (sx + 1)).long()  # (B, H*W) into the padded image
    padded = F.pad(x, (1, 1, 1, 1)).view(b, c, (h + 2) * (w + 2))
    return padded.gather(2, index[:, None].expand(b, c, h * w)).view(b, c, h, w)


def _matrix(v: torch.Tensor, a, b_, c, d, e, f) -> torch.Tensor:
    """Stack per-image coefficients (tensors or scalars) into (B, 2, 3)."""
    parts = [p if torch.is_tensor(p) else torch.full_like(v, float(p)) for p in (a, b_, c, d, e, f)]
    return torch.stack(parts, dim=1).view(-1, 2, 3)


def shear_x(x: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    return affine_nearest(x, _matrix(v, 1, v, 0, 0, 1, 0))


def shear_y(x: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    return affine_nearest(x, _matrix(v, 1, 0, 0, v, 1, 0))


def translate_x(x: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    return affine_nearest(x, _matrix(v, 1, 0, -v.trunc(), 0, 1, 0))  # whole pixels, as torchvision


def translate_y(x: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    return affine_nearest(x, _matrix(v, 1, 0, 0, 0, 1, -v.trunc()))


def rotate(x: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    # Input point = R(theta) (p - centre) + centre, so content turns by -theta in the y-down
    # frame, i.e. counter-clockwise on screen (PIL's Image.rotate).
    theta = v.float() * (math.pi / 180.0)
    cos, sin = theta.cos(), theta.sin()
    cx, cy = x.shape[-1] / 2.0, x.shape[-2] / 2.0
    return affine_nearest(x, _matrix(v, cos, -sin, cx - cos * cx + sin * cy,
                                     sin, cos, cy - sin * cx - cos * cy))


# ---------------------------------------------------------------- enhance (blend with a degenerate)
def _blend(x: torch.Tensor, degenerate: torch.Tensor, factor: torch.Tensor) -> torch.Tensor:
    """PIL's Image.blend(degenerate, x, factor): degenerate + factor * (x - degenerate),
    clipped and truncated to uint8 (factor > 1 extrapolates)."""
    d = degenerate.float()
    f = factor.float().view(-1, 1, 1, 1)
    return (d + f * (x.float() - d)).clamp_(0, 255).to(torch.uint8)


def luma(x: torch.Tensor) -> torch.Tensor:
    """(B, 3, H, W) uint8 -> (B, 1, H, W) int32 gray level, ITU-R 601-2 with PIL's fixed-point
    rounding (``Image.convert("L")``); gray images are returned as they are."""
    if x.shape[1] == 1:
        return x.int()
    r, g, b = x.int().unbind(1)
    return ((r * 19595 + g * 38470 + b * 7471 + 0x8000) >> 16)[:, None]


def brightness(x: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    return _blend(x, torch.zeros((), device=x.device), v)


def color(x: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    if x.shape[1] == 1:  # no saturation to change
        return x
    return _blend(x, luma(x), v)


def contrast(x: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    gray = luma(x).flatten(1)
    n = gray.shape[1]
    mean = (2 * gray.sum(1, dtype=torch.int64) + n) // (2 * n)  # int(mean + 0.5), as PIL
    return _blend(x, mean.view(-1, 1, 1, 1), v)


def sharpness(x: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    if x.shape[-2] < 3 or x.shape[-1] < 3:
        return x
    xf = x.float()
    # PIL's SMOOTH kernel [[1, 1, 1], [1, 5, 1], [1, 1, 1]] / 13 = (3x3 box sum + 4 centre) / 13,
    # the box sum taken separably; exact integer sums in float32.
    rows = xf[:, :, :-2] + xf[:, :, 1:-1] + xf[:, :, 2:]
    total = rows[..., :-2] + rows[..., 1:-1] + rows[..., 2:] + 4 * xf[:, :, 1:-1, 1:-1]
    smooth = xf.clone()  # PIL's filter leaves the one-pixel border as it was
    smooth[:, :, 1:-1, 1:-1] = total.add_(6.0).div_(13.0).floor_()  # rounded half up, as PIL
    return _blend(x, smooth, v)


# ---------------------------------------------------------------- histogram / lookup ops
def posterize(x: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    shift = (8 - v.round().clamp(0, 8)).to(torch.int32)
    mask = ((255 << shift) & 255).to(torch.uint8)  # keep the top `bits` bits
    return x & mask.view(-1, 1, 1, 1)


def solarize(x: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    # x >= v  <=>  x >= ceil(v) for integer x; thresholds above 255 never fire. 255 - x is
    # x XOR 255 in uint8: integer arithmetic instead of a (slow on CPU) uint8 torch.where.
    t = v.to(x.device).ceil().view(-1, 1, 1, 1)
    flip = (t <= 255).to(torch.uint8) * 255  # (B, 1, 1, 1)
    hit = (x >= t.clamp(0, 255).to(torch.uint8)).to(torch.uint8)
    return x ^ (hit * flip)


def autocontrast(x: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """Per channel: (x - lo) * 255 / (hi - lo), truncated; flat channels are left alone."""
    lo = x.amin(dim=(2, 3), keepdim=True).float()
    span = x.amax(dim=(2, 3), keepdim=True).float() - lo
    flat = span == 0  # (B, C, 1, 1): map x -> (x - 0) * 1 / 1
    lo, den = lo.masked_fill(flat, 0.0), span.masked_fill(flat, 1.0)
    num = torch.where(flat, 1.0, 255.0)
    # floor of a correctly rounded float32 quotient of integers <= 65025 is the exact floor
    return (x.float() - lo).mul_(num).div_(den).floor_().to(torch.uint8)


def equalize(x: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """PIL's ImageOps.equalize per channel of every image at once: the lookup table is
    (step // 2 + #pixels below i) // step with step = (#pixels - #pixels at the top level) // 255;
    a channel with step 0 (one or almost one level) is left alone."""
    b, c, h, w = x.shape
    flat = x.reshape(b * c, h * w).long()
    offset = torch.arange(b * c, device=x.device)[:, None] * 256
    hist = torch.bincount((flat + offset).view(-1), minlength=b * c * 256).view(b * c, 256)
    top = hist.gather(1, flat.amax(1, keepdim=True))  # (B*C, 1) count of the highest level
    step = (h * w - top) // 255
    below = hist.cumsum(1) - hist
    lut = ((below + step // 2) // step.clamp(min=1)).clamp_(max=255)
    lut = torch.where(step > 0, lut, torch.arange(256, device=x.device))
    return lut.gather(1, flat).to(torch.uint8).view(b, c, h, w)


def invert(x: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    return 255 - x


def identity(x: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    return x


IMAGE_OPS: dict[str, ImageOp] = {
    "identity": identity, "shear_x": shear_x, "shear_y": shear_y,
    "translate_x": translate_x, "translate_y": translate_y, "rotate": rotate,
    "brightness": brightness, "color": color, "contrast": contrast, "sharpness": sharpness,
    "posterize": posterize, "solarize": solarize, "autocontrast": autocontrast,
    "equalize": equalize, "invert": invert,
}


def apply_per_sample(x: torch.Tensor, op_index: torch.Tensor, value: torch.Tensor,
                     ops: Sequence[str]) -> torch.Tensor:
    """Image b gets ``ops[op_index[b]]`` with parameter ``value[b]``; ``op_index < 0`` skips it.

    Loops over op types, not images: the batch is sorted by op once, each op runs on its
    contiguous slice (a view), and one scatter puts the results back in order.
    """
    order = torch.argsort(op_index, stable=True)
    counts = torch.bincount(op_index.clamp(min=-1) + 1, minlength=len(ops) + 1).tolist()
    # index_select, not x[order]: advanced indexing of uint8 along dim 0 is ~20x slower on CPU
    xs, vs = x.index_select(0, order), value.index_select(0, order)
    parts, start = [xs[:counts[0]]], counts[0]  # skipped images first (index -1)
    for name, count in zip(ops, counts[1:]):
        if count:
            parts.append(IMAGE_OPS[name](xs[start:start + count], vs[start:start + count]))
        start += count
    return torch.cat(parts).index_select(0, torch.argsort(order))
