"""MNIST and Fashion-MNIST from their official IDX files (60000 train / 10000 test, 28x28 gray).

Files: ``train-images-idx3-ubyte``, ``train-labels-idx1-ubyte``, ``t10k-images-idx3-ubyte``,
``t10k-labels-idx1-ubyte``, each plain or ``.gz``. Where they are looked for and how they are
downloaded is described in :mod:`archlab.data.cache` and :mod:`archlab.data.download`::

    bundle = DATASETS.get("fashion_mnist")()          # finds the Debian copy, cache, or downloads
    bundle = DATASETS.get("mnist")(root="~/data/mnist", download=False)
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from archlab.data._registry import ArraySplit, DatasetBundle, as_path, channel_stats, register_dataset
from archlab.data.download import obtain
from archlab.data.idx import CorruptDataError, read_idx

FASHION_MNIST_CLASSES = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
                         "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"]
MNIST_CLASSES = [str(d) for d in range(10)]

SPLIT_PREFIX = {"train": "train", "test": "t10k"}


def idx_path(directory: Path, stem: str) -> Path:
    """``stem.gz`` if present, else the uncompressed ``stem``."""
    gz = directory / f"{stem}.gz"
    return gz if gz.exists() else directory / stem


def load_idx_split(images_path: Path, labels_path: Path, num_classes: int) -> ArraySplit:
    """Parse one image/label IDX pair, checking shapes, dtypes, counts and label range."""
    images, labels = read_idx(images_path), read_idx(labels_path)
    if images.dtype != np.uint8 or images.ndim != 3:
        raise CorruptDataError(f"{images_path}: expected uint8 images (N, H, W), "
                               f"got {images.dtype} {images.shape}")
    if labels.dtype != np.uint8 or labels.ndim != 1:
        raise CorruptDataError(f"{labels_path}: expected uint8 labels (N,), "
                               f"got {labels.dtype} {labels.shape}")
    if len(images) != len(labels):
        raise CorruptDataError(f"{images_path} has {len(images)} images but {labels_path} has "
                               f"{len(labels)} labels")
    if labels.size and labels.max() >= num_classes:
        raise CorruptDataError(f"{labels_path}: label {int(labels.max())} out of range "
                               f"0..{num_classes - 1}")
    # (N, H, W) -> (N, 1, H, W)
    return ArraySplit(torch.from_numpy(images).unsqueeze(1), torch.from_numpy(labels).long())


def load_idx_dataset(directory: Path, classes: list[str]) -> DatasetBundle:
    """Both splits of an MNIST-layout directory as a :class:`DatasetBundle`."""
    splits = {}
    for split, prefix in SPLIT_PREFIX.items():
        splits[split] = load_idx_split(idx_path(directory, f"{prefix}-images-idx3-ubyte"),
                                       idx_path(directory, f"{prefix}-labels-idx1-ubyte"),
                                       len(classes))
    train, test = splits["train"], splits["test"]
    if train.images.shape[1:] != test.images.shape[1:]:
        raise CorruptDataError(f"{directory}: train images are {tuple(train.images.shape[2:])} "
                               f"but test images are {tuple(test.images.shape[2:])}")
    mean, std = channel_stats(train.images)
    return DatasetBundle(train=train, test=test, classes=list(classes), in_chans=1,
                         img_size=tuple(train.images.shape[2:]), mean=mean, std=std,
                         source=str(directory))


@register_dataset("fashion_mnist", description="Zalando Fashion-MNIST: 10 clothing classes, "
                  "28x28 gray, 60k/10k", downloadable=True, synthetic=False)
def fashion_mnist(root: Path | None = None, download: bool = True) -> DatasetBundle:
    """Fashion-MNIST (Xiao et al. 2017); also found in Debian's ``dataset-fashion-mnist``."""
    return load_idx_dataset(obtain("fashion_mnist", as_path(root), download), FASHION_MNIST_CLASSES)


@register_dataset("mnist", description="MNIST handwritten digits: 10 classes, 28x28 gray, 60k/10k",
                  downloadable=True, synthetic=False)
def mnist(root: Path | None = None, download: bool = True) -> DatasetBundle:
    """MNIST (LeCun et al. 1998); class names are the digits ``"0"`` .. ``"9"``."""
    return load_idx_dataset(obtain("mnist", as_path(root), download), MNIST_CLASSES)
