"""Augmented images/s: archlab's in-memory batched path vs DataLoader + per-sample transforms.

Both produce the same augmentation (random flip + random crop with 2-px zero padding, i.e.
translation) and normalization on real Fashion-MNIST training images. The baseline is the usual
torchvision pipeline — the dataset hands out a PIL image, then RandomCrop(28, padding=2),
RandomHorizontalFlip, ToTensor, Normalize run per sample — re-implemented here with the same PIL
calls torchvision makes (torchvision itself does not install beside the CPU torch wheel), plus a
second baseline doing the per-sample work with tensor ops instead of PIL.

    python bench/data_pipeline.py [--batches 100] [--workers 0] [--rounds 4]
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch
from PIL import Image, ImageOps
import torch.nn.functional as F
from torch.utils.data import DataLoader, Dataset

from _common import emit
from archlab.data import load_dataset
from archlab.data.augment import HorizontalFlip, RandomCrop
from archlab.data.config import DataConfig
from archlab.data.loader import InMemoryLoader, Normalize


class PILPipelineDataset(Dataset):
    """torchvision's FashionMNIST + transforms: PIL image in, normalized tensor out."""

    def __init__(self, images, labels, mean, std, padding=2):
        self.images, self.labels, self.padding = images.numpy(), labels, padding
        self.mean, self.std = mean, std

    def __len__(self):
        return len(self.labels)

    def __getitem__(self, i):
        img = Image.fromarray(self.images[i, 0], mode="L")
        p = self.padding  # RandomCrop(28, padding=2): pad with 0, crop a random 28x28 window
        img = ImageOps.expand(img, border=p, fill=0)
        top, left = torch.randint(0, 2 * p + 1, (2,)).tolist()
        img = img.crop((left, top, left + 28, top + 28))
        if torch.rand(()) < 0.5:  # RandomHorizontalFlip
            img = img.transpose(Image.FLIP_LEFT_RIGHT)
        x = torch.from_numpy(np.asarray(img, dtype=np.uint8).copy())[None].float().div(255)
        return (x - self.mean) / self.std, self.labels[i]  # ToTensor + Normalize


class PerSampleDataset(Dataset):
    def __init__(self, images, labels, mean, std, padding=2):
        self.images, self.labels, self.padding = images, labels, padding
        self.mean, self.std = mean, std

    def __len__(self):
        return len(self.labels)

    def __getitem__(self, i):
        x = self.images[i].float().div(255)  # ToTensor
        if torch.rand(()) < 0.5:  # RandomHorizontalFlip
            x = x.flip(-1)
        p = self.padding  # RandomCrop(28, padding=2)
        x = F.pad(x, (p, p, p, p))
        top, left = torch.randint(0, 2 * p + 1, (2,)).tolist()
        x = x[:, top:top + 28, left:left + 28]
        return (x - self.mean) / self.std, self.labels[i]  # Normalize


def throughput(loader, batches: int) -> float:
    it = iter(loader)
    next(it)  # warm-up (and worker start-up)
    n, start = 0, time.perf_counter()
    for _ in range(batches):
        x, _ = next(it)
        n += x.shape[0]
    return n / (time.perf_counter() - start)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--batches", type=int, default=100)
    ap.add_argument("--batch-size", type=int, default=256)
    ap.add_argument("--workers", type=int, default=0)
    ap.add_argument("--rounds", type=int, default=4)
    args = ap.parse_args()
    bundle = load_dataset(DataConfig(name="fashion_mnist"))
    train = bundle.train
    device = torch.device("cpu")
    ours = InMemoryLoader(train, args.batch_size, normalize=Normalize(bundle.mean, bundle.std, device),
                          device=device, augment=[HorizontalFlip(), RandomCrop(2)], shuffle=True,
                          drop_last=True)
    def loader(dataset_cls):
        return DataLoader(dataset_cls(train.images, train.labels, bundle.mean[0], bundle.std[0]),
                          batch_size=args.batch_size, shuffle=True, num_workers=args.workers,
                          drop_last=True)

    pipelines = {"ours": lambda: ours, "pil": lambda: loader(PILPipelineDataset),
                 "tensor": lambda: loader(PerSampleDataset)}
    rounds: dict[str, list[float]] = {k: [] for k in pipelines}
    for r in range(args.rounds):  # interleaved rounds, best of each: load drift hits all alike
        for name in (list(pipelines) if r % 2 == 0 else list(pipelines)[::-1]):
            rounds[name].append(throughput(pipelines[name](), args.batches))
    ours_ips, pil_ips, tensor_ips = (max(rounds[k]) for k in ("ours", "pil", "tensor"))
    emit({"benchmark": "data_pipeline", "augmentation": "flip + random_crop(padding=2)",
          "batch_size": args.batch_size, "batches": args.batches,
          "baseline_workers": args.workers,
          "in_memory_batched_images_per_s": round(ours_ips),
          "dataloader_pil_transforms_images_per_s": round(pil_ips),
          "dataloader_per_sample_tensor_ops_images_per_s": round(tensor_ips),
          "ratio_vs_pil_transforms": round(ours_ips / pil_ips, 2),
          "ratio_vs_per_sample_tensor_ops": round(ours_ips / tensor_ips, 2),
          "all_rounds": {k: [round(v) for v in vs] for k, vs in rounds.items()}})


if __name__ == "__main__":
    main()
