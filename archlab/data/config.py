"""DataConfig: which dataset, how it is split and batched, which augmentations."""

from __future__ import annotations

import dataclasses
from dataclasses import field
from typing import Annotated, Any, Literal, Optional

from pydantic import Field, field_validator, model_validator
from pydantic_core import ArgsKwargs

from archlab.config import config_dataclass, known_name
from archlab.data.pk_sampler import PKSamplerConfig


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
    """Fraction of every training class held out for validation (for text: the contiguous
    piece just before the test split); 0 validates on the test split."""
    split_seed: int = 0
    subset_fraction: Optional[Annotated[float, Field(gt=0.0, le=1.0)]] = None
    """Class-balanced fraction of the training split to keep (data-efficiency studies)."""
    subset_per_class: Optional[Annotated[int, Field(gt=0)]] = None
    test_subset_fraction: Optional[Annotated[float, Field(gt=0.0, le=1.0)]] = None
    """Class-balanced fraction of the test split to score (seeded by ``split_seed``). For smoke
    runs only: scoring the full test set can cost more than a short training run, but numbers
    on a subset have wider error bars and are not comparable to the published ones."""
    batch_size: Annotated[int, Field(gt=0)] = 256
    """Training batch per process; with ``pk_sampler`` it is P·K (filled in when not given)."""
    eval_batch_size: Annotated[int, Field(gt=0)] = 1024
    augment: list[Any] = field(default_factory=list)
    """Training-only batched augmentations: names or {name: ..., option: ...} mappings."""
    num_workers: Annotated[int, Field(ge=0)] = 2
    """Loader processes for on-disk datasets; in-memory datasets need none."""
    pk_sampler: Optional[PKSamplerConfig] = None
    """Training batches of P classes × K examples for batch-hard triplet mining, e.g.
    {classes_per_batch: 8, samples_per_class: 8}; None shuffles (see archlab.data.pk_sampler)."""
    views: Literal[1, 2] = 1
    """Independently augmented copies of each training image per batch: 2 for contrastive
    self-supervision (task metric_learning with loss nt_xent); needs ``augment``."""

    @model_validator(mode="before")
    @classmethod
    def _pk_batch_size(cls, data: Any) -> Any:
        """With a P×K sampler and no batch_size given, the batch size is P·K."""
        if isinstance(data, ArgsKwargs):
            names = [f.name for f in dataclasses.fields(cls)]
            data = {**dict(zip(names, data.args)), **(data.kwargs or {})}
        if isinstance(data, dict) and data.get("pk_sampler") is not None \
                and "batch_size" not in data:
            pk = data["pk_sampler"]
            if isinstance(pk, dict):
                p, k = pk.get("classes_per_batch"), pk.get("samples_per_class")
                if isinstance(p, int) and isinstance(k, int):  # else the field reports it
                    data = {**data, "batch_size": p * k}
            elif isinstance(pk, PKSamplerConfig):
                data = {**data, "batch_size": pk.batch_size}
        return data

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
        from archlab.data._registry import check_dataset_options

        # At load time, so a typo in an option fails before any data is read or run is made.
        check_dataset_options(self.name, self.options)
        if self.subset_fraction is not None and self.subset_per_class is not None:
            raise ValueError("give subset_fraction or subset_per_class, not both")
        pk = self.pk_sampler
        if pk is not None and self.batch_size != pk.batch_size:
            raise ValueError(f"data.batch_size={self.batch_size} but data.pk_sampler makes "
                             f"batches of classes_per_batch × samples_per_class = "
                             f"{pk.classes_per_batch} × {pk.samples_per_class} = "
                             f"{pk.batch_size}; set batch_size to {pk.batch_size} or leave it "
                             f"out")
        if self.views == 2 and not self.augment:
            raise ValueError("data.views=2 needs data.augment: without augmentation both views "
                             "of an image are identical")
