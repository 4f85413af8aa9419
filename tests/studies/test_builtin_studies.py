"""The built-in studies under studies/ and the report sections they added (cost, tradeoff,
epoch_time, samples, generalization_gap, degradation).

The YAMLs are expanded without training. The sections run on small study directories built by
hand (real trial expansion, a real run store, config.yaml / metrics.jsonl / checkpoints written
directly), and every number is checked against a direct computation in the test: parameters as
sum(p.numel()), FLOPs as count_flops, gaps and drops from the numbers written, the drop's
interval as scipy's Welch interval, predictions as the model's own softmax on the test images.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from scipy import stats as scipy_stats

from archlab.runs.config import load_config
from archlab.data.pipeline import load_dataset
from archlab.models._factory import count_flops
from archlab.runs.store import RunStore
from archlab.studies import aggregate_study, load_study
from archlab.studies.cost_sections import cost_section, epoch_time_section, tradeoff_section
from archlab.studies.degradation_section import degradation_section
from archlab.studies.generalization_sections import generalization_gap_section
from archlab.studies.runner import _write_resolved, study_dir_for, write_ledger
from archlab.studies.sample_sections import SAMPLE_COUNT, samples_section
from archlab.studies.sections import ReportContext, Table, Text
from archlab.studies.spec import build_study
from archlab.studies.trials import expand_groups, expand_trials
from archlab.train.checkpoint_io import save_checkpoint

STUDIES = sorted((Path(__file__).resolve().parents[2] / "studies").glob("*.yaml"))


# ---------------------------------------------------------------------- the YAMLs themselves
def test_the_five_new_studies_exist():
    names = {p.stem for p in STUDIES}
    assert {"skip_connections", "architectures", "efficient", "optimizers",
            "regularization"} <= names


def _data_fraction(cfg: dict) -> float:
    """Fraction of the training split a trial uses (1 without a subset)."""
    data = cfg["data"]
    return data["subset_fraction"] if data.get("subset_fraction") is not None else 1.0


@pytest.mark.parametrize("path", STUDIES, ids=lambda p: p.stem)
def test_study_expands_full_and_quick_into_valid_trials(path):
    study = load_study(path)
    full = expand_trials(study, study_file=path)
    quick = expand_trials(study, quick=True, study_file=path)
    groups = [g[0] for g in expand_groups(study)]
    # every configuration × seed is a trial whose config validated (expand_trials raises if not)
    assert len(full) == len(groups) * len(study.seeds)
    assert len({t.seed for t in quick}) <= 2
    assert len(quick) == len(groups) * len({t.seed for t in quick})
    assert study.report.baseline in groups, "the baseline must be one of the configurations"
    assert all(t.config["data"]["name"] == "fashion_mnist" for t in full)
    # quick mode must be cheaper for every configuration: fewer epochs and less data
    by_group = {t.group: t.config for t in full}
    for t in quick:
        ref = by_group[t.group]
        assert t.config["train"]["epochs"] < ref["train"]["epochs"], t.key
        assert _data_fraction(t.config) < _data_fraction(ref), t.key
        # nothing but the budget changes: the model and the optimizer are the full study's
        assert t.config["model"] == ref["model"] and t.config["optim"] == ref["optim"], t.key


@pytest.mark.parametrize("path", STUDIES, ids=lambda p: p.stem)
def test_study_header_names_full_and_quick_commands(path):
    header = path.read_text().split("\nname:")[0]
    assert f"archlab study run studies/{path.name} --jobs 2" in header
    assert f"archlab study run studies/{path.name} --quick --jobs 2" in header


def test_efficient_models_are_all_under_500k_params():
    from archlab.models import create_model

    study = load_study(STUDIES[0].parent / "efficient.yaml")
    for trial in expand_trials(study):
        if trial.seed != study.seeds[0]:
            continue
        model_cfg = trial.config["model"]
        model = create_model(model_cfg["name"], num_classes=10, in_chans=1,
                             **model_cfg["options"])
        assert sum(p.numel() for p in model.parameters()) < 500_000, trial.group


# ---------------------------------------------------------------------- hand-built study dirs
DIGITS = {"data.name": "digits", "train.epochs": 3, "callbacks.progress": False}


def build_study_dir(runs_dir: Path, tree: dict, numbers, checkpoints: bool = False) -> Path:
    """A study directory whose runs carry config.yaml and the metrics ``numbers(group, seed)``
    returns: {"final": {...store metrics}, "history": [per-epoch dicts]}."""
    study = build_study(tree)
    trials = expand_trials(study)
    store = RunStore(runs_dir)
    study_dir = study_dir_for(runs_dir, study.name)
    study_dir.mkdir(parents=True)
    _write_resolved(study_dir, study, trials, False, runs_dir.resolve(), None,
                    ["archlab", "study", "run", "test.yaml"], 1)
    ledger = {"study": study.name, "quick": False, "runs_dir": str(runs_dir.resolve()),
              "trials": {}}
    for trial in trials:
        record = store.create_run(study.name, seed=trial.seed)
        (record.path / "config.yaml").write_text(yaml.safe_dump(trial.config))
        n = numbers(trial.group, trial.seed)
        with (record.path / "metrics.jsonl").open("w") as f:
            for epoch, h in enumerate(n["history"], 1):
                f.write(json.dumps({"step": 10 * epoch, "epoch": epoch, **h}) + "\n")
        if checkpoints:
            cfg = load_config(None, list(trial.overrides))
            torch.manual_seed(trial.seed)
            model = cfg.model.build(num_classes=10, in_chans=1)
            (record.path / "checkpoints").mkdir(exist_ok=True)
            save_checkpoint({"config": trial.config, "model": model.state_dict()},
                            record.path / "checkpoints" / "last.ckpt")
        store.update(record.run_id, status="completed", metrics=n["final"])
        ledger["trials"][trial.key] = {
            "group": trial.group, "variant": trial.variant, "point": trial.point,
            "seed": trial.seed, "fingerprint": trial.fingerprint, "status": "completed",
            "run_id": record.run_id, "run_dir": str(record.path), "error": None}
    write_ledger(study_dir, ledger)
    return study_dir


#: test.acc per seed; "wide" is the baseline, "narrow" loses 1.5 points, "tiny" 14.
ACC = {"wide": [0.95, 0.96, 0.97], "narrow": [0.94, 0.945, 0.95], "tiny": [0.80, 0.82, 0.84]}
WIDTH = {"wide": 32, "narrow": 8, "tiny": 2}
EPOCH_S = {"wide": 2.0, "narrow": 1.0, "tiny": 0.5}


def _mlp_numbers(group, seed):
    acc = ACC[group][seed]
    history = [{"train.acc": acc + 0.03 * e, "train.loss": 0.5 / e, "val.acc": acc - 0.01 * e,
                "val.loss": 0.4 + 0.05 * e, "train_time_s": EPOCH_S[group] * e}
               for e in (1, 2, 3)]
    return {"final": {"val.acc": acc, "test.acc": acc, "train_time_s": 3 * EPOCH_S[group],
                      "epochs": 3}, "history": history}


@pytest.fixture(scope="module")
def mlp_study(tmp_path_factory):
    tree = {"name": "mlps", "overrides": {**DIGITS, "model.name": "mlp",
                                          "model.options": {"img_size": 8, "depth": 2}},
            "variants": {g: {"model.options.width": w} for g, w in WIDTH.items()},
            "seeds": [0, 1, 2],
            "report": {"metrics": ["val.acc", "test.acc"], "baseline": "wide",
                       "sections": ["cost", "tradeoff", "epoch_time", "generalization_gap",
                                    "samples"]}}
    runs = tmp_path_factory.mktemp("mlp_study") / "runs"
    study_dir = build_study_dir(runs, tree, _mlp_numbers, checkpoints=True)
    results = aggregate_study(study_dir)
    return ReportContext(results, study_dir / "figures")


def _mlp(width: int):
    from archlab.models import create_model

    return create_model("mlp", num_classes=10, in_chans=1, img_size=8, depth=2, width=width)


def _table(section, first_header: str = "configuration") -> dict[str, dict[str, str]]:
    table = next(b for b in section.blocks if isinstance(b, Table))
    assert table.header[0] == first_header
    return {row[0]: dict(zip(table.header, row)) for row in table.rows}


def test_cost_section_params_and_flops_match_direct_counts(mlp_study):
    rows = _table(cost_section(mlp_study))
    for group, width in WIDTH.items():
        model = _mlp(width)
        assert rows[group]["params"] == f"{sum(p.numel() for p in model.parameters()):,}"
        assert float(rows[group]["MFLOPs (fwd, batch 1)"]) == pytest.approx(
            count_flops(model, (1, 8, 8)) / 1e6, abs=0.006)
        median, p90 = (float(x) for x in rows[group]["CPU ms median / p90 (batch 1)"].split("/"))
        assert 0 < median <= p90
        # time per epoch = train_time_s / epochs of each seed, all equal here
        assert rows[group]["train s / epoch (mean ± std)"].startswith(
            f"{EPOCH_S[group]:.2f} ± 0.00")
    assert (mlp_study.figures_dir / "pareto.png").is_file()


def test_tradeoff_table_matches_direct_computation(mlp_study):
    from archlab.studies.cost_sections import variant_costs

    section = tradeoff_section(mlp_study)
    table = next(b for b in section.blocks if isinstance(b, Table))
    rows = {r[0]: r for r in table.rows}
    costs = variant_costs(mlp_study.results)
    base_model = _mlp(WIDTH["wide"])
    for group in ("narrow", "tiny"):
        row = rows[group]
        drop = np.mean(ACC["wide"]) - np.mean(ACC[group])
        assert float(row[1]) == pytest.approx(drop, abs=1e-4)
        # Welch interval of (group − wide), negated, from scipy
        a, b = np.array(ACC[group]), np.array(ACC["wide"])
        va, vb = a.var(ddof=1) / len(a), b.var(ddof=1) / len(b)
        df = (va + vb) ** 2 / (va ** 2 / (len(a) - 1) + vb ** 2 / (len(b) - 1))
        half = scipy_stats.t.ppf(0.975, df) * math.sqrt(va + vb)
        low, high = (float(x) for x in row[2].strip("[]").split(","))
        assert low == pytest.approx(drop - half, abs=1e-4)
        assert high == pytest.approx(drop + half, abs=1e-4)
        model = _mlp(WIDTH[group])
        flops_x = count_flops(base_model, (1, 8, 8)) / count_flops(model, (1, 8, 8))
        params_x = (sum(p.numel() for p in base_model.parameters())
                    / sum(p.numel() for p in model.parameters()))
        assert float(row[3].rstrip("×")) == pytest.approx(flops_x, abs=0.006)
        assert float(row[5].rstrip("×")) == pytest.approx(params_x, abs=0.006)
        lat_x = costs["wide"].latency[1].median_ms / costs[group].latency[1].median_ms
        assert float(row[4].rstrip("×")) == pytest.approx(lat_x, rel=0.01, abs=0.006)
        expected_goal = drop < 0.02 and flops_x >= 3.0
        assert row[6] == ("yes" if expected_goal else "no")
    assert rows["narrow"][6] == "yes" and rows["tiny"][6] == "no"  # the numbers were chosen so


def test_epoch_time_section_relative_to_baseline(mlp_study):
    rows = _table(epoch_time_section(mlp_study))
    for group in WIDTH:
        ratio = rows[group][next(k for k in rows[group] if k.startswith("relative"))]
        assert float(ratio.rstrip("×")) == pytest.approx(EPOCH_S[group] / EPOCH_S["wide"],
                                                         abs=0.006)


def test_generalization_gap_matches_the_written_curves(mlp_study):
    rows = _table(generalization_gap_section(mlp_study))
    for group in WIDTH:
        last = [_mlp_numbers(group, s)["history"][-1] for s in (0, 1, 2)]
        acc_gap = [h["train.acc"] - h["val.acc"] for h in last]
        loss_gap = [h["val.loss"] - h["train.loss"] for h in last]
        mean, std = (float(x) for x in rows[group]["acc gap (train − val)"].split("±"))
        assert mean == pytest.approx(np.mean(acc_gap), abs=1e-4)
        assert std == pytest.approx(np.std(acc_gap, ddof=1), abs=1e-4)
        assert float(rows[group]["loss gap (val − train)"].split("±")[0]) == pytest.approx(
            np.mean(loss_gap), abs=1e-4)
        assert float(rows[group]["train acc"]) == pytest.approx(
            np.mean([h["train.acc"] for h in last]), abs=1e-4)


def test_samples_section_uses_best_seed_and_its_own_predictions(mlp_study):
    from archlab.studies.sample_sections import best_trial, checkpoint_of

    section = samples_section(mlp_study)
    rows = _table(section)
    bundle = load_dataset(load_config(None, ["data.name=digits"]).data)
    for group in WIDTH:
        trial = best_trial(mlp_study.results, group, "test.acc")
        assert trial.seed == int(np.argmax(ACC[group]))  # seed 2 has the highest test.acc
        assert rows[group]["best seed"].startswith(f"seed {trial.seed}")
        # direct reference: the saved weights on the first test images, normalized by hand
        ckpt = torch.load(checkpoint_of(trial), weights_only=False)
        model = _mlp(WIDTH[group])
        model.load_state_dict(ckpt["model"])
        model.eval()
        x, y = _first_test_images(bundle, SAMPLE_COUNT)
        with torch.no_grad():
            probs = model(x).softmax(1)
        correct = probs.argmax(1) == y
        assert rows[group]["correct"] == f"{int(correct.sum())}/{SAMPLE_COUNT}"
        assert float(rows[group]["mean confidence"]) == pytest.approx(
            probs.max(1).values.mean().item(), abs=1e-3)
    figures = [b for b in section.blocks if not isinstance(b, (Table, Text))]
    assert len(figures) == len(WIDTH) and all(f.path.is_file() for f in figures)


def _first_test_images(bundle, n):
    """First ``n`` test images (uint8) as (x / 255 - mean) / std, and their labels."""
    x = bundle.test.images[:n].float() / 255.0
    mean = torch.tensor(bundle.mean).view(1, -1, 1, 1)
    std = torch.tensor(bundle.std).view(1, -1, 1, 1)
    return (x - mean) / std, bundle.test.labels[:n]


# ---------------------------------------------------------------------- degradation
def _degradation_dir(tmp_path, plain_deep_loss: float) -> ReportContext:
    tree = {"name": "skips", "overrides": {**DIGITS, "model.options": {}},
            "variants": {"plain20": {"model.name": "plain20"},
                         "plain56": {"model.name": "plain56"},
                         "resnet20": {"model.name": "resnet20"},
                         "resnet56": {"model.name": "resnet56", "model.options.shortcut": "A"},
                         "resnet56_B": {"model.name": "resnet56",
                                        "model.options.shortcut": "B"}},
            "seeds": [0, 1],
            "report": {"metrics": ["test.acc"], "baseline": "resnet20"}}
    loss = {"plain20": 0.30, "plain56": plain_deep_loss, "resnet20": 0.30, "resnet56": 0.20,
            "resnet56_B": 0.19}
    acc = {"plain20": 0.90, "plain56": 0.86, "resnet20": 0.90, "resnet56": 0.92,
           "resnet56_B": 0.925}

    def numbers(group, seed):
        jitter = 0.01 * seed
        return {"final": {"test.acc": acc[group] + jitter},
                "history": [{"train.loss": loss[group] + 0.5, "train.acc": 0.5, "val.acc": 0.5},
                            {"train.loss": loss[group] + jitter, "train.acc": 1 - loss[group],
                             "val.acc": acc[group]}]}
    study_dir = build_study_dir(tmp_path / "runs", tree, numbers)
    return ReportContext(aggregate_study(study_dir), study_dir / "figures")


def test_degradation_section_states_what_the_numbers_show(tmp_path):
    ctx = _degradation_dir(tmp_path, plain_deep_loss=0.45)
    section = degradation_section(ctx)
    table = section.blocks[0]
    rows = {r[0]: r for r in table.rows}
    # plain: 0.30 (+0.005 mean jitter) -> 0.45 (+0.005)
    assert rows["plain"][2] == "0.3050 → 0.4550"
    assert rows["resnet (shortcut A)"][1] == "resnet20 → resnet56"
    text = section.blocks[1].text
    assert "degradation effect is shown" in text and "depth helps the residual net" in text
    shortcut = section.blocks[2]
    (row,) = shortcut.rows
    assert row[1:3] == ["resnet56", "resnet56_B"]
    assert float(row[5]) == pytest.approx((0.925 + 0.005) - (0.92 + 0.005), abs=1e-4)


def test_degradation_section_says_when_it_is_not_shown(tmp_path):
    ctx = _degradation_dir(tmp_path, plain_deep_loss=0.25)  # deeper plain net trains better
    text = degradation_section(ctx).blocks[1].text
    assert "no degradation at this budget" in text
    assert "degradation effect is shown" not in text
    assert "Single seed" not in text  # two seeds here: no single-seed caveat
