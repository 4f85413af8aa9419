"""Evaluation metrics: stateful accumulators selected by name, each checked against a reference.

    from archlab.metrics import build_metric, METRICS
    METRICS.list()                                  # every registered name
    metric = build_metric("topk_accuracy", topk=(1, 5))
    metric.update(logits, target); metric.sync(dist); metric.compute()

See :mod:`archlab.metrics.base` for the contract (update / compute / reset / sync) and what
``METRICS.entry(name).meta["inputs"]`` says about the arguments of ``update``.
"""

from __future__ import annotations

from archlab.metrics.base import METRICS, Metric, SummedStateMetric

# Imported for their registrations.
from archlab.metrics import (  # noqa: E402,F401
    accuracy,
    bleu,
    calibration,
    confusion,
    fid,
    mean,
    perplexity,
    precision_recall,
    rouge,
)


def build_metric(name: str, **kwargs) -> Metric:
    """A fresh metric: ``build_metric("ece", n_bins=15)``; unknown names list close matches."""
    return METRICS.get(name)(**kwargs)


__all__ = ["METRICS", "Metric", "SummedStateMetric", "build_metric"]
