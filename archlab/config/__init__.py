from archlab.config._base import config_dataclass, known_name

__all__ = ["config_dataclass", "known_name"]
