"""Checkpoint files are data, not code.

Writes go to a temporary file in the same directory, are fsynced, then renamed over the target
(``os.replace`` is atomic on POSIX), so a crash mid-write never leaves a torn checkpoint. Reads use
``torch.load(weights_only=True)``: tensors, containers and primitives only; a file that would need
to import or call anything is refused, not executed.
"""

from __future__ import annotations

import os
import pickle
import tempfile
import zipfile
from pathlib import Path
from typing import Any

import torch


class CheckpointError(RuntimeError):
    """A checkpoint file is missing, corrupt, or holds something other than plain data."""


def save_checkpoint(obj: Any, path: str | Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            torch.save(obj, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> Any:
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint not found: {path}")
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as e:
        raise CheckpointError(f"refusing to load {path}: it contains objects other than tensors "
                              f"and plain data ({e.__class__.__name__}: "
                              f"{str(e).splitlines()[0]})") from None
    except (zipfile.BadZipFile, EOFError, RuntimeError, ValueError) as e:
        raise CheckpointError(f"cannot read checkpoint {path}: corrupt or truncated "
                              f"({e.__class__.__name__}: {str(e).splitlines()[0] if str(e) else ''})"
                              ) from None
