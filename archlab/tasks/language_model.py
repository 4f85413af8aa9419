"""Language modelling: predict every next token of a block of text.

    data: {name: kjv, val_fraction: 0.1, options: {block_size: 128}}
    model: {name: gpt_char}
    task: {name: language_model}

A batch is ``{"x": ids (B, T), "y": the next ids (B, T)}`` (see
:class:`archlab.data.text_loader.TextBlockLoader`); the model maps ids to next-token logits
(B, T, V). Training minimizes the mean cross-entropy over all B·T positions. Evaluation
reports, over every predicted token of the split:

* ``loss``: the mean negative log-likelihood in nats per token,
* ``bpc``: the same in bits per character (``loss / ln 2``; one token is one character here),
* ``ppl``: perplexity, ``exp(loss)``.

The mean is over tokens, not over batches (the split's last block is shorter), and the metric
state is summed over DDP ranks, so these equal a single pass over the whole split.
"""

from __future__ import annotations

import math
from typing import ClassVar, Literal

import torch
import torch.nn.functional as F

from archlab.config import config_dataclass
from archlab.metrics.base import Metric
from archlab.metrics.perplexity import Perplexity
from archlab.tasks.base import TASKS, Batch, Task


@config_dataclass
class LanguageModelConfig:
    name: Literal["language_model"] = "language_model"

    DATA_KIND: ClassVar[str] = "text"
    DATA_VIEWS: ClassVar[tuple[int, ...]] = (1,)


@TASKS.register("language_model", config=LanguageModelConfig)
class LanguageModelTask(Task):
    """Next-token cross-entropy; loss (nats), bits per character and perplexity."""

    output_kind = "next-token logits"
    monitor = ("val.loss", "min")

    def training_step(self, batch: Batch, phase: str = "main") -> dict[str, torch.Tensor]:
        logits = self.model(batch["x"])  # (B, T, V)
        loss = F.cross_entropy(logits.flatten(0, 1).float(), batch["y"].flatten())
        return {"loss": loss}

    def evaluation_metrics(self) -> dict[str, Metric]:
        return {"nll": Perplexity()}

    def validation_step(self, batch: Batch, metrics: dict[str, Metric]) -> None:
        metrics["nll"].update(self.model(batch["x"]), batch["y"])

    def evaluation_results(self, metrics: dict[str, Metric]) -> dict[str, float]:
        nll = metrics["nll"].compute()["nll"]
        return {"loss": nll, "bpc": nll / math.log(2), "ppl": math.exp(nll)}
