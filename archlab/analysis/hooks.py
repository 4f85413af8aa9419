"""The attach / detach life cycle shared by the hook-based trackers (activation statistics,
dead units, BatchNorm statistics, the non-finite detector): hooks exist only while measuring,
so unmeasured steps pay nothing, and ``with tracker:`` scopes them to a block."""

from __future__ import annotations

from typing import TypeVar

from torch.utils.hooks import RemovableHandle


T = TypeVar("T", bound="ModuleHooks")


class ModuleHooks:
    """Subclasses register their hooks in :meth:`_register` and return the handles."""

    _handles: list[RemovableHandle]

    def _register(self) -> list[RemovableHandle]:
        raise NotImplementedError

    @property
    def attached(self) -> bool:
        return bool(getattr(self, "_handles", None))

    def attach(self: T) -> T:
        if not self.attached:
            self._handles = self._register()
        return self

    def detach(self) -> None:
        for handle in getattr(self, "_handles", []):
            handle.remove()
        self._handles = []

    def __enter__(self: T) -> T:
        return self.attach()

    def __exit__(self, *exc) -> None:
        self.detach()
