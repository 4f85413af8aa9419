"""Model families register themselves on import; importing this package imports every family
module in it (one file per family), so adding a family is adding one file."""

import importlib
import pkgutil

from archlab.models._contract import Classifier, DefaultCfg
from archlab.models._factory import (MODELS, count_flops, create_model, list_models, model_info,
                                     register_model)

for _module in pkgutil.iter_modules(__path__):
    if not _module.name.startswith("_"):
        importlib.import_module(f"{__name__}.{_module.name}")

__all__ = ["MODELS", "Classifier", "DefaultCfg", "count_flops", "create_model", "list_models",
           "model_info", "register_model"]
