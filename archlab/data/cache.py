"""Where dataset files live: the look-up order for a dataset's directory.

When a builder gets ``root=None`` it searches, in order:

1. ``$ARCHLAB_DATA/<name>/`` (a shared data directory you set up yourself),
2. the user cache ``${XDG_CACHE_HOME:-~/.cache}/archlab/datasets/<name>/`` (where downloads go),
3. system copies named by the dataset (e.g. Debian's ``/usr/share/datasets/fashion-mnist``).

An explicit ``root`` replaces the whole list. A dataset that cannot be found (or downloaded)
raises :class:`DatasetNotFoundError`, whose message says where it looked and how to get the data.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Iterable

ENV_DATA = "ARCHLAB_DATA"


class DatasetNotFoundError(FileNotFoundError):
    """A dataset is in none of the searched places and could not be downloaded."""

    def __str__(self) -> str:  # FileNotFoundError would otherwise format (errno, strerror)
        return str(self.args[0])


def env_data_dir(name: str) -> Path | None:
    """``$ARCHLAB_DATA/<name>`` or None when the variable is unset or empty."""
    base = os.environ.get(ENV_DATA, "")
    return Path(base).expanduser() / name if base else None


def user_cache_dir(name: str) -> Path:
    """``${XDG_CACHE_HOME:-~/.cache}/archlab/datasets/<name>``: where downloads are stored."""
    base = os.environ.get("XDG_CACHE_HOME", "") or str(Path("~/.cache").expanduser())
    return Path(base).expanduser() / "archlab" / "datasets" / name


def search_dirs(name: str, root: str | Path | None = None,
                system_dirs: Iterable[str | Path] = ()) -> list[Path]:
    """The directories searched for ``name``, in order (only ``root`` when it is given)."""
    if root is not None:
        return [Path(root).expanduser()]
    dirs = [env_data_dir(name), user_cache_dir(name), *(Path(d) for d in system_dirs)]
    return [d for d in dirs if d is not None]
