"""Datasets (registered builders), splits, the in-memory batched fast path and augmentation.

Importing the package registers every dataset module in it.
"""

import importlib
import pkgutil

from archlab.data._registry import (DATASETS, ArraySplit, DatasetBundle, channel_stats,
                                    register_dataset)

for _module in pkgutil.iter_modules(__path__):
    if not _module.name.startswith("_"):
        importlib.import_module(f"{__name__}.{_module.name}")

from archlab.data.config import DataConfig  # noqa: E402
from archlab.data.pipeline import DataLoaders, build_loaders, load_dataset  # noqa: E402

__all__ = ["DATASETS", "ArraySplit", "DataConfig", "DataLoaders", "DatasetBundle",
           "build_loaders", "channel_stats", "load_dataset", "register_dataset"]
