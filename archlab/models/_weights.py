"""Load pretrained weights into an archlab model, adapting the classifier and the first conv.

``load_pretrained(model, path_or_url)`` accepts

* a torchvision/timm-style state_dict file: ``.pth`` / ``.pt`` / ``.bin`` read with
  ``torch.load(weights_only=True)`` (tensors and plain containers only: a pickle that would
  build any other object is refused, never executed), or ``.safetensors``;
* an archlab checkpoint: a dict with a ``"model"`` state_dict (and a ``"config"``); a dict
  with a ``"state_dict"`` entry is unwrapped the same way;
* an ``http(s)://`` or ``file://`` URL, downloaded once to
  ``${XDG_CACHE_HOME:-~/.cache}/archlab/weights/``. A file name carrying a hash prefix as
  torchvision's do (``resnet18-f37072fd.pth``) is checked against the file's SHA-256.

Two differences are adapted, because they are what fine-tuning changes (rules as in timm):

* classifier (``model.default_cfg.classifier``): if any of its tensors differ in shape from the
  file's (another ``num_classes``), the file's classifier tensors are dropped and the model's
  stay freshly initialized;
* first conv (``model.default_cfg.first_conv``): if only the input-channel dimension differs,
  the weight is adapted: to 1 channel, summed over the file's channels (so a gray image gives
  what the RGB model gives on that image repeated in every channel); to k channels, the file's
  channels repeated cyclically and scaled by ``C_file / k`` (3/k for RGB).

Everything else must match. A shape mismatch anywhere else always raises: it means another
architecture, and silently skipping tensors would hide it. A file that matches no parameter at
all raises too. Missing keys (left new, e.g. SE layers on a plain ResNet checkpoint) and
unexpected keys are listed in the :class:`LoadReport`; with ``strict=True`` they raise instead,
except the classifier tensors dropped above and BatchNorm ``num_batches_tracked`` counters
(older torchvision checkpoints predate them). Usage::

    report = load_pretrained(model, "resnet18-f37072fd.pth")
    print(report)          # loaded / adapted / left new / unexpected
"""

from __future__ import annotations

import hashlib
import os
import pickle
import re
import shutil
import tempfile
import urllib.parse
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn

WRAPPER_PREFIXES = ("module.", "_orig_mod.")  # DataParallel / DDP, torch.compile
HASH_IN_NAME = re.compile(r"-([a-f0-9]{6,64})\.")


class WeightsError(ValueError):
    """The weights file does not fit the model (and the reason is in the message)."""


@dataclass
class LoadReport:
    source: str
    loaded: list[str] = field(default_factory=list)
    adapted: dict[str, str] = field(default_factory=dict)  # key -> how it was adapted
    missing: list[str] = field(default_factory=list)  # model keys left as initialized
    unexpected: list[str] = field(default_factory=list)  # file keys the model does not have
    dropped: list[str] = field(default_factory=list)  # file classifier tensors not used

    def __str__(self) -> str:
        lines = [f"loaded {len(self.loaded)} tensors from {self.source}"]
        for key, how in self.adapted.items():
            lines.append(f"  adapted {key}: {how}")
        if self.dropped:
            lines.append(f"  dropped from file (classifier replaced): {', '.join(self.dropped)}")
        if self.missing:
            lines.append(f"  left new ({len(self.missing)}): {_abbrev(self.missing)}")
        if self.unexpected:
            lines.append(f"  unexpected, ignored ({len(self.unexpected)}): "
                         f"{_abbrev(self.unexpected)}")
        return "\n".join(lines)


def _abbrev(keys: list[str], n: int = 8) -> str:
    return ", ".join(keys[:n]) + (f", ... (+{len(keys) - n})" if len(keys) > n else "")


def cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "archlab" / "weights"


def download(url: str) -> Path:
    """The cached copy of ``url`` (downloaded on first use, checked against a name hash)."""
    name = os.path.basename(urllib.parse.urlparse(url).path)
    if not name:
        raise WeightsError(f"cannot name a cache file for URL {url!r}")
    target = cache_dir() / name
    if target.exists():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=target.parent, suffix=".part")
    try:
        with os.fdopen(fd, "wb") as out, urllib.request.urlopen(url) as response:
            shutil.copyfileobj(response, out)
        match = HASH_IN_NAME.search(name)
        if match:
            digest = hashlib.sha256(Path(tmp).read_bytes()).hexdigest()
            if not digest.startswith(match.group(1)):
                raise WeightsError(f"download of {url} is corrupt: SHA-256 {digest[:16]}... does "
                                   f"not start with {match.group(1)} as its name says")
        os.replace(tmp, target)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)
    return target


def read_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """Tensors of a state_dict / safetensors / archlab checkpoint file, on the CPU."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no weights file at {path}")
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        obj: object = load_file(str(path), device="cpu")
    else:
        try:
            obj = torch.load(path, map_location="cpu", weights_only=True)
        except pickle.UnpicklingError as err:
            raise WeightsError(
                f"refusing to load {path}: it is not a plain tensor file (torch.load with "
                f"weights_only=True rejected it: {str(err).splitlines()[0]}). Only state_dicts "
                f"and archlab checkpoints are read; arbitrary pickled objects never are") from None
    if isinstance(obj, dict):
        # An archlab checkpoint names the weights it was evaluated with (EMA's average, when
        # on) "evaluation_model"; a transfer starts from those.
        for wrapper in ("evaluation_model", "model", "state_dict"):
            if isinstance(obj.get(wrapper), dict):
                obj = obj[wrapper]
                break
    if not isinstance(obj, dict) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise WeightsError(f"{path} holds no state_dict (expected a dict of tensors, or a dict "
                           f"with a 'model' or 'state_dict' entry)")
    state = dict(obj)
    for prefix in WRAPPER_PREFIXES:
        if state and all(k.startswith(prefix) for k in state):
            state = {k[len(prefix):]: v for k, v in state.items()}
    return state


def adapt_input_conv(weight: torch.Tensor, in_chans: int) -> tuple[torch.Tensor, str]:
    """A conv weight (O, C, kh, kw) for ``in_chans`` inputs, and how it was derived."""
    c = weight.shape[1]
    if in_chans == 1:
        return weight.sum(dim=1, keepdim=True), f"summed over {c} input channels"
    index = torch.arange(in_chans) % c
    return (weight[:, index] * (c / in_chans),
            f"{c} input channels repeated cyclically to {in_chans}, scaled by {c}/{in_chans}")


def load_pretrained(model: nn.Module, path_or_url: str | Path, *,
                    strict: bool = False) -> LoadReport:
    """Load weights into ``model`` in place; see the module docstring for the rules."""
    source = str(path_or_url)
    is_url = urllib.parse.urlparse(source).scheme in ("http", "https", "file")
    file_state = read_state_dict(download(source) if is_url else Path(source))
    report = LoadReport(source=source)
    own = model.state_dict()
    cfg = getattr(model, "default_cfg", None)

    classifier = getattr(cfg, "classifier", None)
    if classifier:
        prefix = classifier + "."
        file_keys = [k for k in file_state if k.startswith(prefix)]
        own_keys = [k for k in own if k.startswith(prefix)]
        changed = (set(file_keys) != set(own_keys)
                   or any(file_state[k].shape != own[k].shape for k in file_keys))
        if file_keys and changed:
            for k in file_keys:
                del file_state[k]
            report.dropped = file_keys

    first_conv = getattr(cfg, "first_conv", None)
    if first_conv and f"{first_conv}.weight" in file_state and f"{first_conv}.weight" in own:
        key = f"{first_conv}.weight"
        got, want = file_state[key].shape, own[key].shape
        if got != want and len(got) == len(want) and got[:1] + got[2:] == want[:1] + want[2:]:
            file_state[key], how = adapt_input_conv(file_state[key], want[1])
            report.adapted[key] = how

    mismatched = [f"{k}: file {tuple(v.shape)} vs model {tuple(own[k].shape)}"
                  for k, v in file_state.items() if k in own and v.shape != own[k].shape]
    if mismatched:
        raise WeightsError(f"{source} does not fit {type(model).__name__}; shape mismatch in "
                           f"{len(mismatched)} tensor(s): {_abbrev(mismatched, 5)}")
    report.loaded = [k for k in own if k in file_state]
    report.unexpected = [k for k in file_state if k not in own]
    # BN step counters absent from older checkpoints stay 0; they are not weights left new.
    report.missing = [k for k in own if k not in file_state
                      and not k.endswith("num_batches_tracked")]
    if not any(k in file_state for k, _ in model.named_parameters()):
        raise WeightsError(f"{source} shares no parameter name with {type(model).__name__} "
                           f"(file keys start {_abbrev(list(file_state), 3)}); is it the right "
                           f"architecture?")
    if strict:
        new_head = {k for k in own if report.dropped and k.startswith(f"{classifier}.")}
        missing = [k for k in report.missing if k not in new_head]
        if missing or report.unexpected:
            raise WeightsError(f"strict load of {source} failed: missing {_abbrev(missing)}; "
                               f"unexpected {_abbrev(report.unexpected)}")
    model.load_state_dict(file_state, strict=False)
    return report
