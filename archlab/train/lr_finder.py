"""LR range test (Smith 2017, "Cyclical Learning Rates", section 3.3; fastai's ``lr_find``).

Train for ``num_steps`` optimizer steps while the lr grows exponentially from ``start_lr`` to
``end_lr``, record the loss, and stop once the smoothed loss exceeds ``diverge_factor`` times
its best value. Model, optimizer and RNG states are restored afterwards, so the sweep leaves no
trace on the run that follows.

    result = find_lr(task, optimizer, loaders.train, start_lr=1e-6, end_lr=10, num_steps=100)
    result.plot("lr_find.png")
    optimizer.param_groups[0]["lr"]  # unchanged; pick e.g. result.suggestion_valley
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Iterator, Optional

import numpy as np
import torch

from archlab.train.reproducibility import rng_state, set_rng_state


@dataclass
class LRFinderResult:
    lrs: list[float]
    """Base lr of each step (groups with an ``lr_multiplier`` used lr * multiplier)."""
    losses: list[float]
    """Training loss of each step's batch, before that step's update."""
    smoothed: list[float]
    """Bias-corrected exponential moving average of ``losses``."""
    suggestion_steepest: Optional[float]
    """lr where the smoothed loss falls fastest per log-lr; None with fewer than 3 points."""
    suggestion_valley: Optional[float]
    """fastai's valley: middle of the longest decreasing stretch of the smoothed loss."""
    diverged: bool = False
    """The sweep stopped early because the loss exploded."""

    def plot(self, path: str | Path):
        """Save a labelled PNG of loss vs lr (log axis) with the suggestions; returns the
        matplotlib Figure. Uses the Agg canvas directly, leaving pyplot's backend alone."""
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure

        fig = Figure(figsize=(6.4, 4.2))
        FigureCanvasAgg(fig)
        ax = fig.add_subplot()
        ax.plot(self.lrs, self.losses, color="tab:blue", alpha=0.35, label="loss")
        ax.plot(self.lrs, self.smoothed, color="tab:blue", label="smoothed loss")
        for name, lr, color in (("steepest", self.suggestion_steepest, "tab:red"),
                                ("valley", self.suggestion_valley, "tab:green")):
            if lr is not None:
                ax.axvline(lr, color=color, linestyle="--", label=f"{name}: {lr:.2e}")
        finite = [v for v in self.losses + self.smoothed if math.isfinite(v)]
        if finite and math.isfinite(self.smoothed[0]):
            # the diverged tail would squash the interesting part of the curve
            low, high = min(finite), max(1.5 * self.smoothed[0], min(finite))
            pad = 0.05 * (high - low) or 0.05 * abs(high) or 0.05
            ax.set_ylim(low - pad, high + pad)
        ax.set_xscale("log")
        ax.set_xlabel("learning rate (log scale)")
        ax.set_ylabel("training loss")
        ax.set_title(f"LR range test ({len(self.lrs)} steps"
                     f"{', diverged' if self.diverged else ''})")
        ax.grid(True, which="both", alpha=0.3)
        ax.legend()
        fig.tight_layout()
        fig.savefig(path, dpi=100)
        return fig


def _batches(loader: Iterable) -> Iterator:
    while True:
        empty = True
        for batch in loader:
            empty = False
            yield batch
        if empty:
            raise ValueError("find_lr: the loader yielded no batch")


def steepest_index(lrs: list[float], smoothed: list[float]) -> Optional[int]:
    """Index of the most negative d(smoothed loss)/d(log lr); None with fewer than 3 points."""
    if len(smoothed) < 3:
        return None
    slope = np.gradient(np.asarray(smoothed), np.log(np.asarray(lrs)))
    return int(np.argmin(slope))


def valley_index(smoothed: list[float]) -> Optional[int]:
    """Middle of the longest strictly decreasing subsequence of the smoothed loss (fastai's
    valley heuristic); O(n^2), n = the sweep's steps. None with fewer than 3 points."""
    n = len(smoothed)
    if n < 3:
        return None
    length, start = [1] * n, list(range(n))  # longest decreasing run ending at i, and its start
    for i in range(n):
        for j in range(i):
            if smoothed[i] < smoothed[j] and length[j] + 1 > length[i]:
                length[i], start[i] = length[j] + 1, start[j]
    end = max(range(n), key=lambda i: (length[i], -i))
    return start[end] + (end - start[end]) // 2


def find_lr(task, optimizer: torch.optim.Optimizer, loader: Iterable, *, start_lr: float,
            end_lr: float, num_steps: int, smooth: float = 0.98,
            diverge_factor: float = 4.0) -> LRFinderResult:
    """Exponential lr sweep ``start_lr * (end_lr / start_lr) ** (i / (num_steps - 1))``.

    ``task.training_step(batch, phase)["loss"]`` (the task's only phase) gives each step's loss; the loader is cycled if it
    has fewer than ``num_steps`` batches. Runs in fp32 with ``optimizer.step(closure)`` (so SAM
    and Lookahead work). ``smooth`` is the EMA factor of the smoothed loss; the sweep stops
    when it exceeds ``diverge_factor`` times its minimum or becomes non-finite.
    """
    if not 0.0 < start_lr < end_lr:
        raise ValueError(f"find_lr needs 0 < start_lr < end_lr, got {start_lr}, {end_lr}")
    if num_steps < 2:
        raise ValueError(f"find_lr num_steps must be >= 2, got {num_steps}")
    if not 0.0 <= smooth < 1.0:
        raise ValueError(f"find_lr smooth (EMA factor) must be in [0, 1), got {smooth}")
    if diverge_factor <= 1.0:
        raise ValueError(f"find_lr diverge_factor must be > 1, got {diverge_factor}")
    model = task.model
    saved_model = {k: v.detach().clone() for k, v in model.state_dict().items()}
    saved_optimizer = copy.deepcopy(optimizer.state_dict())  # state_dict() aliases the buffers
    saved_rng, was_training = rng_state(), model.training
    multipliers = [g.get("lr_multiplier", 1.0) for g in optimizer.param_groups]
    lrs, losses, smoothed = [], [], []
    avg, best, diverged = 0.0, math.inf, False
    try:
        model.train()
        batches = _batches(loader)
        for i in range(num_steps):
            lr = start_lr * (end_lr / start_lr) ** (i / (num_steps - 1))
            for group, mult in zip(optimizer.param_groups, multipliers):
                group["lr"] = lr * mult
            batch = task.prepare_batch(next(batches))  # once: SAM's closure reuses it

            def closure():
                optimizer.zero_grad(set_to_none=True)
                loss = task.training_step(batch, task.phases[0])["loss"]
                loss.backward()
                return loss

            value = float(optimizer.step(closure).detach())
            avg = smooth * avg + (1 - smooth) * value
            lrs.append(lr)
            losses.append(value)
            smoothed.append(avg / (1 - smooth ** (i + 1)))  # bias correction as in Adam
            if not math.isfinite(smoothed[-1]) or smoothed[-1] > diverge_factor * best:
                diverged = True
                break
            best = min(best, smoothed[-1])
    finally:
        model.load_state_dict(saved_model)
        optimizer.load_state_dict(saved_optimizer)
        optimizer.zero_grad(set_to_none=True)
        model.train(was_training)
        set_rng_state(saved_rng)
    # the diverged point is off the curve the suggestions should read
    used = len(smoothed) - 1 if diverged else len(smoothed)
    steep = steepest_index(lrs[:used], smoothed[:used])
    valley = valley_index(smoothed[:used])
    return LRFinderResult(lrs, losses, smoothed,
                          None if steep is None else lrs[steep],
                          None if valley is None else lrs[valley], diverged)
