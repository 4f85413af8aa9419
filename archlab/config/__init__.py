from archlab.config._base import config_dataclass

__all__ = ["config_dataclass"]
