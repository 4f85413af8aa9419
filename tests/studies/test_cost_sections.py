"""cost / tradeoff / epoch_time report sections on a constructed study with known numbers.

Three MLP widths on sklearn digits (8x8): each run gets a real ``config.yaml`` (so the section
rebuilds its model) but hand-written final metrics. References: params = sum(p.numel()) of an
independently created model, FLOPs = 2 · Σ in·out over its Linear layers (what a forward of
one image costs), the Welch interval recomputed with scipy, seconds / epoch by division.
"""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import yaml
from scipy import stats as sps
from torch import nn

from archlab.models import create_model
from archlab.runs.store import RunStore
from archlab.studies import aggregate_study, write_report
from archlab.studies.cost_sections import (MAX_ACCURACY_DROP, MIN_FLOPS_REDUCTION,
                                           epoch_time, pareto_front, tradeoff_rows,
                                           variant_costs)
from archlab.studies.runner import _write_resolved, study_dir_for, write_ledger
from archlab.studies.sections import REPORT_SECTIONS, ReportContext
from archlab.studies.spec import build_study
from archlab.studies.trials import expand_trials

WIDTHS = {"wide": 64, "narrow": 8, "mid": 32}
#: test.acc per seed: narrow loses 0.005 on average (< 2 points) for 8x fewer FLOPs (goal met);
#: mid loses less but saves only 2x (goal not met).
TEST_ACC = {"wide": [0.90, 0.91, 0.92], "narrow": [0.893, 0.907, 0.906],
            "mid": [0.899, 0.905, 0.918]}
TRAIN_TIME = {"wide": [6.0, 6.6, 7.2], "narrow": [3.0, 3.3, 2.7], "mid": [4.0, 4.2, 4.4]}
EPOCHS = 3


def _study_tree():
    return {"name": "cost", "overrides": {"data.name": "digits", "model.name": "mlp",
                                          "model.options": {"depth": 1, "img_size": 8},
                                          "train.epochs": EPOCHS, "callbacks.progress": False},
            "variants": {g: {"model.options.width": w} for g, w in WIDTHS.items()},
            "seeds": [0, 1, 2],
            "report": {"metrics": ["test.acc", "train_time_s"], "curves": [],
                       "baseline": "wide", "sections": ["cost", "tradeoff", "epoch_time"]}}


@pytest.fixture(scope="module")
def cost_study(tmp_path_factory):
    runs_dir = tmp_path_factory.mktemp("cost") / "runs"
    study = build_study(_study_tree())
    trials = expand_trials(study)
    store = RunStore(runs_dir)
    study_dir = study_dir_for(runs_dir, study.name)
    study_dir.mkdir(parents=True)
    _write_resolved(study_dir, study, trials, False, runs_dir.resolve(), None,
                    ["archlab", "study", "run", "cost.yaml"], 1)
    ledger = {"study": study.name, "quick": False, "runs_dir": str(runs_dir.resolve()),
              "trials": {}}
    for trial in trials:
        record = store.create_run(study.name, seed=trial.seed)
        (record.path / "config.yaml").write_text(yaml.safe_dump(trial.config))
        acc = TEST_ACC[trial.group][trial.seed]
        (record.path / "metrics.jsonl").write_text(json.dumps(
            {"step": 10, "epoch": EPOCHS, "val.acc": acc, "train_time_s": 1.0}) + "\n")
        store.update(record.run_id, status="completed",
                     metrics={"test.acc": acc, "epochs": EPOCHS,
                              "train_time_s": TRAIN_TIME[trial.group][trial.seed]})
        ledger["trials"][trial.key] = {
            "group": trial.group, "variant": trial.variant, "point": trial.point,
            "seed": trial.seed, "fingerprint": trial.fingerprint, "status": "completed",
            "run_id": record.run_id, "run_dir": str(record.path), "error": None}
    write_ledger(study_dir, ledger)
    return aggregate_study(study_dir)


def _reference_model(width: int) -> nn.Module:
    return create_model("mlp", num_classes=10, in_chans=1, img_size=8, depth=1, width=width)


def _linear_flops(model: nn.Module) -> int:
    return sum(2 * m.in_features * m.out_features for m in model.modules()
               if isinstance(m, nn.Linear))


def test_params_and_flops_match_direct_computation(cost_study):
    costs = variant_costs(cost_study)
    assert set(costs) == set(WIDTHS)
    for group, width in WIDTHS.items():
        reference = _reference_model(width)
        assert costs[group].params == sum(p.numel() for p in reference.parameters())
        assert costs[group].flops == _linear_flops(reference)
        for batch in (1, 64):
            lat = costs[group].latency[batch]
            assert lat.batch_size == batch and lat.runs == 10
            assert 0 < lat.min_ms <= lat.median_ms <= lat.p90_ms


def test_epoch_time_is_train_time_over_epochs(cost_study):
    for group, times in TRAIN_TIME.items():
        row = epoch_time(cost_study, group)
        per_epoch = np.array(times) / EPOCHS
        assert row.n == 3
        assert row.mean == pytest.approx(per_epoch.mean())
        assert row.std == pytest.approx(per_epoch.std(ddof=1))


def test_tradeoff_ratios_drop_ci_and_goal(cost_study):
    rows = {r["group"]: r for r in tradeoff_rows(cost_study)}
    assert set(rows) == {"narrow", "mid"}  # the baseline is not compared with itself
    costs = variant_costs(cost_study)
    base = _reference_model(WIDTHS["wide"])
    for group, row in rows.items():
        ref = _reference_model(WIDTHS[group])
        assert row["flops_reduction"] == pytest.approx(_linear_flops(base) / _linear_flops(ref))
        assert row["params_reduction"] == pytest.approx(
            sum(p.numel() for p in base.parameters()) / sum(p.numel() for p in ref.parameters()))
        assert row["latency_reduction"] == pytest.approx(
            costs["wide"].latency[1].median_ms / costs[group].latency[1].median_ms)
        a, b = np.array(TEST_ACC["wide"]), np.array(TEST_ACC[group])
        assert row["drop"] == pytest.approx(a.mean() - b.mean())
        # Welch interval of (baseline - configuration), recomputed with scipy.
        va, vb = a.var(ddof=1) / 3, b.var(ddof=1) / 3
        df = (va + vb) ** 2 / (va ** 2 / 2 + vb ** 2 / 2)
        half = sps.t.ppf(0.975, df) * math.sqrt(va + vb)
        assert row["drop_ci"][0] == pytest.approx(a.mean() - b.mean() - half, rel=1e-6)
        assert row["drop_ci"][1] == pytest.approx(a.mean() - b.mean() + half, rel=1e-6)
        expected = (a.mean() - b.mean() < MAX_ACCURACY_DROP
                    and _linear_flops(base) / _linear_flops(ref) >= MIN_FLOPS_REDUCTION)
        assert row["goal_met"] is expected
    assert rows["narrow"]["goal_met"] and not rows["mid"]["goal_met"]


def test_pareto_front_against_brute_force():
    rng = np.random.default_rng(0)
    costs, scores = rng.uniform(1, 10, 12).tolist(), rng.uniform(0, 1, 12).tolist()
    costs[3], scores[3] = costs[5], scores[5]  # a tie: neither dominates the other
    expected = [i for i in range(12)
                if not any(costs[j] <= costs[i] and scores[j] >= scores[i]
                           and (costs[j], scores[j]) != (costs[i], scores[i]) for j in range(12))]
    assert pareto_front(costs, scores) == expected
    assert pareto_front([1.0, 2.0, 3.0], [0.5, 0.9, 0.8]) == [0, 1]


def test_sections_render_into_the_report(cost_study, tmp_path):
    ctx = ReportContext(cost_study, tmp_path / "figures")
    cost = REPORT_SECTIONS.get("cost")(ctx)
    table = cost.blocks[0]
    assert [row[0] for row in table.rows] == ["wide", "narrow", "mid"]
    assert table.rows[1][1] == f"{sum(p.numel() for p in _reference_model(8).parameters()):,}"
    assert (tmp_path / "figures" / "pareto.png").stat().st_size > 10_000
    trade = REPORT_SECTIONS.get("tradeoff")(ctx)
    assert [row[-1] for row in trade.blocks[0].rows] == ["yes", "no"]
    assert "Goal met by: narrow." in trade.blocks[1].text
    times = REPORT_SECTIONS.get("epoch_time")(ctx)
    rel = {row[0]: row[3] for row in times.blocks[0].rows}
    assert rel["narrow"] == f"{np.mean(TRAIN_TIME['narrow']) / np.mean(TRAIN_TIME['wide']):.2f}×"
    files = write_report(cost_study, tmp_path / "report")
    assert "Trade-off against wide" in files.markdown.read_text()
