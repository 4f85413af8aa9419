"""The Diagnostics callback in real tiny runs: config short forms, records that equal direct
computation at the same step, hooks present only on measured steps, plots, the vanishing
warning (deep sigmoid MLP vs shallow ReLU MLP) and the NaN diagnosis in the run's error."""

from __future__ import annotations

import json
import warnings

import pytest
import torch
from torch import nn

from archlab.analysis.diagnostic_plots import plot_diagnostics
from archlab.analysis.diagnostics import DIAGNOSTIC_PARTS
from archlab.analysis.grad_flow import GradientFlowWarning
from archlab.runs.config import ConfigError, build_config, config_to_dict, load_config
from archlab.runs.experiment import run_experiment
from archlab.runs.store import RunStore, read_metrics
from archlab.train.callbacks import Callback

PNGS = ["activation_histograms.png", "activation_stats.png", "bn_stats.png", "dead_units.png",
        "grad_flow.png", "weight_stats.png"]


def is_png(path) -> bool:
    return path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and path.stat().st_size > 10_000


def read_records(run_dir) -> list[dict]:
    return [json.loads(line) for line in (run_dir / "diagnostics.jsonl").read_text().splitlines()]


# ----------------------------------------------------------------------------- config
def test_short_forms_full_form_and_clear_errors(tmp_path):
    def parts(*overrides):
        return load_config(None, list(overrides)).diagnostics.parts

    assert load_config(None, []).diagnostics.enabled is False  # default: all off, zero cost
    assert parts("diagnostics=all") == list(DIAGNOSTIC_PARTS)
    assert parts("diagnostics=true") == list(DIAGNOSTIC_PARTS)
    assert parts("diagnostics=[grad_flow,dead_units]") == ["grad_flow", "dead_units"]
    assert parts("diagnostics=dead_units") == ["dead_units"]
    assert parts("diagnostics=none") == [] and parts("diagnostics=false") == []
    assert parts("diagnostics.weight_stats=true") == ["weight_stats"]
    cfg = load_config(None, ["diagnostics={grad_flow: true, every_steps: 20}"]).diagnostics
    assert cfg.parts == ["grad_flow"] and cfg.every_steps == 20
    yaml_file = tmp_path / "c.yaml"
    yaml_file.write_text("diagnostics:\n  nonfinite: true\n  histogram_epochs: [2, -1]\n")
    full = load_config(yaml_file)
    assert full.diagnostics.parts == ["nonfinite"] and full.diagnostics.histogram_epochs == (2, -1)
    assert build_config(config_to_dict(full)) == full  # the saved run config rebuilds it

    with pytest.raises(ConfigError) as err:
        load_config(None, ["diagnostics=[grad_flow,dead_unit]"])
    message = str(err.value)
    assert "unknown diagnostic 'dead_unit'" in message and "did you mean dead_units" in message
    assert "valid choices: " + ", ".join(DIAGNOSTIC_PARTS) in message
    with pytest.raises(ConfigError, match=r"diagnostics.grad_flw: unknown key; did you mean "
                                          r"'grad_flow'"):
        load_config(None, ["diagnostics={grad_flw: true}"])
    with pytest.raises(ConfigError, match="1-based"):
        load_config(None, ["diagnostics={dead_units: true, histogram_epochs: [0]}"])
    with pytest.raises(ConfigError, match="diagnostics must be 'all'"):
        load_config(None, ["diagnostics=3"])
    # A short form on the command line can be refined by later dotted overrides.
    refined = load_config(None, ["diagnostics=all", "diagnostics.every_steps=20"]).diagnostics
    assert refined.parts == list(DIAGNOSTIC_PARTS) and refined.every_steps == 20
    refined = load_config(None, ["diagnostics=[dead_units]", "diagnostics.plots=false"])
    assert refined.diagnostics.parts == ["dead_units"] and refined.diagnostics.plots is False
    with pytest.raises(ConfigError, match="did you mean dead_units"):
        load_config(None, ["diagnostics=[dead_unit]", "diagnostics.plots=false"])


# ----------------------------------------------------------------------------- a real run
class Spy(Callback):
    """Independent reference at step 1 (gradients and weights read straight from the model)
    and a record of which steps had activation hooks on the ReLUs."""

    def __init__(self):
        self.grad_norms, self.before, self.after, self.hooked_steps = {}, {}, {}, []

    def on_before_optimizer_step(self, trainer):
        step = trainer.global_step + 1
        relus = [m for m in trainer.model.modules() if isinstance(m, nn.ReLU)]
        # nonfinite hooks every module on every step; activation_stats adds one on measured ones
        if all(len(m._forward_hooks) == 2 for m in relus):
            self.hooked_steps.append(step)
        else:
            assert all(len(m._forward_hooks) == 1 for m in relus)
        if step == 1:
            self.shapes = {n: list(p.shape) for n, p in trainer.model.named_parameters()}
            self.grad_norms = {n: p.grad.norm().item() for n, p in
                               trainer.model.named_parameters() if p.grad is not None}
            self.before = {n: p.detach().clone() for n, p in trainer.model.named_parameters()}

    def on_train_batch_end(self, trainer, out):
        if trainer.global_step == 1:
            self.after = {n: p.detach().clone() for n, p in trainer.model.named_parameters()}


def test_tiny_run_with_diagnostics_all(tiny_overrides, runs_dir):
    spy = Spy()
    cfg = load_config(None, tiny_overrides + ["train.epochs=1", "diagnostics=all"])
    result = run_experiment(cfg, runs_dir=runs_dir, callbacks=[spy])
    assert result.ok
    records = read_records(result.run_dir)
    kinds = {r["kind"] for r in records}
    assert kinds == {"parameters", "grad_flow", "weight_stats", "activation_stats",
                     "dead_units", "activation_histogram", "bn_stats"}
    shapes = next(r for r in records if r["kind"] == "parameters")
    assert shapes["step"] == 0
    assert {n: v["shape"] for n, v in shapes["layers"].items()} == spy.shapes
    steps = max(r["step"] for r in records if r["kind"] == "dead_units")
    assert 1 < steps < 50  # so step 1 is the only measured training step (every_steps=50)
    assert spy.hooked_steps == [1]

    grad = next(r for r in records if r["kind"] == "grad_flow")
    assert grad["step"] == 1 and list(grad["layers"]) == list(spy.grad_norms)
    for name, norm in spy.grad_norms.items():
        assert grad["layers"][name]["norm"] == pytest.approx(norm, rel=1e-5)
    weights = next(r for r in records if r["kind"] == "weight_stats")
    for name, before in spy.before.items():
        delta, norm = (spy.after[name] - before).norm().item(), before.norm().item()
        got = weights["layers"][name]["update_ratio"]
        if norm == 0:  # zero-initialised BN biases: the ratio is undefined
            assert got is None
        else:
            assert got == pytest.approx(delta / norm, rel=1e-5)
    assert sum(v["update_ratio"] is None for v in weights["layers"].values()) == 3

    relus = ["stages.0.0.3", "stages.1.0.3", "stages.2.0.3"]
    acts = next(r for r in records if r["kind"] == "activation_stats")
    assert list(acts["layers"]) == relus
    assert all(0 < v["sparsity"] < 1 and v["std"] > 0 for v in acts["layers"].values())
    dead = [r for r in records if r["kind"] == "dead_units"]
    assert [r["epoch"] for r in dead] == [1]
    assert [v["units"] for v in dead[0]["layers"].values()] == [16, 32, 64]  # channels
    hists = [r for r in records if r["kind"] == "activation_histogram"]
    assert [r["epoch"] for r in hists] == [1]  # histogram_epochs (1, -1): both are epoch 1
    assert sum(hists[0]["layers"]["stages.0.0.3"]["counts"]) % (16 * 4 * 4) == 0

    bn = [r for r in records if r["kind"] == "bn_stats"]
    assert [r["epoch"] for r in bn] == [1] and bn[0]["threshold"] == 10.0
    assert [(n, v["channels"]) for n, v in bn[0]["layers"].items()] == [
        ("stages.0.0.2", 16), ("stages.1.0.2", 32), ("stages.2.0.2", 64)]
    assert all(v["var_ratio"] > 0 and v["mean_shift"] >= 0 for v in bn[0]["layers"].values())

    assert not any("layers" in r for r in read_metrics(result.run_dir))  # scalars stay apart
    out_dir = result.run_dir / "artifacts" / "diagnostics"
    assert sorted(p.name for p in out_dir.iterdir()) == PNGS
    assert all(is_png(out_dir / png) for png in PNGS)


# ----------------------------------------------------------------------------- warnings
def grad_flow_run(tiny_overrides, runs_dir, options: str, *extra: str):
    cfg = load_config(None, tiny_overrides + [
        "model.name=mlp", f"model.options={{img_size: 8, width: 32, {options}}}",
        "train.epochs=1", "diagnostics={grad_flow: true, plots: false}", *extra])
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        result = run_experiment(cfg, runs_dir=runs_dir)
    assert result.ok
    return ([w for w in caught if issubclass(w.category, GradientFlowWarning)],
            [r for r in read_records(result.run_dir) if r["kind"] == "grad_flow"],
            result.run_dir)


def test_vanishing_warning_for_deep_sigmoid_mlp_not_for_shallow_relu(tiny_overrides, runs_dir):
    caught, records, run_dir = grad_flow_run(tiny_overrides, runs_dir, "depth: 10, act: sigmoid")
    assert len(caught) == 1 and "vanishing gradients" in str(caught[0].message)
    first = records[0]
    assert first["step"] == 1 and first["depth_ratio"] < 1e-3
    assert first["warnings"][0].startswith("vanishing gradients")
    assert not (run_dir / "artifacts" / "diagnostics").exists()  # plots: false
    written = plot_diagnostics(run_dir)  # after the fact, from diagnostics.jsonl alone
    assert [p.name for p in written] == ["grad_flow.png"] and is_png(written[0])
    with pytest.raises(FileNotFoundError, match="diagnostics=all"):
        plot_diagnostics(runs_dir)

    caught, records, _ = grad_flow_run(tiny_overrides, runs_dir, "depth: 2, act: relu")
    assert caught == [] and all(r["warnings"] == [] for r in records)
    assert all(r["depth_ratio"] > 1e-3 for r in records)


def test_exploding_check_sees_the_norm_before_clipping(tiny_overrides, runs_dir):
    # Clipping to 1e-4 keeps the applied gradients tiny; the raw norm is far above 1e-2, and
    # that is what the exploding check must report.
    caught, records, _ = grad_flow_run(tiny_overrides, runs_dir, "depth: 2, act: relu",
                                       "train.grad_clip_norm=1e-4",
                                       "diagnostics.exploding_norm=1e-2")
    assert records and all(r["global_norm"] > 1e-2 for r in records)
    assert all(sum(v["norm"] ** 2 for v in r["layers"].values()) ** 0.5 < 2e-4 for r in records)
    assert len(caught) == len(records) and "exploding gradients" in str(caught[0].message)


# ----------------------------------------------------------------------------- NaN
class BreakConv(Callback):
    """Makes the middle conv produce NaN from step 3 on."""

    def on_train_batch_end(self, trainer, out):
        if trainer.global_step == 3:
            with torch.no_grad():
                trainer.model.stages[1][0][0].weight[0, 0, 0, 0] = float("nan")


def test_run_error_names_the_module_that_first_produced_nan(tiny_overrides, runs_dir):
    cfg = load_config(None, tiny_overrides + ["train.epochs=1", "diagnostics=[nonfinite]"])
    result = run_experiment(cfg, runs_dir=runs_dir, callbacks=[BreakConv()])
    assert result.status == "failed" and "non-finite loss" in result.error
    diagnosis = ("Diagnosis: non-finite output first produced by module 'stages.1.0.0' (Conv2d) "
                 "at step 3; its own parameters ['weight'] are non-finite")
    assert diagnosis in result.error
    assert diagnosis in RunStore(runs_dir).get(result.run_id).error
    assert [r["kind"] for r in read_records(result.run_dir)] == ["nonfinite"]


def test_resumed_run_drops_records_logged_after_its_checkpoint(tmp_path):
    from types import SimpleNamespace

    from archlab.analysis.diagnostics import Diagnostics, DiagnosticsConfig

    lines = [{"step": s, "epoch": 0, "kind": "grad_flow", "layers": {}} for s in (1, 50, 100)]
    (tmp_path / "diagnostics.jsonl").write_text(
        "".join(json.dumps(r) + "\n" for r in lines) + '{"step": 150, "ep')  # torn by a kill
    model = nn.Linear(2, 2)
    trainer = SimpleNamespace(model=model, task=SimpleNamespace(model=model), global_step=50,
                              epoch=1)
    Diagnostics(DiagnosticsConfig(grad_flow=True), tmp_path).on_fit_start(trainer)
    # the resumed fit starts with its own parameters record
    assert [(r["step"], r["kind"]) for r in read_records(tmp_path)] == [
        (1, "grad_flow"), (50, "grad_flow"), (50, "parameters")]
