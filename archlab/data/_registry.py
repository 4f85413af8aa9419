"""The dataset registry and the types every dataset builder returns.

A builder is ``fn(root: Path | None, download: bool, **options) -> DatasetBundle``. Datasets
that fit in memory return :class:`ArraySplit` s (one uint8 tensor per split, the fast path);
large on-disk sets (``imagefolder``) return a ``torch.utils.data.Dataset`` yielding
``(uint8 tensor (C, H, W), int label)``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Union

import torch
from torch.utils.data import Dataset

from archlab.registry import Registry


@dataclass
class ArraySplit:
    images: torch.Tensor  # uint8 (N, C, H, W)
    labels: torch.Tensor  # int64 (N,)

    def __post_init__(self) -> None:
        if self.images.dtype != torch.uint8 or self.images.ndim != 4:
            raise ValueError(f"images must be uint8 (N, C, H, W), got {self.images.dtype} "
                             f"{tuple(self.images.shape)}")
        if self.labels.shape != (self.images.shape[0],):
            raise ValueError(f"labels shape {tuple(self.labels.shape)} does not match "
                             f"{self.images.shape[0]} images")
        self.labels = self.labels.long()

    def __len__(self) -> int:
        return self.images.shape[0]

    def subset(self, index: torch.Tensor) -> "ArraySplit":
        return ArraySplit(self.images[index], self.labels[index])


Split = Union[ArraySplit, Dataset]


@dataclass
class DatasetBundle:
    train: Split
    test: Split
    classes: list[str]
    in_chans: int
    img_size: tuple[int, int]  # (H, W)
    mean: tuple[float, ...]  # per channel, in [0, 1] pixel units (from the training split)
    std: tuple[float, ...]
    source: str = ""  # where it was loaded from, recorded in the run's meta.json
    extra: dict = field(default_factory=dict)

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    def model_kwargs(self) -> dict[str, int]:
        """The constructor arguments the data fixes for a model of it."""
        return {"num_classes": self.num_classes, "in_chans": self.in_chans}

    def describe(self) -> dict:
        """Plain data about the dataset that tools need without loading it (saved with runs and
        checkpoints): class names, input size and the normalization the model saw."""
        return {"kind": "images", "classes": list(self.classes),
                "input_size": [self.in_chans, *self.img_size],
                "mean": list(self.mean), "std": list(self.std)}


DatasetBuilder = Callable[..., DatasetBundle]
DATASETS: Registry[DatasetBuilder] = Registry("dataset")


def register_dataset(name: str, **meta) -> Callable[[DatasetBuilder], DatasetBuilder]:
    return DATASETS.register(name, **meta)


def dataset_options(name: str) -> set[str]:
    """The ``data.options`` a registered dataset's builder takes: all but root, download and
    val_fraction (builders that split contiguously, e.g. text, get ``data.val_fraction``
    from the pipeline)."""
    import inspect

    params = inspect.signature(DATASETS.get(name)).parameters
    return set(params) - {"root", "download", "val_fraction"}


def check_dataset_options(name: str, options: dict) -> None:
    unknown = sorted(set(options) - dataset_options(name))
    if unknown:
        raise ValueError(f"data.options: dataset '{name}' has no option(s) {unknown}; valid "
                         f"options: {sorted(dataset_options(name)) or 'none'}")


def channel_stats(images: torch.Tensor) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Per-channel mean and std of uint8 (N, C, H, W) images in [0, 1] units, in float64."""
    x = images.to(torch.float64).div_(255.0)
    dims = (0, 2, 3)
    return tuple(x.mean(dims).tolist()), tuple(x.std(dims).tolist())


def as_path(root: str | Path | None) -> Path | None:
    return None if root is None else Path(root).expanduser()
