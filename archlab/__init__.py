"""archlab: build, train, compare, inspect and ship neural architectures."""

from archlab.models import create_model, list_models, model_info

__all__ = ["create_model", "list_models", "model_info"]
__version__ = "0.1.0"
