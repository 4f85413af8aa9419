"""Comparison mode: the Pareto frontier against its definition, and two real tiny trained runs
profiled with their store accuracy and their config's model."""

from __future__ import annotations

import random

import pytest
import yaml

from archlab.runs.config import load_config
from archlab.models import count_flops, create_model
from archlab.profiling import compare, comparison_table, pareto_front, plot_pareto
from archlab.runs.evaluation import load_run_target
from archlab.runs.experiment import run_experiment
from archlab.runs.store import RunNotFoundError, RunStore
from tests.conftest import TINY


def _dominated(i, costs, scores):
    return any(costs[j] <= costs[i] and scores[j] >= scores[i]
               and (costs[j] < costs[i] or scores[j] > scores[i]) for j in range(len(costs)))


def test_pareto_front_by_hand():
    costs = [1.0, 2.0, 3.0, 2.0, 5.0]
    accs = [0.50, 0.70, 0.65, 0.60, 0.90]
    # 2 (3.0, .65) is beaten by 1 (2.0, .70); 3 (2.0, .60) by 1 at equal cost
    assert pareto_front(costs, accs) == [0, 1, 4]


@pytest.mark.parametrize("seed", range(5))
def test_pareto_front_matches_the_definition(seed):
    rng = random.Random(seed)
    # coarse grid values create ties in cost, in score and duplicate points
    costs = [rng.choice([1, 2, 3, 4]) for _ in range(12)]
    scores = [rng.choice([0.1, 0.2, 0.3]) for _ in range(12)]
    front = pareto_front(costs, scores)
    assert sorted(front) == [i for i in range(12) if not _dominated(i, costs, scores)]
    assert [costs[i] for i in front] == sorted(costs[i] for i in front)
    with pytest.raises(ValueError, match="length"):
        pareto_front([1.0], [])


@pytest.fixture(scope="module")
def two_runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("runs")
    results = [run_experiment(load_config(None, [*TINY, "experiment=cmp", *extra]), runs_dir=root)
               for extra in ([], ["model.name=cnn_small", "optim.lr=0.02"])]
    assert all(r.ok for r in results)
    return root, results


def test_runs_are_profiled_with_their_accuracy_and_model(two_runs, tmp_path):
    root, results = two_runs
    store = RunStore(root)
    target = load_run_target(results[0].run_dir)  # a run directory finds its own store
    assert target.accuracy == store.get(results[0].run_id).metrics["test.acc"]
    assert target.model_name == "cnn_tiny" and target.input_size == (1, 8, 8)
    # A unique prefix: both runs may start in the same second, so extend until they differ.
    mine, other = results[1].run_id, results[0].run_id
    prefix = next(mine[:n] for n in range(17, len(mine) + 1) if not other.startswith(mine[:n]))
    by_id = load_run_target(prefix, runs_dir=root)
    assert by_id.run_id == results[1].run_id

    by_name = load_run_target(results[0].run_id, runs_dir=root)
    reports = compare([by_name, by_id, "cnn_tiny"], batch_sizes=[2],
                      runs=2, warmup=0, memory=False, model_options={"img_size": 8,
                                                                      "in_chans": 1})
    for report, result in zip(reports, results):
        # independent reference: the model named in the run's own config.yaml, built directly
        model_cfg = yaml.safe_load((result.run_dir / "config.yaml").read_text())["model"]
        reference = create_model(model_cfg["name"], num_classes=10, in_chans=1,
                                 **model_cfg["options"])
        assert report.params == sum(p.numel() for p in reference.parameters())
        assert report.flops == count_flops(reference, (1, 8, 8))
        assert report.accuracy == store.get(result.run_id).metrics["test.acc"]
        assert report.target == result.run_id and report.model == model_cfg["name"]
    assert reports[0].params != reports[1].params  # cnn_tiny vs cnn_small
    assert reports[2].accuracy is None and reports[2].target == "cnn_tiny"

    table = comparison_table(reports)
    for r in reports:
        assert r.target in table
    png = plot_pareto(reports, tmp_path / "plots" / "pareto.png")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 10_000
    with pytest.raises(ValueError, match="at least one run"):
        plot_pareto(reports[2:], tmp_path / "none.png")


def test_unknown_run_is_a_clear_error(tmp_path):
    with pytest.raises(RunNotFoundError, match="no run"):
        load_run_target("20990101-nothing", runs_dir=tmp_path)
