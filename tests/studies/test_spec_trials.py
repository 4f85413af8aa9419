"""Study YAML -> trials: grid and variant expansion, override order, quick mode, and strict
validation that fails before any trial runs."""

from __future__ import annotations

import pytest

from archlab.runs.config import ConfigError, load_config
from archlab.studies import runner
from archlab.studies.spec import build_study, load_study, study_to_dict
from archlab.studies.trials import expand_trials

BASE = {"data.name": "digits", "model.name": "cnn_tiny", "model.options": {"img_size": 8},
        "callbacks.progress": False}


def tree(**extra):
    return {"name": "grid", "overrides": dict(BASE), "seeds": [0, 1], **extra}


def test_variants_cross_axes_cross_seeds_with_labels_and_override_order():
    study = build_study(tree(
        variants={"narrow": {"model.options.act": "relu"}, "wide": ["model.options.act=tanh"]},
        axes={"optim.lr": [0.01, 0.1], "train.epochs": [1, 2]}))
    trials = expand_trials(study)
    assert len(trials) == 2 * 2 * 2 * 2
    # Seed-major order: one full replicate first.
    assert [t.seed for t in trials] == [0] * 8 + [1] * 8
    keys = {t.key for t in trials}
    assert "narrow lr=0.01 epochs=1 seed=0" in keys and "wide lr=0.1 epochs=2 seed=1" in keys
    t = next(t for t in trials if t.key == "wide lr=0.1 epochs=2 seed=1")
    assert t.group == "wide lr=0.1 epochs=2" and t.point == {"optim.lr": 0.1, "train.epochs": 2}
    # The trial's config is exactly the override loader's result for its override list.
    base = [f"{k}={v}" if not isinstance(v, dict) else "model.options={img_size: 8}"
            for k, v in BASE.items()]
    ref = load_config(None, base
                      + ["model.options.act=tanh", "optim.lr=0.1", "train.epochs=2",
                         "train.seed=1", "experiment=grid"])
    from archlab.runs.config import config_to_dict

    assert t.config == config_to_dict(ref)
    assert t.config["model"]["options"] == {"img_size": 8, "act": "tanh"}
    # Same config, same fingerprint; any difference, a different one.
    assert len({x.fingerprint for x in trials}) == len(trials)


def test_axis_labels_use_full_key_when_short_names_collide():
    from archlab.studies.trials import axis_labels, group_label

    axes = {"optim.lr": [0.1], "data.options.lr": [1], "train.epochs": [2]}
    labels = axis_labels(axes)
    assert labels == {"optim.lr": "optim.lr", "data.options.lr": "data.options.lr",
                      "train.epochs": "epochs"}
    assert group_label("v", {"optim.lr": 0.1, "train.epochs": 2}, labels) == \
        "v optim.lr=0.1 epochs=2"


def test_no_variants_no_axes_is_one_configuration():
    trials = expand_trials(build_study(tree()))
    assert [t.key for t in trials] == ["base seed=0", "base seed=1"]


def test_quick_mode_applies_its_overrides_last_and_its_seeds():
    study = build_study(tree(axes={"train.epochs": [5, 6]}, seeds=[0, 1, 2],
                             quick={"overrides": {"train.epochs": 1,
                                                  "data.subset_fraction": 0.5},
                                    "seeds": [3]}))
    full, quick = expand_trials(study), expand_trials(study, quick=True)
    assert len(full) == 6 and {t.config["train"]["epochs"] for t in full} == {5, 6}
    assert len(quick) == 2 and {t.seed for t in quick} == {3}
    assert {t.config["train"]["epochs"] for t in quick} == {1}
    assert {t.config["data"]["subset_fraction"] for t in quick} == {0.5}


def test_unknown_study_key_is_named_with_a_suggestion():
    with pytest.raises(ConfigError, match=r"sedes: unknown key; did you mean 'seeds'"):
        build_study(tree(sedes=[0]))
    with pytest.raises(ConfigError, match=r"report.metric: unknown key; did you mean 'metrics'"):
        build_study(tree(report={"metric": ["val.acc"]}))
    with pytest.raises(ConfigError, match="unknown report section 'grad_flw'"):
        build_study(tree(report={"sections": ["grad_flw"]}))
    with pytest.raises(ConfigError, match="seeds must be distinct"):
        build_study(tree(seeds=[1, 1]))
    with pytest.raises(ConfigError, match="name"):
        build_study(tree(name="a/b"))


def test_bad_trial_config_fails_before_any_trial_runs(monkeypatch, tmp_path):
    calls = []
    monkeypatch.setattr(runner, "run_trial", lambda payload: calls.append(payload))
    study = build_study(tree(variants={"ok": {"optim.lr": 0.1},
                                       "typo": {"optim.lrr": 0.1},
                                       "neg": {"train.epochs": -1}}))
    with pytest.raises(ConfigError) as e:
        runner.run_study(study, runs_dir=tmp_path, log=None)
    message = str(e.value)
    assert "configuration 'typo'" in message and "optim.lrr" in message
    assert "configuration 'neg'" in message and "train.epochs" in message
    assert "'ok'" not in message and calls == []
    assert not (tmp_path / "studies").exists()


def test_unknown_baseline_is_rejected_with_the_choices():
    study = build_study(tree(variants={"a": {"optim.lr": 0.1}, "b": {"optim.lr": 0.2}},
                             report={"baseline": "c"}))
    with pytest.raises(ConfigError, match="baseline 'c' is not one of the configurations: a, b"):
        expand_trials(study)


def test_study_file_base_is_relative_to_the_study_file(tmp_path):
    (tmp_path / "configs").mkdir()
    (tmp_path / "configs" / "base.yaml").write_text(
        "data: {name: digits}\nmodel: {name: cnn_tiny, options: {img_size: 8}}\n"
        "train: {epochs: 7}\n")
    (tmp_path / "studies").mkdir()
    path = tmp_path / "studies" / "s.yaml"
    path.write_text("name: s\nbase: ../configs/base.yaml\nseeds: [0]\n"
                    "variants:\n  a: ['optim.lr=0.3']\n")
    study = load_study(path)
    [trial] = expand_trials(study, study_file=path)
    assert trial.config["train"]["epochs"] == 7 and trial.config["optim"]["lr"] == 0.3
    assert build_study(study_to_dict(study)) == study
    path.write_text("name: s\nbase: ../configs/missing.yaml\n")
    with pytest.raises(ConfigError, match="base config not found"):
        expand_trials(load_study(path), study_file=path)
