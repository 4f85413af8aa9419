"""Every registered task through the same life: fit, be interrupted mid-epoch, resume to the very
same weights, task state and metrics as an uninterrupted run, and be evaluated from its checkpoint
alone (the model rebuilt from the checkpoint's own description) to the numbers the run reported.

A new task only adds its tiny configuration to :func:`tiny_configs`; the test fails until it
does."""

from __future__ import annotations

import pytest
import torch

from archlab.runs.config import load_config
from archlab.runs.evaluation import evaluate_checkpoint, read_checkpoint, restore_model
from archlab.runs.experiment import run_experiment
from archlab.runs.store import RunStore, read_metrics
from archlab.tasks import TASKS
from archlab.train.callbacks import Callback
from archlab.train.checkpoint_io import load_checkpoint
from tests.conftest import TINY

IMAGE_RUN = TINY + ["callbacks.ema.enabled=true", "callbacks.ema.decay=0.9"]


def text_file(tmp_path_factory) -> str:
    """Real English text that ships with scikit-learn: its datasets' descriptions."""
    from pathlib import Path

    import sklearn.datasets

    descr = sorted((Path(sklearn.datasets.__file__).parent / "descr").glob("*.rst"))
    path = tmp_path_factory.mktemp("text") / "sklearn_descr.txt"
    path.write_text("".join(p.read_text() for p in descr)[:60_000])
    return str(path)


def tiny_configs(tmp_path_factory) -> dict[str, list[str]]:
    teacher_dir = tmp_path_factory.mktemp("teacher")
    teacher = run_experiment(load_config(None, TINY), runs_dir=teacher_dir)
    return {
        "classification": IMAGE_RUN + ["task.tta_flip=true"],
        "distillation": IMAGE_RUN + ["task.name=distillation",
                                     f"task.teacher.run={teacher.run_dir}"],
        "metric_learning": IMAGE_RUN + [
            "task.name=metric_learning", "task.projection_dim=4", "task.ce_weight=0.1",
            "data.pk_sampler={classes_per_batch: 4, samples_per_class: 8}",
            "data.batch_size=32"],
        "language_model": [
            "data.name=text", f"data.options={{path: {text_file(tmp_path_factory)}, "
                              f"block_size: 16}}",
            "data.val_fraction=0.1", "data.batch_size=32", "data.eval_batch_size=64",
            "model.name=gpt_char", "model.options={depth: 1, width: 16, num_heads: 2}",
            "task.name=language_model", "train.epochs=2", "optim.name=adamw", "optim.lr=0.003",
            "callbacks.progress=false", "train.device=cpu", "callbacks.ema.enabled=true",
            "callbacks.ema.decay=0.9"],
    }


@pytest.fixture(scope="module")
def configs(tmp_path_factory):
    return tiny_configs(tmp_path_factory)


def test_every_registered_task_has_a_tiny_configuration(configs):
    assert sorted(configs) == sorted(TASKS), "add the new task's tiny run to tiny_configs"


class Interrupt(Callback):
    """Stops the run mid-epoch 2 as a kill would: no checkpoint after the last epoch's."""

    def __init__(self, step: int) -> None:
        self.step = step

    def on_train_batch_end(self, trainer, out) -> None:
        if trainer.global_step == self.step:
            raise KeyboardInterrupt


def timeless(records):
    return [{k: v for k, v in r.items() if not k.endswith("time_s")} for r in records]


@pytest.mark.parametrize("name", sorted(TASKS))
def test_task_fits_resumes_bitwise_and_evaluates_from_its_checkpoint(name, configs, tmp_path):
    cfg = load_config(None, configs[name])
    assert cfg.task.name == name
    full = run_experiment(cfg, runs_dir=tmp_path / "full")
    assert full.ok, full.error
    first = load_checkpoint(full.run_dir / "checkpoints" / "last.ckpt")
    per_epoch = first["trainer"]["global_step"] // 2

    with pytest.raises(KeyboardInterrupt):
        run_experiment(cfg, runs_dir=tmp_path / "killed", callbacks=[Interrupt(per_epoch + 2)])
    record = RunStore(tmp_path / "killed").list()[0]
    assert record.status == "interrupted"
    assert load_checkpoint(record.path / "checkpoints" / "last.ckpt")["epoch"] == 1
    resumed = run_experiment(cfg, runs_dir=tmp_path / "killed", resume=record.run_id)
    assert resumed.ok, resumed.error

    a = load_checkpoint(full.run_dir / "checkpoints" / "last.ckpt")
    b = load_checkpoint(resumed.run_dir / "checkpoints" / "last.ckpt")
    assert a["epoch"] == b["epoch"] == 2
    for key in a["model"]:
        assert torch.equal(a["model"][key], b["model"][key]), key
    for key in a["evaluation_model"]:  # EMA on in every tiny run
        assert torch.equal(a["evaluation_model"][key], b["evaluation_model"][key]), key
    assert_same_state(a["trainer"]["task"], b["trainer"]["task"])
    assert timeless(read_metrics(full.run_dir)) == timeless(read_metrics(resumed.run_dir))
    assert timeless([full.metrics]) == timeless([resumed.metrics])

    # The checkpoint describes itself: the model comes back without the dataset.
    checkpoint, _ = read_checkpoint(full.run_dir / "checkpoints" / "last.ckpt")
    assert checkpoint["task"]["name"] == name and checkpoint["weights"] == "ema"
    model = restore_model(checkpoint)
    for key, value in model.state_dict().items():
        assert torch.equal(value, a["evaluation_model"][key]), key
    # Evaluated on its own, it reproduces the run's test numbers exactly.
    scored = evaluate_checkpoint(full.run_dir / "checkpoints" / "last.ckpt")
    test = {k: v for k, v in full.metrics.items() if k.startswith("test.")}
    assert scored.keys() == test.keys() and len(test) >= 2
    for key in test:
        assert scored[key] == pytest.approx(test[key], rel=1e-9, abs=1e-12), key


def assert_same_state(a, b):
    assert type(a) is type(b)
    if isinstance(a, dict):
        assert a.keys() == b.keys()
        for k in a:
            assert_same_state(a[k], b[k])
    elif isinstance(a, torch.Tensor):
        assert torch.equal(a, b)
    else:
        assert a == b


DDP_SCRIPT = """
import sys, torch, torch.distributed as dist
from archlab.runs.config import load_config
from archlab.runs.experiment import run_experiment

out, overrides = sys.argv[1], sys.argv[2:]
result = run_experiment(load_config(None, overrides), runs_dir=out + "/runs")
rank = dist.get_rank() if dist.is_initialized() else 0
torch.save({"model": result.model.state_dict(), "metrics": result.metrics,
            "run_dir": str(result.run_dir)}, f"{out}/rank{rank}.pt")
"""


@pytest.mark.parametrize("name", sorted(TASKS))
def test_task_under_two_rank_ddp_keeps_ranks_equal_and_syncs_its_metrics(name, configs,
                                                                          tmp_path):
    """torchrun, 2 ranks, gloo: the ranks end with identical weights, and every evaluation
    number (summed over the ranks' shares of the split) equals a single process scoring the
    whole split with that model."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    torchrun = Path(sys.executable).parent / "torchrun"
    if not torchrun.exists():
        pytest.skip("torchrun not installed")
    root = Path(__file__).resolve().parents[2]
    script = tmp_path / "ddp.py"
    script.write_text(DDP_SCRIPT)
    overrides = [o for o in configs[name] if not o.startswith("train.epochs")] + [
        "train.epochs=1"]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(root)}
    proc = subprocess.run([str(torchrun), "--standalone", "--nproc_per_node", "2", str(script),
                           str(tmp_path), *overrides], env=env, capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    r0, r1 = (torch.load(tmp_path / f"rank{r}.pt", weights_only=True) for r in (0, 1))
    for key in r0["model"]:
        assert torch.equal(r0["model"][key], r1["model"][key]), f"ranks differ at {key}"
    test = {k: v for k, v in r0["metrics"].items() if k.startswith("test.")}
    assert test and test == {k: v for k, v in r1["metrics"].items() if k.startswith("test.")}
    single = evaluate_checkpoint(Path(r0["run_dir"]) / "checkpoints" / "last.ckpt")
    for key in test:
        assert single[key] == pytest.approx(test[key], rel=1e-6), key


class InjectNaN(Callback):
    def __init__(self, step: int) -> None:
        self.step = step

    def on_train_batch_end(self, trainer, out) -> None:
        if trainer.global_step == self.step:
            with torch.no_grad():
                next(trainer.model.parameters()).view(-1)[0] = float("nan")


@pytest.mark.parametrize("name", sorted(TASKS))
def test_task_with_sam_plateau_early_stopping_and_a_nan(name, configs, tmp_path):
    """SAM (two passes per step) and a plateau schedule train every task; best.ckpt and early
    stopping watch the task's headline metric in its direction; a NaN stops the run with a
    message naming the parameter and keeps the last good checkpoint."""
    base = "adamw" if name == "language_model" else "sgd"
    overrides = configs[name] + [
        "optim.name=sam", f"optim.base={base}", "schedule.name=plateau", "train.epochs=3",
        "callbacks.early_stopping.enabled=true", "callbacks.early_stopping.patience=3"]
    result = run_experiment(load_config(None, overrides), runs_dir=tmp_path / "sam")
    assert result.ok, result.error
    monitor, mode = TASKS.get(name).monitor
    epochs = [r for r in read_metrics(result.run_dir) if monitor in r]
    assert len(epochs) == 3 and all(torch.isfinite(torch.tensor(r[monitor])) for r in epochs)
    pick = max if mode == "max" else min
    best = pick(epochs, key=lambda r: r[monitor])
    assert load_checkpoint(result.run_dir / "checkpoints" / "best.ckpt")["epoch"] == best["epoch"]

    cfg = load_config(None, configs[name])
    steps = load_checkpoint(result.run_dir / "checkpoints" / "last.ckpt")["trainer"][
        "global_step"] // 3
    failed = run_experiment(cfg, runs_dir=tmp_path / "nan", callbacks=[InjectNaN(steps + 1)])
    assert failed.status == "failed" and "non-finite loss" in failed.error
    first = next(n for n, _ in failed.model.named_parameters())
    assert first in failed.error
    last = load_checkpoint(failed.run_dir / "checkpoints" / "last.ckpt")
    assert last["epoch"] == 1
    assert all(torch.isfinite(v).all() for v in last["model"].values() if v.is_floating_point())
