"""Model families register themselves on import; importing this package imports them all."""

from archlab.models import mlp  # noqa: F401  (registration)
from archlab.models._contract import Classifier, DefaultCfg
from archlab.models._factory import (MODELS, count_flops, create_model, list_models, model_info,
                                     register_model)

__all__ = ["MODELS", "Classifier", "DefaultCfg", "count_flops", "create_model", "list_models",
           "model_info", "register_model"]
