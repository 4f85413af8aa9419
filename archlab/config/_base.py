"""The one way archlab declares a config section: a strict, typed pydantic dataclass.

``extra="forbid"`` makes an unknown key an error that names it; pydantic's (lax) validation
turns YAML/CLI strings such as ``"1e-3"`` into the declared type and rejects everything that
does not fit (``epochs="abc"``, ``epochs=2.5``). Range rules live next to the field, e.g.
``lr: Annotated[float, Field(gt=0)]``.
"""

from __future__ import annotations

import functools

from pydantic import ConfigDict
from pydantic.dataclasses import dataclass

STRICT = ConfigDict(extra="forbid", validate_assignment=True, arbitrary_types_allowed=False)

#: Decorator for every config section: ``@config_dataclass class OptimConfig: ...``
config_dataclass = functools.partial(dataclass, config=STRICT)


def known_name(registry, name: str) -> str:
    """Field-validator body for a registry name: unknown names fail with close matches."""
    if name not in registry:
        raise ValueError(registry.unknown_message(name))
    return name
