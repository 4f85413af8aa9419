"""Your own images in class folders, read lazily from disk with PIL.

Layout::

    root/train/<class>/*.png|jpg|jpeg|bmp|gif|webp|tif|tiff
    root/test/<class>/...            (or root/val/ when there is no test/)

Class names are the sub-directory names, sorted alphabetically (label = position); test must
have exactly the training classes. Hidden entries (``.name``) and files with other extensions
are ignored; a class directory without images is an error.

Options: ``image_size`` resizes every image to a square of that side (bilinear); with ``None``
all images must already share one size (checked up front from the file headers). ``mode`` is
``"RGB"`` (3 channels) or ``"L"`` (1 channel). Mean/std come from up to ``stats_images``
training images drawn without replacement with a fixed seed (``STATS_SEED``), accumulated in
float64 over every pixel: an estimate, exact when the training set is that small.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch.utils.data import Dataset

from archlab.data._registry import DatasetBundle, as_path, register_dataset

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff")
MODES = {"RGB": 3, "L": 1}
STATS_SEED = 0


class ImageFolderDataset(Dataset):
    """``(uint8 tensor (C, H, W), int label)`` per image file."""

    def __init__(self, samples: list[tuple[Path, int]], classes: list[str], mode: str = "RGB",
                 image_size: int | None = None) -> None:
        self.samples = samples
        self.classes = classes
        self.mode = mode
        self.image_size = image_size

    def __len__(self) -> int:
        return len(self.samples)

    @property
    def labels(self) -> torch.Tensor:
        """int64 (N,) labels without opening any image (for stratified splits, class counts)."""
        return torch.tensor([label for _, label in self.samples], dtype=torch.int64)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        path, label = self.samples[index]
        with Image.open(path) as img:
            img = img.convert(self.mode)
            if self.image_size is not None:
                img = img.resize((self.image_size, self.image_size), Image.Resampling.BILINEAR)
            x = torch.from_numpy(np.array(img, dtype=np.uint8))
        # (H, W) -> (1, H, W) for "L"; (H, W, C) -> (C, H, W) for "RGB"
        x = x.unsqueeze(0) if x.ndim == 2 else x.permute(2, 0, 1).contiguous()
        return x, label


def _class_dirs(split_dir: Path) -> list[Path]:
    return sorted((d for d in split_dir.iterdir() if d.is_dir() and not d.name.startswith(".")),
                  key=lambda d: d.name)


def _images_in(class_dir: Path) -> list[Path]:
    return sorted(p for p in class_dir.iterdir() if p.is_file() and not p.name.startswith(".")
                  and p.suffix.lower() in IMAGE_EXTENSIONS)


def scan_split(split_dir: Path) -> tuple[list[tuple[Path, int]], list[str]]:
    """``(samples, classes)`` of one split directory, labels by sorted class name."""
    class_dirs = _class_dirs(split_dir)
    if not class_dirs:
        raise FileNotFoundError(f"{split_dir} has no class sub-directories "
                                f"(expected {split_dir}/<class>/<image files>)")
    samples = []
    for label, class_dir in enumerate(class_dirs):
        files = _images_in(class_dir)
        if not files:
            raise FileNotFoundError(f"class directory {class_dir} holds no images "
                                    f"(extensions {', '.join(IMAGE_EXTENSIONS)})")
        samples += [(f, label) for f in files]
    return samples, [d.name for d in class_dirs]


def _common_size(samples: list[tuple[Path, int]]) -> tuple[int, int]:
    """(H, W) shared by every image, read from headers only; an error names two that differ."""
    first, size = None, None
    for path, _ in samples:
        with Image.open(path) as img:
            if size is None:
                first, size = path, img.size
            elif img.size != size:
                raise ValueError(f"images differ in size: {first} is {size[0]}x{size[1]} but "
                                 f"{path} is {img.size[0]}x{img.size[1]} (WxH); pass image_size=N "
                                 "to resize them all to NxN")
    return size[1], size[0]


def sampled_stats(dataset: ImageFolderDataset, max_images: int,
                  seed: int = STATS_SEED) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Per-channel mean/std in [0, 1] units over up to ``max_images`` randomly chosen images."""
    n = min(max_images, len(dataset))
    index = np.random.default_rng(seed).choice(len(dataset), size=n, replace=False)
    total = total_sq = None
    count = 0
    for i in index:
        x = dataset[int(i)][0].to(torch.float64).div_(255.0).flatten(1)  # (C, H*W)
        s, sq = x.sum(1), x.square().sum(1)
        total, total_sq = (s, sq) if total is None else (total + s, total_sq + sq)
        count += x.shape[1]
    mean = total / count
    var = (total_sq - count * mean.square()) / max(count - 1, 1)  # unbiased, like channel_stats
    return tuple(mean.tolist()), tuple(var.clamp_min(0).sqrt().tolist())


@register_dataset("imagefolder", description="your images in root/{train,test}/<class>/ "
                  "(read from disk with PIL)", downloadable=False, synthetic=False,
                  location="the root directory you pass")
def imagefolder(root: Path | None = None, download: bool = True, image_size: int | None = None,
                mode: str = "RGB", stats_images: int = 512) -> DatasetBundle:
    """Class-folder dataset under ``root`` (required); ``download`` is ignored (nothing to fetch)."""
    root = as_path(root)
    if root is None:
        raise ValueError("imagefolder needs root=DIR containing train/<class>/ and test/<class>/")
    if mode not in MODES:
        raise ValueError(f"imagefolder: mode must be one of {', '.join(MODES)}, got {mode!r}")
    if image_size is not None and (not isinstance(image_size, int) or image_size < 1):
        raise ValueError(f"imagefolder: image_size must be a positive int or None, got {image_size!r}")
    if stats_images < 1:
        raise ValueError(f"imagefolder: stats_images must be >= 1, got {stats_images}")
    train_dir = root / "train"
    test_dir = next((root / d for d in ("test", "val") if (root / d).is_dir()), None)
    if not train_dir.is_dir() or test_dir is None:
        raise FileNotFoundError(f"imagefolder: {root} must contain train/ and test/ (or val/) "
                                "directories of class sub-directories")
    train_samples, classes = scan_split(train_dir)
    test_samples, test_classes = scan_split(test_dir)
    if test_classes != classes:
        only_train = sorted(set(classes) - set(test_classes))
        only_test = sorted(set(test_classes) - set(classes))
        raise ValueError(f"imagefolder: {test_dir} classes differ from {train_dir}: "
                         f"only in train {only_train}, only in {test_dir.name} {only_test}")
    if image_size is None:
        size = _common_size(train_samples + test_samples)
    else:
        size = (image_size, image_size)
    train = ImageFolderDataset(train_samples, classes, mode, image_size)
    test = ImageFolderDataset(test_samples, classes, mode, image_size)
    mean, std = sampled_stats(train, stats_images)
    return DatasetBundle(train=train, test=test, classes=classes, in_chans=MODES[mode],
                         img_size=size, mean=mean, std=std, source=str(root),
                         extra={"stats_images": min(stats_images, len(train))})
