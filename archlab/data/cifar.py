"""CIFAR-10 and CIFAR-100 from the official "python version" (Krizhevsky 2009).

Accepted local forms (in the searched directory, see :mod:`archlab.data.cache`): the tarball
(``cifar-10-python.tar.gz`` / ``cifar-100-python.tar.gz``, read in place, never extracted), the
directory it extracts to (``cifar-10-batches-py/`` / ``cifar-100-python/``), or a directory that
*is* that extracted directory. When both the directory and the tarball are present the
directory is read (no decompression).

Each batch is a pickled dict (written by Python 2) with ``data``: uint8 (N, 3072), a row being
the 1024 red, then green, then blue values of a 32x32 image in row-major order, and
``labels`` (CIFAR-10) or ``fine_labels`` + ``coarse_labels`` (CIFAR-100). Pickle can run
arbitrary code, so batches are read by :class:`BatchUnpickler`, which resolves only the globals
numpy needs to rebuild an array and refuses everything else.

CIFAR-100's superclass labels are in ``bundle.extra["coarse_labels"]`` (``{"train": Tensor,
"test": Tensor}``) with their names in ``bundle.extra["coarse_classes"]``.
"""

from __future__ import annotations

import io
import pickle
import tarfile
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from archlab.data._registry import ArraySplit, DatasetBundle, as_path, channel_stats, register_dataset
from archlab.data.download import obtain
from archlab.data.idx import CorruptDataError

try:  # numpy >= 2 moved the implementation; old pickles still name numpy.core
    from numpy._core.multiarray import _reconstruct
except ImportError:  # pragma: no cover - numpy 1.x
    from numpy.core.multiarray import _reconstruct

# The only globals an official batch references: how numpy pickles an ndarray.
ALLOWED_GLOBALS: dict[tuple[str, str], object] = {
    ("numpy.core.multiarray", "_reconstruct"): _reconstruct,
    ("numpy._core.multiarray", "_reconstruct"): _reconstruct,
    ("numpy", "ndarray"): np.ndarray,
    ("numpy", "dtype"): np.dtype,
}

IMG_SHAPE = (3, 32, 32)


class BatchUnpickler(pickle.Unpickler):
    """Unpickler that refuses every global except numpy's array reconstruction."""

    def __init__(self, file: io.BytesIO, name: str) -> None:
        # latin1 turns Python 2 str into str and is what numpy needs for its raw array bytes.
        super().__init__(file, encoding="latin1")
        self.name = name

    def find_class(self, module: str, name: str) -> object:
        try:
            return ALLOWED_GLOBALS[(module, name)]
        except KeyError:
            raise pickle.UnpicklingError(
                f"{self.name}: refusing to load global '{module}.{name}' (a CIFAR batch may only "
                "reference numpy's array reconstruction); the file is not an official batch"
            ) from None


def load_batch(data: bytes, name: str) -> dict:
    """Safely unpickle one batch; dict keys come back as ``str`` whatever the pickle used."""
    try:
        obj = BatchUnpickler(io.BytesIO(data), name).load()
    except pickle.UnpicklingError as e:
        raise CorruptDataError(str(e) if str(e).startswith(name) else f"{name}: {e}") from e
    except (EOFError, ValueError, TypeError, AttributeError, IndexError, KeyError) as e:
        raise CorruptDataError(f"{name}: not a readable CIFAR batch ({type(e).__name__}: {e})") from e
    if not isinstance(obj, dict):
        raise CorruptDataError(f"{name}: expected a pickled dict, got {type(obj).__name__}")
    return {(k.decode("latin1") if isinstance(k, bytes) else k): v for k, v in obj.items()}


def _names(value: object, name: str, key: str) -> list[str]:
    if not isinstance(value, (list, tuple)):
        raise CorruptDataError(f"{name}: '{key}' should be a list of class names")
    return [v.decode("latin1") if isinstance(v, bytes) else str(v) for v in value]


def _require(batch: dict, key: str, name: str) -> object:
    if key not in batch:
        raise CorruptDataError(f"{name}: missing key '{key}' (has {', '.join(map(str, batch))})")
    return batch[key]


def _images(batch: dict, name: str) -> np.ndarray:
    data = _require(batch, "data", name)
    if not isinstance(data, np.ndarray) or data.dtype != np.uint8 or data.ndim != 2 \
            or data.shape[1] != int(np.prod(IMG_SHAPE)):
        shape = getattr(data, "shape", None)
        raise CorruptDataError(f"{name}: 'data' must be uint8 (N, 3072), got "
                               f"{getattr(data, 'dtype', type(data).__name__)} {shape}")
    return data.reshape(-1, *IMG_SHAPE)  # (N, 3072) -> (N, 3, 32, 32): channel planes, row-major


def _labels(batch: dict, key: str, n: int, num_classes: int, name: str) -> np.ndarray:
    labels = np.asarray(_require(batch, key, name))
    if labels.shape != (n,) or not np.issubdtype(labels.dtype, np.integer):
        raise CorruptDataError(f"{name}: '{key}' must be {n} integers (one per image), "
                               f"got {labels.dtype} {labels.shape}")
    if n and (labels.min() < 0 or labels.max() >= num_classes):
        raise CorruptDataError(f"{name}: '{key}' has values outside 0..{num_classes - 1} "
                               f"(min {labels.min()}, max {labels.max()})")
    return labels.astype(np.int64)


@dataclass(frozen=True)
class CifarLayout:
    archive: str  # official tarball name
    folder: str  # directory the tarball extracts to
    train: tuple[str, ...]
    test: tuple[str, ...]
    meta: str
    class_key: str  # in the meta file
    label_key: str  # in each batch
    coarse: tuple[str, str] | None = None  # (label key, class-name key) of CIFAR-100 superclasses


CIFAR10 = CifarLayout("cifar-10-python.tar.gz", "cifar-10-batches-py",
                      train=tuple(f"data_batch_{i}" for i in range(1, 6)), test=("test_batch",),
                      meta="batches.meta", class_key="label_names", label_key="labels")
CIFAR100 = CifarLayout("cifar-100-python.tar.gz", "cifar-100-python", train=("train",),
                       test=("test",), meta="meta", class_key="fine_label_names",
                       label_key="fine_labels", coarse=("coarse_labels", "coarse_label_names"))


def _reader(directory: Path, layout: CifarLayout) -> tuple[Callable[[str], tuple[bytes, str]], Path]:
    """A function member -> (bytes, name for errors), reading the extracted dir or the tarball."""
    for extracted in (directory / layout.folder, directory):
        if (extracted / layout.meta).is_file():
            return (lambda m, d=extracted: ((d / m).read_bytes(), str(d / m))), extracted
    archive = directory / layout.archive
    if not archive.is_file():
        raise FileNotFoundError(f"{directory} holds neither {layout.archive} nor {layout.folder}/")
    wanted = {f"{layout.folder}/{m}": m for m in (*layout.train, *layout.test, layout.meta)}
    contents: dict[str, bytes] = {}
    try:
        # One sequential pass (a gzip stream is slow to seek); members are read by exact name
        # into memory, nothing is written to disk.
        with tarfile.open(archive, "r:gz") as tar:
            for member in tar:
                if member.name in wanted and member.isfile():
                    contents[wanted[member.name]] = tar.extractfile(member).read()
    except (tarfile.TarError, OSError, EOFError, zlib.error) as e:
        raise CorruptDataError(f"{archive}: corrupt or truncated archive ({e})") from e
    missing = [name for name, m in wanted.items() if m not in contents]
    if missing:
        raise CorruptDataError(f"{archive}: missing member(s) {', '.join(missing)}")
    return (lambda m: (contents[m], f"{archive}:{layout.folder}/{m}")), archive


def load_cifar(directory: Path, layout: CifarLayout) -> DatasetBundle:
    """Parse every batch of a CIFAR directory/tarball into a :class:`DatasetBundle`."""
    read, source = _reader(directory, layout)
    meta_bytes, meta_name = read(layout.meta)
    meta = load_batch(meta_bytes, meta_name)
    classes = _names(_require(meta, layout.class_key, meta_name), meta_name, layout.class_key)
    coarse_classes = (_names(_require(meta, layout.coarse[1], meta_name), meta_name,
                             layout.coarse[1]) if layout.coarse else [])
    splits, coarse = {}, {}
    for split, members in (("train", layout.train), ("test", layout.test)):
        images, labels, coarse_labels = [], [], []
        for member in members:
            batch_bytes, name = read(member)
            batch = load_batch(batch_bytes, name)
            x = _images(batch, name)
            images.append(x)
            labels.append(_labels(batch, layout.label_key, len(x), len(classes), name))
            if layout.coarse:
                coarse_labels.append(_labels(batch, layout.coarse[0], len(x),
                                             len(coarse_classes), name))
        splits[split] = ArraySplit(torch.from_numpy(np.concatenate(images)),
                                   torch.from_numpy(np.concatenate(labels)))
        if layout.coarse:
            coarse[split] = torch.from_numpy(np.concatenate(coarse_labels))
    mean, std = channel_stats(splits["train"].images)
    extra = {"coarse_labels": coarse, "coarse_classes": coarse_classes} if layout.coarse else {}
    return DatasetBundle(train=splits["train"], test=splits["test"], classes=classes, in_chans=3,
                         img_size=IMG_SHAPE[1:], mean=mean, std=std, source=str(source),
                         extra=extra)


@register_dataset("cifar10", description="CIFAR-10: 10 classes of 32x32 color images, 50k/10k",
                  downloadable=True, synthetic=False)
def cifar10(root: Path | None = None, download: bool = True) -> DatasetBundle:
    """CIFAR-10 from ``cifar-10-python.tar.gz`` (or its extracted ``cifar-10-batches-py/``)."""
    return load_cifar(obtain("cifar10", as_path(root), download), CIFAR10)


@register_dataset("cifar100", description="CIFAR-100: 100 classes (20 superclasses) of 32x32 "
                  "color images, 50k/10k", downloadable=True, synthetic=False)
def cifar100(root: Path | None = None, download: bool = True) -> DatasetBundle:
    """CIFAR-100 fine labels; coarse (superclass) labels in ``bundle.extra``."""
    return load_cifar(obtain("cifar100", as_path(root), download), CIFAR100)

