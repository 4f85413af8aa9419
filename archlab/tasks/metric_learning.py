"""Metric learning as a task: train an embedding with a pair, triplet or contrastive loss and
classify by the nearest class centroid.

    task:
      name: metric_learning
      loss: {name: triplet_batch_hard, options: {margin: 0.2}}
      ce_weight: 0.2
    data: {pk_sampler: {classes_per_batch: 8, samples_per_class: 8}}

The embedding is the model's penultimate feature (the input of ``get_classifier()``, caught by a
forward pre-hook so the model is still called as a whole and DDP syncs it), L2-normalized as in
FaceNet (Schroff et al. 2015). Optionally it passes through SimCLR's projection head
(Linear-ReLU-Linear, Chen et al. 2020) before the loss; the centroids always use the embedding
itself. The losses it feeds:

- ``triplet_batch_hard`` (embeddings, target): Hermans et al. 2017; pair it with
  ``data.pk_sampler`` so every anchor has positives and negatives in its batch.
- ``triplet`` (anchor, positive, negative): FaceNet's loss on given triplets; the task makes one
  per sample of the batch: the sample as anchor, a positive and a negative drawn uniformly from
  the batch (``sample_triplets``; the global RNG, so runs and resumes are reproducible). Anchors
  whose class has no other sample, or a batch of one class, contribute none.
- ``contrastive`` (x1, x2, same): Hadsell et al. 2006 on all B(B-1)/2 pairs of the batch,
  same = (y_i == y_j).
- ``nt_xent`` (z1, z2): SimCLR on two independently augmented views of each image, which the
  loader makes with ``data.views: 2`` (same images, same augmentation pipeline drawn twice in
  pixel space before normalization, reproducible from the epoch's seed). Labels are not used by
  the loss, only by the centroids.

With ``data.views: 2`` and another loss, the second view joins the batch as more samples of the
same classes. ``task.ce_weight`` adds cross-entropy on the model's own logits.

Prediction (``predict``, hence accuracy, top-k, confusion matrices, ``archlab eval`` and
``runs compare``): the cosine similarity of the embedding to each class centroid, a (B, K) score.
The centroids are an EMA (``centroid_momentum``) of each class's normalized training embeddings,
updated without gradient in every training step; they are task state, saved in checkpoints and
restored on resume and by ``archlab eval``. Before the first training step every centroid is zero
and the scores are meaningless (all 0). With EMA of weights on, the centroids come from the live
weights while evaluation uses the averaged ones; SAM's second pass updates them a second time.
"""

from __future__ import annotations

from dataclasses import field
from typing import Annotated, Any, ClassVar, Literal, Optional

import torch
import torch.distributed as dist
import torch.nn.functional as F
from pydantic import Field, field_validator
from torch import nn

from archlab.config import config_dataclass
from archlab.losses.config import LossConfig
from archlab.metrics.accuracy import Accuracy
from archlab.metrics.base import Metric
from archlab.metrics.mean import MeanMetric
from archlab.tasks.base import TASKS, Batch, Task, unwrap
from archlab.tasks.classification import (build_score_metrics, check_loss_inputs,
                                          check_score_metrics, flip_averaged_scores,
                                          penultimate_hook)

PAIR_INPUTS = ("embeddings", "target")
PAIRWISE_INPUTS = ("x1", "x2", "same")
TRIPLET_INPUTS = ("anchor", "positive", "negative")
VIEW_INPUTS = ("z1", "z2")


@config_dataclass
class MetricLearningConfig:
    name: Literal["metric_learning"] = "metric_learning"
    loss: LossConfig = field(default_factory=lambda: LossConfig(name="triplet_batch_hard"))
    """The embedding loss: triplet_batch_hard, triplet, contrastive or nt_xent."""
    metrics: dict[str, dict[str, Any]] = field(default_factory=dict)
    """Extra evaluation metrics on the centroid scores (as for classification)."""
    ce_weight: Annotated[float, Field(ge=0.0)] = 0.0
    """Weight of a joint cross-entropy on the model's logits (0: the metric loss alone)."""
    projection_dim: Optional[Annotated[int, Field(gt=0)]] = None
    """Output size of a SimCLR projection head (Linear-ReLU-Linear) between the embedding and
    the loss (Chen et al. 2020 use 128); None feeds the loss the embedding itself."""
    centroid_momentum: Annotated[float, Field(ge=0.0, lt=1.0)] = 0.9
    """EMA momentum of the per-class embedding centroids that predictions score against."""
    tta_flip: bool = False
    """Evaluate on the mean of each image's and its mirror's softmaxed centroid scores."""

    DATA_KIND: ClassVar[str] = "images"
    DATA_VIEWS: ClassVar[tuple[int, ...]] = (1, 2)

    @field_validator("metrics")
    @classmethod
    def _known_metrics(cls, metrics: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
        return check_score_metrics(metrics)

    def __post_init__(self) -> None:
        check_loss_inputs(self.name, self.loss,
                          (PAIR_INPUTS, PAIRWISE_INPUTS, TRIPLET_INPUTS, VIEW_INPUTS))


def sample_triplets(target: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(anchor, positive, negative) indices into the batch: every sample that has another sample
    of its class and one of another class is an anchor once, with a positive (same class, not
    itself) and a negative drawn uniformly. Draws from the global RNG on ``target``'s device."""
    same = target[:, None] == target[None, :]
    positive = same & ~torch.eye(len(target), dtype=torch.bool, device=target.device)
    negative = ~same
    anchors = positive.any(1) & negative.any(1)
    # Uniform pick among the allowed columns: the argmax of uniform noise masked to them.
    noise = torch.rand(2, len(target), len(target), device=target.device)
    p = noise[0].masked_fill(~positive, -1.0).argmax(1)
    n = noise[1].masked_fill(~negative, -1.0).argmax(1)
    a = anchors.nonzero().squeeze(1)
    return a, p[a], n[a]


class CentroidHead(nn.Module):
    """A classifier that scores like the trained task: the cosine similarity of the (flattened)
    penultimate features to each class centroid, (B, D) -> (B, K) in [-1, 1]. Swapped in for a
    metric-learning model's Linear head by :func:`with_centroid_head`, so a loaded model
    predicts what the run reported. The scores are similarities, not logits: a softmax of them
    is no calibrated probability."""

    def __init__(self, centroids: torch.Tensor) -> None:
        super().__init__()
        self.register_buffer("centroids", F.normalize(centroids.float(), dim=1))

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return F.normalize(features.flatten(1).float(), dim=1) @ self.centroids.T


def with_centroid_head(model: nn.Module, state: dict[str, Any]) -> nn.Module:
    """``model`` with its get_classifier() Linear replaced (in place) by a :class:`CentroidHead`
    holding the centroids of a metric-learning checkpoint's task ``state``."""
    if "centroids" not in state:
        raise ValueError("the checkpoint holds no metric-learning class centroids")
    head = model.get_classifier()
    for name, module in model.named_modules():
        if module is head:
            parent, _, attr = name.rpartition(".")
            setattr(model.get_submodule(parent) if parent else model, attr,
                    CentroidHead(state["centroids"]).to(next(head.parameters()).device))
            return model
    raise ValueError(f"{type(model).__name__}.get_classifier() is not one of its submodules")


def projection_head(in_features: int, out_features: int) -> nn.Sequential:
    """SimCLR's g(·): Linear-ReLU-Linear, hidden width = the embedding's (Chen et al. 2020)."""
    return nn.Sequential(nn.Linear(in_features, in_features), nn.ReLU(inplace=True),
                         nn.Linear(in_features, out_features))


@TASKS.register("metric_learning", config=MetricLearningConfig)
class MetricLearningTask(Task):
    """An embedding loss on the penultimate features; class scores from centroid similarity."""

    output_kind = "cosine similarities to class centroids"

    @classmethod
    def inference_model(cls, model: nn.Module, state: dict[str, Any]) -> nn.Module:
        """The model with its Linear head replaced by the run's centroid scores."""
        return with_centroid_head(model, state)

    def __init__(self, model: nn.Module, cfg: MetricLearningConfig) -> None:
        super().__init__(model, cfg)
        self.options = cfg
        self.criterion = cfg.loss.build()
        self.inputs = cfg.loss.inputs()
        head, self._features = penultimate_hook(unwrap(model), "task.name=metric_learning")
        self.num_classes, dim, device = head.out_features, head.in_features, head.weight.device
        self.projection = None
        if self.options.projection_dim is not None:
            self.projection = projection_head(dim, self.options.projection_dim).to(device)
        self.centroids = torch.zeros(self.num_classes, dim, device=device)  # (K, D)
        self.centroid_seen = torch.zeros(self.num_classes, dtype=torch.bool, device=device)

    # ------------------------------------------------------------------ optimizer / state
    def param_groups(self, phase: str, lr: float) -> list[dict]:
        """The projection head's parameters (base lr, the optimizer's decay)."""
        if self.projection is None:
            return []
        return [{"params": list(self.projection.parameters()), "lr": lr}]

    def state_dict(self) -> dict[str, Any]:
        state = {"centroids": self.centroids.clone(), "centroid_seen": self.centroid_seen.clone()}
        if self.projection is not None:
            state["projection"] = self.projection.state_dict()
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if "centroids" in state:
            self.centroids.copy_(state["centroids"])
            self.centroid_seen.copy_(state["centroid_seen"])
        if self.projection is not None and "projection" in state:
            self.projection.load_state_dict(state["projection"])

    # ------------------------------------------------------------------ embeddings
    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(logits (B, K), penultimate features (B, D)) from one call of the whole model."""
        self._features[0] = None
        out = self.model(x)
        features, self._features[0] = self._features[0], None
        if features is None:
            raise RuntimeError(f"{type(unwrap(self.model)).__name__}'s forward did not call its "
                               f"get_classifier() module, so there is no embedding to read")
        logits = out["logits"] if isinstance(out, dict) else out  # aux heads are not used
        return logits, features.flatten(1).float()

    def scores(self, embeddings: torch.Tensor) -> torch.Tensor:
        """Cosine similarity of unit (B, D) embeddings to each class centroid: (B, K)."""
        return embeddings @ F.normalize(self.centroids, dim=1).T

    @torch.no_grad()
    def update_centroids(self, embeddings: torch.Tensor, target: torch.Tensor) -> None:
        """c_k <- m c_k + (1 - m) mean{z_i : y_i = k} for the classes in the batch (summed over
        DDP ranks, so every rank keeps the same centroids); a class's first batch sets c_k."""
        sums = torch.zeros_like(self.centroids).index_add_(0, target, embeddings.float())
        counts = torch.bincount(target, minlength=self.num_classes).to(sums.dtype)
        if dist.is_available() and dist.is_initialized():
            packed = torch.cat([sums, counts[:, None]], dim=1)
            dist.all_reduce(packed)
            sums, counts = packed[:, :-1], packed[:, -1]
        present = counts > 0
        mean = sums[present] / counts[present, None]
        m = self.options.centroid_momentum
        seen = self.centroid_seen[present, None]
        self.centroids[present] = torch.where(seen, m * self.centroids[present] + (1 - m) * mean,
                                              mean)
        self.centroid_seen |= present

    # ------------------------------------------------------------------ the step
    def metric_loss(self, embeddings: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """The configured loss on unit (N, D) embeddings with labels (N,); for nt_xent rows
        [0, N/2) and [N/2, N) are the two views of the same images."""
        if self.inputs == PAIR_INPUTS:
            return self.criterion(embeddings, target)
        if self.inputs == PAIRWISE_INPUTS:
            i, j = torch.triu_indices(len(target), len(target), offset=1,
                                      device=target.device)  # all pairs i < j
            return self.criterion(embeddings[i], embeddings[j], target[i] == target[j])
        if self.inputs == TRIPLET_INPUTS:
            a, p, n = sample_triplets(target)
            if len(a) == 0:  # no valid triplet: a zero that still belongs to the graph
                return embeddings.sum() * 0.0
            return self.criterion(embeddings[a], embeddings[p], embeddings[n])
        half = len(target) // 2
        return self.criterion(embeddings[:half], embeddings[half:])

    def training_step(self, batch: Batch, phase: str = "main") -> dict[str, torch.Tensor]:
        x, y = batch["x"], batch["y"]
        second_view = batch.get("x_view2")
        if self.inputs == VIEW_INPUTS and second_view is None:
            raise ValueError("loss nt_xent needs two augmented views of each image: set "
                             "data.views=2 (with data.augment)")
        if second_view is not None:  # (B, ...) x2 -> (2B, ...): one forward, BN sees both views
            x = torch.cat([x, second_view])
        target = y.repeat(1 if second_view is None else 2)
        logits, features = self.forward(x)
        embeddings = F.normalize(features, dim=1)
        projected = embeddings if self.projection is None else F.normalize(
            self.projection(features), dim=1)
        metric = self.metric_loss(projected, target)
        loss = metric
        result: dict[str, torch.Tensor] = {}
        if self.options.ce_weight > 0:
            ce = F.cross_entropy(logits.float(), target)
            loss = metric + self.options.ce_weight * ce
            result.update(metric_loss=metric.detach(), ce_loss=ce.detach())
        z = embeddings.detach()
        scores = self.scores(z[:len(y)])  # before this batch's update, like train accuracy
        self.update_centroids(z, target)
        result.update(loss=loss, acc=(scores.argmax(-1) == y).float().mean())
        return result

    # ------------------------------------------------------------------ evaluation
    def predict(self, x: torch.Tensor) -> torch.Tensor:
        """Class scores (B, K): cosine similarity to the training centroids."""
        _, features = self.forward(x)
        return self.scores(F.normalize(features, dim=1))

    def evaluation_metrics(self) -> dict[str, Metric]:
        return {"loss": MeanMetric("loss"), "acc": Accuracy(),
                **build_score_metrics(self.cfg.metrics, self.num_classes)}

    def validation_step(self, batch: Batch, metrics: dict[str, Metric]) -> None:
        """The scores' cross-entropy is reported as ``loss`` only for a uniform record: cosine
        similarities are no logits, so compare it only between metric-learning runs."""
        scores = (flip_averaged_scores(self.predict, batch["x"]) if self.cfg.tta_flip
                  else self.predict(batch["x"]).float())
        metrics["loss"].update(F.cross_entropy(scores, batch["y"], reduction="none"))
        for name, metric in metrics.items():
            if name != "loss":
                metric.update(scores, batch["y"])
