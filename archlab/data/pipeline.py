"""From a DataConfig to the Trainer's loaders: build, split, subset, batch."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from archlab.data._registry import (DATASETS, ArraySplit, DatasetBundle, Split, as_path,
                                    check_dataset_options)
from archlab.data.augment import build_augment
from archlab.data.config import DataConfig
from archlab.data.loader import InMemoryLoader, Normalize, StreamingLoader
from archlab.data.pk_sampler import PKBatchSampler
from archlab.data.split import balanced_subset, labels_of, train_val_split


@dataclass
class DataLoaders:
    train: InMemoryLoader | StreamingLoader
    val: InMemoryLoader | StreamingLoader
    test: InMemoryLoader | StreamingLoader
    bundle: Any  # DatasetBundle, or a TextCorpus
    val_is_test: bool  # no held-out split: validation metrics are test metrics


def load_dataset(cfg: DataConfig) -> DatasetBundle:
    """The dataset's splits. Builders that split contiguously (text) take ``val_fraction``
    themselves; for the others the validation split is drawn per class by :func:`split_train`."""
    import inspect

    builder = DATASETS.get(cfg.name)
    check_dataset_options(cfg.name, cfg.options)
    extra = ({"val_fraction": cfg.val_fraction}
             if "val_fraction" in inspect.signature(builder).parameters else {})
    return builder(root=as_path(cfg.root), download=cfg.download, **extra, **cfg.options)


def split_train(cfg: DataConfig, train: Split) -> tuple[Split, Split | None]:
    val = None
    if cfg.val_fraction > 0:
        train, val = train_val_split(train, cfg.val_fraction, cfg.split_seed)
    if cfg.subset_fraction is not None or cfg.subset_per_class is not None:
        train = balanced_subset(train, fraction=cfg.subset_fraction,
                                per_class=cfg.subset_per_class, seed=cfg.split_seed)
    return train, val


def build_loaders(cfg: DataConfig, *, device: torch.device, seed: int, channels_last: bool = False,
                  rank: int = 0, world_size: int = 1,
                  bundle: DatasetBundle | None = None) -> DataLoaders:
    bundle = bundle if bundle is not None else load_dataset(cfg)
    if not isinstance(bundle, DatasetBundle):  # a text corpus: blocks of tokens
        from archlab.data.text_loader import build_text_loaders

        return build_text_loaders(cfg, bundle, device=device, seed=seed, rank=rank,
                                  world_size=world_size)
    train, val = split_train(cfg, bundle.train)
    test = bundle.test
    if cfg.test_subset_fraction is not None and cfg.test_subset_fraction < 1.0:
        test = balanced_subset(test, fraction=cfg.test_subset_fraction, seed=cfg.split_seed)
    normalize = Normalize(bundle.mean, bundle.std, device, channels_last)
    augment = [build_augment(spec) for spec in cfg.augment]

    def make(split: Split, training: bool):
        common = dict(normalize=normalize, device=device, shuffle=training, drop_last=training,
                      seed=seed, rank=rank, world_size=world_size,
                      augment=augment if training else (), views=cfg.views if training else 1)
        if training and cfg.pk_sampler is not None:
            common["batch_sampler"] = PKBatchSampler(
                labels_of(split), cfg.pk_sampler.classes_per_batch,
                cfg.pk_sampler.samples_per_class, seed=seed, rank=rank, world_size=world_size)
        batch = cfg.batch_size if training else cfg.eval_batch_size
        if isinstance(split, ArraySplit):
            return InMemoryLoader(split, batch, **common)
        return StreamingLoader(split, batch, num_workers=cfg.num_workers, **common)

    return DataLoaders(train=make(train, True), val=make(val if val is not None else test, False),
                       test=make(test, False), bundle=bundle, val_is_test=val is None)
