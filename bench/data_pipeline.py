"""Augmented images/s: archlab's in-memory batched path vs DataLoader + per-sample transforms.

Both produce the same augmentation (random flip + random crop with 2-px zero padding, i.e.
translation) and normalization on real Fashion-MNIST training images; the baseline is the usual
torchvision-style pipeline written with per-sample tensor ops (torchvision itself is not
installable beside the CPU torch wheel), with the DataLoader's default collation.

    python bench/data_pipeline.py [--batches 100] [--workers 0]
"""

from __future__ import annotations

import argparse
import time

import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, Dataset

from _common import emit
from archlab.data import load_dataset
from archlab.data.augment import HorizontalFlip, RandomCrop
from archlab.data.config import DataConfig
from archlab.data.loader import InMemoryLoader, Normalize


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
    args = ap.parse_args()
    bundle = load_dataset(DataConfig(name="fashion_mnist"))
    train = bundle.train
    device = torch.device("cpu")
    ours = InMemoryLoader(train, args.batch_size, normalize=Normalize(bundle.mean, bundle.std, device),
                          device=device, augment=[HorizontalFlip(), RandomCrop(2)], shuffle=True,
                          drop_last=True)
    base = DataLoader(PerSampleDataset(train.images, train.labels, bundle.mean[0], bundle.std[0]),
                      batch_size=args.batch_size, shuffle=True, num_workers=args.workers,
                      drop_last=True)
    ours_ips = throughput(ours, args.batches)
    base_ips = throughput(base, args.batches)
    emit({"benchmark": "data_pipeline", "augmentation": "flip + random_crop(padding=2)",
          "batch_size": args.batch_size, "batches": args.batches,
          "baseline_workers": args.workers,
          "in_memory_batched_images_per_s": round(ours_ips),
          "dataloader_per_sample_images_per_s": round(base_ips),
          "ratio": round(ours_ips / base_ips, 2)})


if __name__ == "__main__":
    main()
