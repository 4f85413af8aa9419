"""``samples``: the same test images through each configuration's best seed, with the
predicted class, its softmax confidence and the true class (wrong predictions in red).

The best seed is the completed trial with the highest accuracy metric (test.acc when the report
summarises it); its model is restored from the run's checkpoint (best.ckpt, else last.ckpt) with
:func:`archlab.runs.evaluation.load_model_from_checkpoint`, and the grid is drawn by
:mod:`archlab.analysis.predictions`. Every configuration sees the first ``SAMPLE_COUNT`` test
images in the split's order (not cherry-picked), so the grids compare image by image.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from types import SimpleNamespace

import torch

from archlab.studies.aggregate import StudyResults, TrialResult
from archlab.studies.cost_sections import accuracy_metric
from archlab.studies.sections import (REPORT_SECTIONS, Figure, ReportContext, Section, Table,
                                      Text, fmt)

SAMPLE_COUNT = 16


def checkpoint_of(trial: TrialResult) -> Path | None:
    if trial.run_dir is None:
        return None
    for name in ("best.ckpt", "last.ckpt"):
        path = Path(trial.run_dir) / "checkpoints" / name
        if path.is_file():
            return path
    return None


def best_trial(results: StudyResults, group: str, metric: str) -> TrialResult | None:
    """The completed seed with a checkpoint and the highest ``metric`` (ties: lowest seed)."""
    candidates = [t for t in results.completed(group)
                  if checkpoint_of(t) is not None and t.metrics.get(metric) is not None]
    return max(sorted(candidates, key=lambda t: t.seed), key=lambda t: t.metrics[metric],
               default=None)


def sample_predictions(checkpoint: Path, n: int = SAMPLE_COUNT):
    """(Predictions on the first ``n`` test images, the checkpoint's data description (classes,
    mean, std)) of a checkpoint."""
    from archlab.analysis.predictions import collect_predictions
    from archlab.data.pipeline import build_loaders
    from archlab.runs.evaluation import load_trained_model

    loaded = load_trained_model(checkpoint, "cpu")
    data_cfg = dataclasses.replace(loaded.cfg.data, eval_batch_size=n)  # one batch of exactly n
    loaders = build_loaders(data_cfg, device=torch.device("cpu"), seed=0)
    return (collect_predictions(loaded.model, loaders.test, max_samples=n),
            SimpleNamespace(**loaded.data))


@REPORT_SECTIONS.register("samples")
def samples_section(ctx: ReportContext) -> Section | None:
    from archlab.analysis.predictions import plot_sample_predictions

    r = ctx.results
    metric = accuracy_metric(r)
    if metric is None:
        return None
    blocks, rows = [], []
    for i, group in enumerate(r.groups):
        trial = best_trial(r, group, metric)
        if trial is None:
            continue
        predictions, bundle = sample_predictions(checkpoint_of(trial))
        path = ctx.figures_dir / f"samples_{i}.png"
        plot_sample_predictions(predictions, path, n=SAMPLE_COUNT, class_names=bundle.classes,
                                mean=bundle.mean, std=bundle.std)
        correct = predictions.preds == predictions.labels
        conf = predictions.confidence
        rows.append([group, f"seed {trial.seed} ({metric} {fmt(trial.metrics[metric])})",
                     f"{int(correct.sum())}/{len(correct)}", fmt(conf.mean().item(), 3),
                     fmt(conf[correct].mean().item(), 3) if correct.any() else "–",
                     fmt(conf[~correct].mean().item(), 3) if (~correct).any() else "–"])
        blocks.append(Figure(path, f"{group} (seed {trial.seed}): true / predicted class and "
                                   f"confidence; red titles are wrong."))
    if not rows:
        return Section("Sample predictions", [Text("No completed trial kept a checkpoint.")])
    table = Table(["configuration", "best seed", "correct", "mean confidence",
                   "confidence when right", "confidence when wrong"], rows,
                  f"The first {SAMPLE_COUNT} test images; confidence is the top softmax "
                  f"probability.")
    return Section("Sample predictions", [table, *blocks])

