"""JSON that every reader accepts: non-finite floats become ``null`` with the fact recorded.

Python's ``json`` writes ``NaN`` / ``Infinity``, which are not JSON: SQLite's JSON functions (the
run index's ``--sort``), browsers and most other tools reject the whole document. A run whose
loss went non-finite must not poison the store for every other run.
"""

from __future__ import annotations

import json
import math
from typing import Any

NONFINITE_KEY = "nonfinite"


def _clean(value: Any, path: str, found: dict[str, str]) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        found[path] = "nan" if math.isnan(value) else ("inf" if value > 0 else "-inf")
        return None
    if isinstance(value, dict):
        return {k: _clean(v, f"{path}.{k}" if path else str(k), found) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_clean(v, f"{path}[{i}]", found) for i, v in enumerate(value)]
    return value


def strict_dumps(obj: Any) -> str:
    """``json.dumps`` with non-finite floats as ``null``; a mapping gets a ``"nonfinite"`` entry
    naming each replaced key and what it was (``{"train.loss": "inf"}``)."""
    found: dict[str, str] = {}
    clean = _clean(obj, "", found)
    if found and isinstance(clean, dict):
        clean[NONFINITE_KEY] = found
    return json.dumps(clean, allow_nan=False)
