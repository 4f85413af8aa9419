"""``degradation``: the degradation problem of He et al. 2016 (Sec. 1, Fig. 1 and 6) read off a
study's numbers, not asserted.

Configurations are sorted into families by their run config: ``plainN`` and ``resnetN`` (CIFAR
ResNets and their plain twins; ``N`` = depth), with the shortcut option (A: identity, B: 1x1
projection) of the residual ones. For each family with two depths (same shortcut option), it
compares the deepest with the shallowest on the final training loss, training accuracy (last
epoch's running mean, from the curves) and the summarised test/val accuracy, and says in words
what the numbers show:

* degradation: the deeper **plain** net trains to a *higher* loss than the shallower one;
* the fix: the deeper **residual** net trains to a lower loss / higher accuracy.

It also lists every pair of configurations that differ only in the shortcut option (A vs B).
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import yaml

from archlab.studies.aggregate import StudyResults
from archlab.studies.cost_sections import accuracy_metric
from archlab.studies.sections import REPORT_SECTIONS, ReportContext, Section, Table, Text, fmt

FAMILY = re.compile(r"^(plain|resnet)(\d+)$")


def family_of(results: StudyResults, group: str) -> tuple[str, int, str] | None:
    """(kind 'plain'/'resnet', depth, shortcut 'A'/'B' or '' for plain) from a completed
    trial's saved config; None for any other model."""
    trial = next((t for t in results.completed(group) if t.run_dir is not None), None)
    if trial is None or not (Path(trial.run_dir) / "config.yaml").is_file():
        return None
    model = yaml.safe_load((Path(trial.run_dir) / "config.yaml").read_text()).get("model", {})
    match = FAMILY.match(str(model.get("name", "")))
    if match is None:
        return None
    kind = match.group(1)
    shortcut = "" if kind == "plain" else str((model.get("options") or {}).get("shortcut", "A"))
    return kind, int(match.group(2)), shortcut


def final_train(results: StudyResults, group: str) -> dict[str, float]:
    """Mean over seeds of the last epoch's train.loss and train.acc (absent keys left out)."""
    out = {}
    for key in ("train.loss", "train.acc"):
        values = [next((h[key] for h in reversed(t.history) if key in h), None)
                  for t in results.completed(group)]
        values = [v for v in values if v is not None]
        if values:
            out[key] = float(np.mean(values))
    return out


def depth_comparisons(results: StudyResults) -> list[dict]:
    """One dict per (kind, shortcut) family with >= 2 depths: shallow vs deep numbers."""
    families: dict[tuple[str, str], list[tuple[int, str]]] = {}
    for g in results.groups:
        info = family_of(results, g)
        if info is not None:
            families.setdefault((info[0], info[2]), []).append((info[1], g))
    metric = accuracy_metric(results)
    out = []
    for (kind, shortcut), members in families.items():
        if len({d for d, _ in members}) < 2:
            continue
        (d0, shallow), (d1, deep) = min(members), max(members)
        s, d = final_train(results, shallow), final_train(results, deep)
        row_s = results.row(shallow, metric) if metric else None
        row_d = results.row(deep, metric) if metric else None
        out.append({"kind": kind, "shortcut": shortcut, "shallow": shallow, "deep": deep,
                    "train_loss": (s.get("train.loss"), d.get("train.loss")),
                    "train_acc": (s.get("train.acc"), d.get("train.acc")),
                    "metric": metric,
                    "acc": (row_s.mean if row_s and row_s.n else None,
                            row_d.mean if row_d and row_d.n else None)})
    return out


def verdict(c: dict) -> str:
    """What the numbers show for one family, in words."""
    loss_s, loss_d = c["train_loss"]
    if loss_s is None or loss_d is None:
        return f"{c['deep']} vs {c['shallow']}: no training loss recorded."
    deeper_worse = loss_d > loss_s
    text = (f"{c['deep']} ends at training loss {fmt(loss_d)} vs {fmt(loss_s)} for "
            f"{c['shallow']}: the deeper net trains {'worse' if deeper_worse else 'better'}")
    if c["kind"] == "plain":
        text += (" — the degradation effect is shown." if deeper_worse else
                 " — no degradation at this budget.")
    else:
        text += (" — depth helps the residual net, as expected." if not deeper_worse else
                 " — unexpected for a residual net (too short a budget?).")
    return text


@REPORT_SECTIONS.register("degradation")
def degradation_section(ctx: ReportContext) -> Section | None:
    r = ctx.results
    comparisons = depth_comparisons(r)
    if not comparisons:
        return None
    rows = [[f"{c['kind']}" + (f" (shortcut {c['shortcut']})" if c["shortcut"] else ""),
             f"{c['shallow']} → {c['deep']}",
             f"{fmt(c['train_loss'][0])} → {fmt(c['train_loss'][1])}",
             f"{fmt(c['train_acc'][0])} → {fmt(c['train_acc'][1])}",
             f"{fmt(c['acc'][0])} → {fmt(c['acc'][1])}"] for c in comparisons]
    metric = comparisons[0]["metric"] or "accuracy"
    seeds = min(len(r.completed(g)) for c in comparisons for g in (c["shallow"], c["deep"]))
    caveat = ("" if seeds >= 2 else " Single seed: no error bar, so read this as a smoke "
              "check, not as evidence either way.")
    blocks = [Table(["family", "shallow → deep", "final train loss", "final train acc",
                     f"{metric}"], rows, f"Means over {seeds}+ seed(s); train metrics from the "
                                         f"last epoch (running mean over it)."),
              Text(" ".join(verdict(c) for c in comparisons) + caveat)]
    shortcut_rows = []
    infos = {g: family_of(r, g) for g in r.groups}
    for g, info in infos.items():
        if info is None or info[2] != "A":
            continue
        for h, other in infos.items():
            if other is not None and other[:2] == info[:2] and other[2] == "B":
                a, b = r.row(g, metric), r.row(h, metric)
                if a and b and a.n and b.n:
                    shortcut_rows.append([f"{info[0]}{info[1]}", g, h, fmt(a.mean), fmt(b.mean),
                                          fmt(b.mean - a.mean)])
    if shortcut_rows:
        blocks.append(Table(["model", "shortcut A", "shortcut B", f"{metric} A", f"{metric} B",
                             "B − A"], shortcut_rows,
                            "Identity (A, zero-padded) vs 1x1 projection (B) shortcuts; the "
                            "pairwise table gives the interval when A is the baseline."))
    return Section("Degradation with depth (plain vs residual)", blocks)
