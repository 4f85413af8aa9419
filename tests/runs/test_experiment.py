"""run_experiment end to end on real (tiny) data: determinism, exact resume after a kill,
NaN handling, checkpoints, EMA evaluation."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch

from archlab.runs.config import load_config
from archlab.runs.evaluation import evaluate_checkpoint
from archlab.runs.experiment import run_experiment
from archlab.runs.store import RunStore, read_metrics
from archlab.train.callbacks import Callback
from archlab.train.checkpoint_io import load_checkpoint

ROOT = Path(__file__).resolve().parents[2]
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
RICH = ["model.options={img_size: 8, drop_rate: 0.2}", "callbacks.ema.enabled=true",
        "callbacks.ema.decay=0.9", "data.augment=[flip, {name: random_crop, padding: 1}]",
        "train.epochs=3"]


def timeless(records):
    return [{k: v for k, v in r.items() if not k.endswith("time_s")} for r in records]


def test_same_config_and_seed_give_same_metrics(tiny_overrides, runs_dir):
    cfg = load_config(None, tiny_overrides + ["train.epochs=2"])
    a = run_experiment(cfg, runs_dir=runs_dir)
    b = run_experiment(cfg, runs_dir=runs_dir)
    assert a.ok and b.ok and a.run_id != b.run_id
    assert timeless([a.metrics]) == timeless([b.metrics])
    assert timeless(read_metrics(a.run_dir)) == timeless(read_metrics(b.run_dir))
    assert a.metrics["test.acc"] > 0.5  # it learned something real
    other = run_experiment(load_config(None, tiny_overrides + ["train.epochs=2", "train.seed=1"]),
                           runs_dir=runs_dir)
    assert other.metrics["train.loss"] != a.metrics["train.loss"]


KILL_SCRIPT = textwrap.dedent("""
    import os, signal, sys
    from archlab.runs.config import load_config
    from archlab.runs.experiment import run_experiment
    from archlab.train.callbacks import Callback

    class KillAt(Callback):
        def on_train_batch_end(self, trainer, out):
            if trainer.global_step == int(sys.argv[2]):
                os.kill(os.getpid(), signal.SIGKILL)

    cfg = load_config(None, sys.argv[3:])
    run_experiment(cfg, runs_dir=sys.argv[1], callbacks=[KillAt()] if int(sys.argv[2]) else [])
""")


def test_killed_run_resumes_to_bitwise_identical_weights_and_metrics(tiny_overrides, tmp_path):
    overrides = tiny_overrides + RICH
    script = tmp_path / "train.py"
    script.write_text(KILL_SCRIPT)
    full_dir, killed_dir = tmp_path / "full", tmp_path / "killed"
    subprocess.run([sys.executable, str(script), str(full_dir), "0", *overrides], check=True,
                   env=ENV)
    # Killed with SIGKILL mid-way through epoch 2 (22 steps per epoch on digits).
    proc = subprocess.run([sys.executable, str(script), str(killed_dir), "30", *overrides],
                          env=ENV)
    assert proc.returncode == -9
    record = RunStore(killed_dir).list()[0]
    assert record.status == "running"
    assert load_checkpoint(record.path / "checkpoints" / "last.ckpt")["epoch"] == 1
    resumed = subprocess.run([sys.executable, "-m", "archlab", "train", "--resume", record.run_id,
                              "--runs-dir", str(killed_dir)], env=ENV, capture_output=True,
                             text=True)
    assert resumed.returncode == 0, resumed.stderr
    full = RunStore(full_dir).list()[0]
    a = load_checkpoint(full.path / "checkpoints" / "last.ckpt")
    b = load_checkpoint(record.path / "checkpoints" / "last.ckpt")
    assert a["epoch"] == b["epoch"] == 3
    for key in a["model"]:
        assert torch.equal(a["model"][key], b["model"][key]), key
    shadow_a = a["trainer"]["callbacks"]["0:EMA"]["shadow"]
    shadow_b = b["trainer"]["callbacks"]["0:EMA"]["shadow"]
    assert all(torch.equal(shadow_a[k], shadow_b[k]) for k in shadow_a)
    assert timeless(read_metrics(full.path)) == timeless(read_metrics(record.path))
    m_full, m_resumed = RunStore(full_dir).get(full.run_id).metrics, RunStore(killed_dir).get(
        record.run_id).metrics
    assert timeless([m_full]) == timeless([m_resumed])
    assert RunStore(killed_dir).get(record.run_id).status == "completed"


class InjectNaN(Callback):
    def __init__(self, step):
        self.step = step

    def on_train_batch_end(self, trainer, out):
        if trainer.global_step == self.step:
            with torch.no_grad():
                trainer.model.fc.weight[0, 0] = float("nan")


def test_nan_stops_the_run_with_a_clear_message_and_keeps_the_good_checkpoint(tiny_overrides,
                                                                              runs_dir):
    cfg = load_config(None, tiny_overrides + ["train.epochs=3"])
    result = run_experiment(cfg, runs_dir=runs_dir, callbacks=[InjectNaN(25)])
    assert result.status == "failed"
    assert "non-finite loss" in result.error and "fc.weight" in result.error
    assert "epoch 2" in result.error and "lr" in result.error
    record = RunStore(runs_dir).get(result.run_id)
    assert record.status == "failed" and "fc.weight" in record.error
    last = load_checkpoint(result.run_dir / "checkpoints" / "last.ckpt")
    assert last["epoch"] == 1
    assert all(torch.isfinite(v).all() for v in last["model"].values() if v.is_floating_point())


def test_checkpoint_carries_config_and_evaluates_standalone(tiny_overrides, runs_dir):
    cfg = load_config(None, tiny_overrides + ["callbacks.ema.enabled=true",
                                              "callbacks.checkpoint.keep_last_k=1"])
    result = run_experiment(cfg, runs_dir=runs_dir)
    ckpts = sorted(p.name for p in (result.run_dir / "checkpoints").iterdir())
    assert ckpts == ["best.ckpt", "epoch_002.ckpt", "last.ckpt"]
    metrics = evaluate_checkpoint(result.run_dir / "checkpoints" / "last.ckpt")
    # The standalone evaluation uses the EMA weights, like the run's own test pass.
    assert metrics["test.acc"] == pytest.approx(result.metrics["test.acc"], abs=1e-12)
    assert result.model is not None
    saved = yaml_load(result.run_dir / "config.yaml")
    assert saved["model"]["name"] == "cnn_tiny" and saved["train"]["epochs"] == 2
    meta = json.loads((result.run_dir / "meta.json").read_text())
    assert {"git", "versions", "host", "command", "seed"} <= set(meta)
    from importlib.metadata import version

    assert meta["versions"]["torch"] == version("torch") and meta["seed"] == 0


def yaml_load(path):
    import yaml

    return yaml.safe_load(Path(path).read_text())


def test_validation_split_is_held_out(tiny_overrides, runs_dir):
    cfg = load_config(None, tiny_overrides + ["data.val_fraction=0.2", "train.epochs=1"])
    result = run_experiment(cfg, runs_dir=runs_dir)
    assert result.metrics["val.acc"] != result.metrics["test.acc"]


def test_imagefolder_trains_through_the_streaming_loader(tmp_path, runs_dir):
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(0)
    for split, n in (("train", 12), ("test", 4)):
        for c, name in enumerate(("dark", "light")):
            d = tmp_path / "imgs" / split / name
            d.mkdir(parents=True)
            for i in range(n):
                pixels = rng.integers(0, 100, (12, 12)) + 150 * c
                Image.fromarray(pixels.astype(np.uint8), mode="L").save(d / f"{i}.png")
    cfg = load_config(None, ["data.name=imagefolder", f"data.root={tmp_path / 'imgs'}",
                             "data.options={mode: L}", "data.num_workers=1", "data.batch_size=8",
                             "model.name=cnn_tiny", "model.options={img_size: 12}",
                             "train.epochs=3", "callbacks.progress=false", "optim.lr=0.05"])
    result = run_experiment(cfg, runs_dir=runs_dir)
    assert result.ok and result.metrics["test.acc"] == 1.0  # dark vs light is trivially learnable


def test_tensorboard_without_the_package_is_a_clear_error(tiny_overrides, runs_dir):
    try:
        import tensorboard  # noqa: F401
        pytest.skip("tensorboard is installed")
    except ImportError:
        pass
    cfg = load_config(None, tiny_overrides + ["callbacks.tensorboard=true"])
    with pytest.raises(RuntimeError, match="pip install tensorboard"):
        run_experiment(cfg, runs_dir=runs_dir)
    assert RunStore(runs_dir).list()[0].status == "failed"


def test_task_metrics_are_reported_and_match_sklearn(tiny_overrides, runs_dir):
    from sklearn.metrics import f1_score

    cfg = load_config(None, tiny_overrides + [
        "train.epochs=1", "task.metrics={precision_recall_f1: {averages: [macro]}, "
        "topk_accuracy: {topk: [1, 3]}, ece: {}}"])
    result = run_experiment(cfg, runs_dir=runs_dir)
    m = result.metrics
    assert m["test.top1"] == pytest.approx(m["test.acc"])
    assert m["test.top3"] >= m["test.top1"] and 0 <= m["test.ece"] <= 1
    # recompute macro-F1 from the model's own predictions on the test split
    from archlab.data import build_loaders

    loaders = build_loaders(cfg.data, device=torch.device("cpu"), seed=0)
    model = result.model.eval()
    preds, ys = [], []
    with torch.no_grad():
        for batch in loaders.test:
            preds.append(model(batch["x"]).argmax(-1))
            ys.append(batch["y"])
    ref = f1_score(torch.cat(ys), torch.cat(preds), average="macro", zero_division=0)
    assert m["test.f1_macro"] == pytest.approx(ref, abs=1e-9)


def test_unknown_metric_is_a_config_error():
    from archlab.runs.config import ConfigError

    with pytest.raises(ConfigError, match="did you mean"):
        load_config(None, ["task.metrics={acuracy: {}}"])
    with pytest.raises(ConfigError, match="cannot run in evaluation"):
        load_config(None, ["task.metrics={bleu: {}}"])


@pytest.mark.parametrize("overrides", [
    ["optim.name=sam", "optim.base=sgd", "optim.rho=0.05"],
    ["optim.name=lookahead", "optim.base=adamw", "optim.lr=0.005"],
    ["optim.name=lion", "optim.lr=0.001"],
    ["task.mix={name: mixup, mixup_alpha: 0.4, cutmix_alpha: 1.0, label_smoothing: 0.1}"],
    ["schedule.name=plateau", "schedule.plateau_monitor=val.loss"],
    ["optim.l1=1e-5", "optim.l2_penalty=1e-4", "optim.weight_decay=0"],
    ["data.augment=[randaugment, {name: random_erasing, p: 0.5}]",
     "train.accumulate_steps=2"],
], ids=["sam", "lookahead", "lion", "mixup", "plateau", "penalties", "randaugment+accum"])
def test_techniques_train_end_to_end_and_resume_state(overrides, tiny_overrides, runs_dir):
    cfg = load_config(None, tiny_overrides + overrides)
    result = run_experiment(cfg, runs_dir=runs_dir)
    assert result.ok and result.metrics["test.acc"] > 0.3, result.metrics
    again = run_experiment(cfg, runs_dir=runs_dir)  # deterministic with every technique on
    assert again.metrics["test.acc"] == result.metrics["test.acc"]
    assert again.metrics["train.loss"] == result.metrics["train.loss"]


def test_sam_run_differs_from_its_base_optimizer(tiny_overrides, runs_dir):
    base = run_experiment(load_config(None, tiny_overrides + ["train.epochs=1"]),
                          runs_dir=runs_dir)
    sam = run_experiment(load_config(None, tiny_overrides + ["train.epochs=1", "optim.name=sam",
                                                             "optim.base=sgd"]),
                         runs_dir=runs_dir)
    assert sam.metrics["train.loss"] != base.metrics["train.loss"]


def test_mix_with_smoothing_in_the_loss_is_rejected():
    from archlab.runs.config import ConfigError

    with pytest.raises(ConfigError, match="set label_smoothing in task.mix"):
        load_config(None, ["task.mix=mixup",
                           "task.loss={name: cross_entropy, options: {label_smoothing: 0.1}}"])


def test_checkpoint_is_self_describing_and_transfers_its_evaluated_weights(tiny_overrides,
                                                                          runs_dir):
    """A format-2 checkpoint rebuilds its model without the dataset (model_spec + data
    description), and load_pretrained takes the weights the run was scored with (EMA's)."""
    from archlab.models import create_model
    from archlab.models._weights import load_pretrained
    from archlab.runs.evaluation import load_trained_model

    cfg = load_config(None, tiny_overrides + ["callbacks.ema.enabled=true"])
    result = run_experiment(cfg, runs_dir=runs_dir)
    path = result.run_dir / "checkpoints" / "last.ckpt"
    raw = load_checkpoint(path)
    assert raw["format"] == 2 and raw["weights"] == "ema"
    assert raw["model_spec"] == {"name": "cnn_tiny", "kwargs": {"img_size": 8, "num_classes": 10,
                                                                "in_chans": 1},
                                 "dropout": "standard", "drop_connect": 0.0}
    assert raw["data"]["kind"] == "images" and raw["data"]["input_size"] == [1, 8, 8]
    assert raw["data"]["classes"] == [str(i) for i in range(10)]
    loaded = load_trained_model(path)
    final = result.model.state_dict()  # the run's evaluation (EMA) weights
    assert all(torch.equal(v, final[k]) for k, v in loaded.model.state_dict().items())
    assert not all(torch.equal(v, raw["model"][k]) for k, v in final.items()
                   if v.is_floating_point())  # EMA differs from the raw weights
    fresh = create_model("cnn_tiny", num_classes=10, in_chans=1, img_size=8)
    report = load_pretrained(fresh, path)
    assert not report.missing
    assert all(torch.equal(v, final[k]) for k, v in fresh.state_dict().items())
