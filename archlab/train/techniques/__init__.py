"""Training techniques that change what a batch is or how a step is taken (mixup, cutmix, ...).

Importing the package registers every technique module in it.
"""

import importlib
import pkgutil

for _module in pkgutil.iter_modules(__path__):
    if not _module.name.startswith("_"):
        importlib.import_module(f"{__name__}.{_module.name}")

from archlab.train.techniques.mixup import (BATCH_MIXES, MixParams, Mixup,  # noqa: E402
                                            build_batch_mix, cutmix, mix_targets)

__all__ = ["BATCH_MIXES", "MixParams", "Mixup", "build_batch_mix", "cutmix", "mix_targets"]
