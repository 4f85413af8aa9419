"""Knowledge distillation (Hinton, Vinyals & Dean 2015, "Distilling the Knowledge in a
Neural Network", section 2).

L = α T² KL(softmax(t / T) || softmax(s / T)) + (1 - α) CE(s, y). The temperature T softens
both distributions so the student learns the teacher's relative probabilities of wrong classes
("dark knowledge"); the soft term's gradients scale as 1/T², hence the T² factor, which keeps
the two terms' balance independent of T. The paper found a small weight on the hard term
best, and temperatures of 2.5-4 best for small students (MNIST, section 3).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from archlab.losses._registry import LOSSES, REDUCTIONS, check_choice, check_number, reduce


@LOSSES.register("distillation", inputs=("logits", "teacher_logits", "target"))
class DistillationLoss(nn.Module):
    """``loss = DistillationLoss(temperature=4.0, alpha=0.9)(student_logits, teacher_logits, y)``.

    The teacher's logits are detached: only the student learns. Run the teacher in eval mode
    under ``torch.no_grad()``.

    Options:
        temperature: T > 0 for both softmaxes of the soft term.
        alpha: weight α in [0, 1] of the soft (teacher) term; 1 - α weights the hard labels.
        reduction: "mean" | "sum" over the batch, or "none" for the (B,) losses. "mean" gives
            the KL averaged per sample (``kl_div(..., reduction="batchmean")``), the true KL.
    """

    def __init__(self, *, temperature: float = 4.0, alpha: float = 0.9,
                 reduction: str = "mean") -> None:
        super().__init__()
        self.temperature = check_number("distillation", "temperature", temperature, gt=0.0)
        self.alpha = check_number("distillation", "alpha", alpha, ge=0.0, le=1.0)
        self.reduction = check_choice("distillation", "reduction", reduction, REDUCTIONS)

    def forward(self, logits: torch.Tensor, teacher_logits: torch.Tensor,
                target: torch.Tensor) -> torch.Tensor:
        """Distillation loss of the student ``logits``.

        Args:
            logits: (B, K) student logits.
            teacher_logits: (B, K) teacher logits (gradients are not propagated into them).
            target: (B,) integer labels, or (B, K) class probabilities (mixup / cutmix).

        Returns:
            A scalar for "mean" / "sum"; (B,) per-sample losses for "none".
        """
        if logits.ndim != 2 or teacher_logits.shape != logits.shape:
            raise ValueError(f"distillation: student and teacher logits must both be (B, K), got "
                             f"{tuple(logits.shape)} and {tuple(teacher_logits.shape)}")
        t = self.temperature
        log_p_student = (logits / t).log_softmax(dim=1)
        log_p_teacher = (teacher_logits.detach() / t).log_softmax(dim=1)
        # KL(p_t || p_s) = Σ_k p_t (log p_t - log p_s), per sample: (B, K) -> (B,)
        kl = (log_p_teacher.exp() * (log_p_teacher - log_p_student)).sum(dim=1)
        ce = F.cross_entropy(logits, target, reduction="none")  # (B,)
        return reduce(self.alpha * t * t * kl + (1 - self.alpha) * ce, self.reduction)
