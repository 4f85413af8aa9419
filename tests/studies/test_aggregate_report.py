"""Aggregation from a study's files against direct computations, and the report's Markdown,
HTML, CSV and JSON against the aggregate."""

from __future__ import annotations

import csv
import json
import math
import re

import numpy as np
import pytest

from archlab.studies.aggregate import aggregate_study
from archlab.studies.report import write_report

from tests.studies.conftest import DEPTH_RATIO, EPOCH_SCALE, FINAL, build_fake_study

scipy_stats = pytest.importorskip("scipy.stats")


def ok_values(group):
    # The fake study's trial "tanh seed=2" failed: it must be left out of every statistic.
    return [v for s, v in enumerate(FINAL[group]) if not (group == "tanh" and s == 2)]


def test_summary_pairwise_curves_and_targets_from_the_files(fake_study_dir):
    r = aggregate_study(fake_study_dir)
    assert r.groups == ["relu", "tanh", "gelu"] and not r.quick
    for g in r.groups:
        x = np.array(ok_values(g))
        row = r.row(g, "val.acc")
        low, high = scipy_stats.t.interval(0.95, len(x) - 1, loc=x.mean(),
                                           scale=scipy_stats.sem(x))
        assert row.n == len(x) and row.mean == pytest.approx(x.mean())
        assert row.std == pytest.approx(x.std(ddof=1))
        assert (row.ci_low, row.ci_high) == (pytest.approx(low), pytest.approx(high))
        assert r.row(g, "test.acc").mean == pytest.approx(x.mean() - 0.01)
    # Pairwise against the baseline (relu) only, Welch's test as scipy computes it.
    pairs = [(p.group, p.reference, p.metric) for p in r.pairwise]
    assert pairs == [("tanh", "relu", "val.acc"), ("gelu", "relu", "val.acc"),
                     ("tanh", "relu", "test.acc"), ("gelu", "relu", "test.acc")]
    for p in r.pairwise:
        ref = scipy_stats.ttest_ind(ok_values(p.group), ok_values("relu"), equal_var=False)
        assert p.p_value == pytest.approx(ref.pvalue, rel=1e-9)
        assert p.ci_low == pytest.approx(ref.confidence_interval().low, rel=1e-9)
        assert p.boot_low <= p.diff <= p.boot_high
    family = [p.p_value for p in r.pairwise if p.metric == "val.acc"]
    assert max(p.p_holm for p in r.pairwise if p.metric == "val.acc") == pytest.approx(
        min(1.0, max(2 * min(family), max(family))))
    # Curves: per-epoch mean over seeds and the t band.
    band = r.curves["val.acc"]["gelu"]
    assert band.epochs == [1, 2, 3]
    for e, scale in enumerate(EPOCH_SCALE):
        x = np.array(FINAL["gelu"]) * scale
        assert band.mean[e] == pytest.approx(x.mean())
        half = scipy_stats.t.ppf(0.975, 2) * x.std(ddof=1) / math.sqrt(3)
        assert band.high[e] == pytest.approx(x.mean() + half)
    # Targets: epoch when val.acc first >= target; time = train_time_s of that epoch (2 s/epoch).
    t = next(t for t in r.targets if t.group == "tanh" and t.target == 0.8)
    # tanh seeds 0, 1: 0.85 * 0.95 = 0.8075 (epoch 2), 0.88 * 0.95 = 0.836 (epoch 2).
    assert (t.reached, t.n, t.epochs.mean, t.time_s.mean) == (2, 2, 2.0, 4.0)
    t = next(t for t in r.targets if t.group == "relu" and t.target == 0.9)
    # relu: 0.90 (epoch 3), 0.92 (epoch 3), 0.91 (epoch 3); 0.95 * 0.92 = 0.874 < 0.9.
    assert (t.reached, t.epochs.mean) == (3, 3.0)


def test_all_pairs_when_no_baseline(tmp_path):
    study_dir = build_fake_study(tmp_path / "runs", baseline=None, pairwise="all",
                                 bootstrap_resamples=0, band="std")
    r = aggregate_study(study_dir)
    x = np.array(FINAL["relu"]) * EPOCH_SCALE[0]
    band = r.curves["val.acc"]["relu"]
    assert (band.low[0], band.high[0]) == (pytest.approx(x.mean() - x.std(ddof=1)),
                                           pytest.approx(x.mean() + x.std(ddof=1)))
    assert {(p.group, p.reference) for p in r.pairwise} == {("tanh", "relu"), ("gelu", "relu"),
                                                            ("gelu", "tanh")}
    assert all(math.isnan(p.boot_low) for p in r.pairwise)


def test_report_markdown_html_csv_json_carry_the_aggregate(fake_study_dir):
    r = aggregate_study(fake_study_dir)
    files = write_report(r, report_command=["archlab", "study", "report", "X"])
    md = files.markdown.read_text()
    relu = r.row("relu", "val.acc")
    assert f"| relu | {relu.mean:.4f} ± {relu.std:.4f} |" in md
    assert "| tanh seed=2 | failed |" in md and "non-finite loss" in md
    assert "full mode" in md and "cores" in md and "torch" in md
    assert "`archlab study run fake.yaml`" in md and "`archlab study report X`" in md
    assert "Hedges' g" in md and "Welch" in md
    images = re.findall(r"!\[[^]]*\]\(([^)]+)\)", md)
    assert len(images) == 2  # summary dot plot + the val.acc curve
    for image in images:
        assert (files.markdown.parent / image).is_file()

    page = files.html.read_text()
    srcs = re.findall(r'src="([^"]*)"', page)
    assert len(srcs) == len(images) and all(s.startswith("data:image/png;base64,") for s in srcs)
    assert "http://" not in page and "https://" not in page and "<link" not in page
    assert "<table>" in page and f"{relu.mean:.4f} ± {relu.std:.4f}" in page

    with (files.markdown.parent / "summary.csv").open() as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == len(r.summary)
    for row, ref in zip(rows, r.summary):
        assert (row["group"], row["metric"]) == (ref.group, ref.metric)
        assert float(row["mean"]) == ref.mean and float(row["ci_high"]) == ref.ci_high
    data = json.loads(files.json.read_text())
    assert [p["p_value"] for p in data["pairwise"]] == [p.p_value for p in r.pairwise]
    assert data["curves"]["val.acc"]["relu"]["mean"] == r.curves["val.acc"]["relu"].mean
    failed = [t for t in data["trials"] if t["status"] == "failed"]
    assert [t["key"] for t in failed] == ["tanh seed=2"]


def test_quick_study_says_so(tmp_path):
    import yaml

    study_dir = build_fake_study(tmp_path / "runs")
    resolved = yaml.safe_load((study_dir / "study.yaml").read_text())
    resolved["quick"] = True
    (study_dir / "study.yaml").write_text(yaml.safe_dump(resolved))
    files = write_report(aggregate_study(study_dir))
    assert "QUICK mode" in files.markdown.read_text()
    assert 'class="quick"' in files.html.read_text()


def test_not_a_study_directory_is_a_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="not a study directory"):
        aggregate_study(tmp_path)


def test_diagnostic_sections_and_recommendations_come_from_the_measurements(tmp_path):
    from archlab.studies.report import build_sections

    study_dir = build_fake_study(tmp_path / "runs", sections=["grad_flow", "dead_units",
                                                              "recommendations"])
    sections = {s.title: s for s in build_sections(aggregate_study(study_dir),
                                                   tmp_path / "figures")}
    flow = next(b for b in sections["Gradient flow"].blocks if hasattr(b, "rows"))
    ratios = {row[0]: float(row[1]) for row in flow.rows}
    assert ratios == {g: pytest.approx(v) for g, v in DEPTH_RATIO.items()}
    dead = next(b for b in sections["Dead units"].blocks if hasattr(b, "rows"))
    # relu: 4 dead of 32 units = 12.5% (never positive: the same); gelu cannot die but 2 of its
    # 16 units never went positive = 12.5%; tanh has no rectifier units at all.
    rows = {r[0]: r[1:] for r in dead.rows}
    assert rows["relu"] == ["12.5%", "12.5%"]
    assert rows["gelu"][0].startswith("– (no exact-zero") and rows["gelu"][1] == "12.5%"
    assert rows["tanh"][1].startswith("n/a")
    recs = sections["Recommendations"]
    table = {row[0]: row[1:] for row in recs.blocks[0].rows}
    # Direct from FINAL: gelu has the highest mean val.acc, tanh (2 seeds) the lowest;
    # relu the smallest std (0.01); gelu's ratio 0.9 is closest to 1, tanh's 1e-3 farthest.
    assert table["final val.acc (mean over seeds)"][0::2] == ["gelu", "tanh"]
    assert table["stability: std of val.acc over seeds (among the contenders)"][0] == "relu"
    assert table["gradient flow: |log10 first/last layer grad ratio| at init"][0::2] == [
        "gelu", "tanh"]
    text = recs.blocks[-1].text
    assert text.startswith("Highest val.acc: gelu") and "relu" in text


def test_grad_flow_profile_keeps_only_weight_tensors_of_two_or_more_dims():
    from archlab.studies.diagnostic_sections import grad_norms

    record = {"layers": {"conv.weight": {"norm": 2.0, "mean_abs": 0.1},
                         "bn.weight": {"norm": 0.3, "mean_abs": 0.05},  # a 1-d BN scale
                         "bn.bias": {"norm": 0.2, "mean_abs": 0.04},
                         "act.weight": {"norm": 0.7, "mean_abs": 0.7},  # PReLU slope, 1 value
                         "fc.weight": {"norm": 1.0, "mean_abs": 0.02}}}
    shapes = {"conv.weight": {"shape": [8, 1, 3, 3]}, "bn.weight": {"shape": [8]},
              "bn.bias": {"shape": [8]}, "act.weight": {"shape": [1]},
              "fc.weight": {"shape": [10, 8]}}
    assert grad_norms(record, shapes) == {"conv.weight": 2.0, "fc.weight": 1.0}
    # Runs without the parameters record: by name, so the BN scale stays in (documented).
    assert grad_norms(record) == {"conv.weight": 2.0, "bn.weight": 0.3, "fc.weight": 1.0}
