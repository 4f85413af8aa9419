"""DataConfig: which dataset, how it is split and batched, which augmentations."""

from __future__ import annotations

from dataclasses import field
from typing import Annotated, Any, Optional

from pydantic import Field, field_validator

from archlab.config import config_dataclass, known_name


@config_dataclass
class DataConfig:
    name: str = "fashion_mnist"
    """Registered dataset (``archlab data ls``)."""
    root: Optional[str] = None
    """Directory holding the files; None searches $ARCHLAB_DATA, the user cache, system copies."""
    download: bool = True
    """Download from the official source (checksum-verified) when no local copy is found."""
    options: dict[str, Any] = field(default_factory=dict)
    """Dataset-specific builder options, e.g. ``{image_size: 64}`` for imagefolder."""
    val_fraction: Annotated[float, Field(ge=0.0, lt=1.0)] = 0.0
    """Fraction of every training class held out for validation; 0 validates on the test split."""
    split_seed: int = 0
    subset_fraction: Optional[Annotated[float, Field(gt=0.0, le=1.0)]] = None
    """Class-balanced fraction of the training split to keep (data-efficiency studies)."""
    subset_per_class: Optional[Annotated[int, Field(gt=0)]] = None
    batch_size: Annotated[int, Field(gt=0)] = 256
    eval_batch_size: Annotated[int, Field(gt=0)] = 1024
    augment: list[Any] = field(default_factory=list)
    """Training-only batched augmentations: names or {name: ..., option: ...} mappings."""
    num_workers: Annotated[int, Field(ge=0)] = 2
    """Loader processes for on-disk datasets; in-memory datasets need none."""

    @field_validator("name")
    @classmethod
    def _registered(cls, name: str) -> str:
        from archlab.data import DATASETS

        return known_name(DATASETS, name)

    @field_validator("augment")
    @classmethod
    def _buildable(cls, augment: list[Any]) -> list[Any]:
        from archlab.data.augment import build_augment

        for spec in augment:
            build_augment(spec)
        return augment

    def __post_init__(self) -> None:
        if self.subset_fraction is not None and self.subset_per_class is not None:
            raise ValueError("give subset_fraction or subset_per_class, not both")
