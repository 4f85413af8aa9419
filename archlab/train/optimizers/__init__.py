"""Optimizers torch does not ship: Lion, and the SAM and Lookahead wrappers over any base.

They are registered by name in :data:`archlab.train.optim.OPTIMIZERS` (``optim.name=lion``,
``optim.name=sam optim.base=sgd``, ``optim.name=lookahead optim.base=adamw``).
"""

from archlab.train.optimizers.lion import Lion
from archlab.train.optimizers.lookahead import Lookahead
from archlab.train.optimizers.sam import SAM, frozen_norm_stats

__all__ = ["Lion", "Lookahead", "SAM", "frozen_norm_stats"]
