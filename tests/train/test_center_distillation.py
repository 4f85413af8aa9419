"""Center loss as part of the classification task and knowledge distillation as a task, on real
(tiny) runs: loss parity with formulas written here, the centers' optimizer group and
checkpointing, the teacher's freezing, and the config errors."""

from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F

from archlab.runs.config import ConfigError, load_config
from archlab.runs.evaluation import evaluation_state_dict, load_trained_model, run_checkpoint
from archlab.runs.experiment import build_model_and_data, build_training_task, run_experiment
from archlab.tasks import RunReference, build_task
from archlab.train.callbacks import Callback
from archlab.train.checkpoint_io import load_checkpoint
from archlab.train.optim import build_phase_optimizers
from tests.conftest import TINY

CPU = torch.device("cpu")
WEIGHT, MULT = 0.5, 10.0
CENTER = [f"task.center_loss={{weight: {WEIGHT}, lr_multiplier: {MULT}}}"]


def _batch(loaders):
    batch = next(iter(loaders.train))
    return batch["x"], batch["y"]


def _optimizer(task, cfg):
    """The optimizer training builds for the task's one phase ("main")."""
    optimizers = build_phase_optimizers(task, cfg.optim)
    assert list(optimizers) == ["main"]
    return optimizers["main"]


def _teacher_checkpoint(ref: RunReference):
    """The checkpoint file run_experiment loads a distillation teacher from."""
    return run_checkpoint(ref.run, ref.checkpoint, what="task.teacher.run")


# ------------------------------------------------------------------------- center loss
def test_center_loss_training_step_matches_ce_plus_lambda_half_mean_squared_distance(
        tiny_overrides):
    cfg = load_config(None, tiny_overrides + CENTER)
    model, loaders, _, _ = build_model_and_data(cfg, CPU)
    task = build_task(model, cfg.task)
    x, y = _batch(loaders)
    model.train()  # no dropout in cnn_tiny; BN uses batch statistics in both forwards
    out = task.training_step({"x": x, "y": y}, "main")
    assert set(out) >= {"loss", "acc", "center_loss"}

    features = model.forward_head(model.forward_features(x), pre_logits=True)  # (B, 64)
    logits = model.fc(features)
    centers = task.center.centers.detach()
    assert centers.shape == (10, 64)
    # Wen et al. 2016 eq. 2 as CenterLoss defines it: 0.5 * mean_i ||f_i - c_{y_i}||²
    l_c = 0.5 * ((features - centers[y]) ** 2).sum(dim=1).mean()
    expected = F.cross_entropy(logits, y) + WEIGHT * l_c
    # the task's class scores are these logits, and its accuracy is theirs on the batch's labels
    assert torch.allclose(task.predict(x), logits, atol=1e-5)
    assert out["acc"].item() == pytest.approx((logits.argmax(1) == y).float().mean().item())
    assert out["center_loss"].item() == pytest.approx(l_c.item(), rel=1e-5)
    assert out["loss"].item() == pytest.approx(expected.item(), rel=1e-5)

    # the network's gradient includes the center term's pull on the features
    conv = model.stages[0][0][0].weight
    (grad_task,) = torch.autograd.grad(out["loss"], conv, retain_graph=True)
    (grad_ref,) = torch.autograd.grad(expected, conv, retain_graph=True)
    (grad_ce,) = torch.autograd.grad(F.cross_entropy(logits, y), conv, retain_graph=True)
    assert torch.allclose(grad_task, grad_ref, rtol=1e-4, atol=1e-6)
    assert not torch.allclose(grad_task, grad_ce, rtol=1e-2, atol=1e-5)

    # the centers' gradient: d(λ L_C)/dc_k = -λ / B * Σ_{i: y_i = k} (f_i - c_k)
    out["loss"].backward()
    diff = (features - centers[y]).detach()
    grad = torch.zeros_like(centers).index_add_(0, y, diff) * (-WEIGHT / len(y))
    assert torch.allclose(task.center.centers.grad, grad, atol=1e-6)


def test_center_loss_works_with_drop_connect_on_the_classifier(tiny_overrides):
    cfg = load_config(None, tiny_overrides + CENTER + ["model.drop_connect=0.3"])
    model, loaders, _, _ = build_model_and_data(cfg, CPU)
    task = build_task(model, cfg.task)
    x, y = _batch(loaders)
    model.train()
    out = task.training_step({"x": x, "y": y}, "main")
    features = model.forward_head(model.forward_features(x), pre_logits=True)
    l_c = 0.5 * ((features - task.center.centers.detach()[y]) ** 2).sum(dim=1).mean()
    assert out["center_loss"].item() == pytest.approx(l_c.item(), rel=1e-5)


def _center_group(optimizer, centers) -> dict:
    groups = [g for g in optimizer.param_groups if any(p is centers for p in g["params"])]
    assert len(groups) == 1 and len(groups[0]["params"]) == 1
    return groups[0]


@pytest.mark.parametrize("name", ["sgd", "adamw"])  # adamw's own default decay is 0.01
def test_center_group_has_scaled_lr_and_no_weight_decay(tiny_overrides, name):
    cfg = load_config(None, tiny_overrides + CENTER + [f"optim.name={name}"])
    model = cfg.model.build(num_classes=10, in_chans=1)
    task = build_task(model, cfg.task)
    optimizer = _optimizer(task, cfg)
    group = _center_group(optimizer, task.center.centers)
    assert group["lr"] == pytest.approx(cfg.optim.lr * MULT)
    assert group["weight_decay"] == 0.0
    assert cfg.optim.weight_decay > 0 and any(  # ... while the network's weights do decay
        g["weight_decay"] == cfg.optim.weight_decay for g in optimizer.param_groups)


def test_centers_step_as_sgd_with_their_group_settings(tiny_overrides):
    cfg = load_config(None, tiny_overrides + CENTER)
    model, loaders, _, _ = build_model_and_data(cfg, CPU)
    task = build_task(model, cfg.task)
    optimizer = _optimizer(task, cfg)
    # the centers are the task's only tensors outside the model
    extra = [p for g in task.param_groups("main", cfg.optim.lr) for p in g["params"]]
    assert len(extra) == 1 and extra[0] is task.center.centers

    # one step moves the centers as torch's SGD does with lr × multiplier and no decay
    reference = task.center.centers.detach().clone().requires_grad_(True)
    ref_opt = torch.optim.SGD([reference], lr=cfg.optim.lr * MULT, momentum=cfg.optim.momentum,
                              nesterov=cfg.optim.nesterov, weight_decay=0.0)
    x, y = _batch(loaders)
    model.train()
    task.training_step({"x": x, "y": y}, "main")["loss"].backward()
    reference.grad = task.center.centers.grad.clone()
    before = task.center.centers.detach().clone()
    optimizer.step()
    ref_opt.step()
    assert not torch.equal(task.center.centers.detach(), before)
    assert torch.allclose(task.center.centers.detach(), reference.detach(), atol=1e-6)


class StopAfterFirstEpoch(Callback):
    def on_train_epoch_end(self, trainer, metrics) -> None:
        trainer.should_stop = True


class Capture(Callback):
    """Keeps the trainer and copies of the task's tensors at the start and end of fit."""

    def on_fit_start(self, trainer) -> None:
        self.trainer = trainer
        self.start = copy.deepcopy(trainer.task.state_dict())

    def on_fit_end(self, trainer) -> None:
        self.end = copy.deepcopy(trainer.task.state_dict())


def test_run_trains_checkpoints_and_resumes_the_centers_exactly(tiny_overrides, tmp_path):
    cfg = load_config(None, tiny_overrides + CENTER + ["train.epochs=2"])
    capture = Capture()
    full = run_experiment(cfg, runs_dir=tmp_path / "full", callbacks=[capture])
    assert full.ok, full.error
    groups = capture.trainer.optimizer.param_groups
    centers = capture.trainer.task.center.centers
    center_group = next(g for g in groups if any(p is centers for p in g["params"]))
    assert center_group["weight_decay"] == 0.0
    assert center_group["initial_lr"] == pytest.approx(cfg.optim.lr * MULT)
    start, end = capture.start["center"]["centers"], capture.end["center"]["centers"]
    assert not torch.equal(start, end)  # the run trained them
    a = load_checkpoint(full.run_dir / "checkpoints" / "last.ckpt")
    assert torch.equal(a["trainer"]["task"]["center"]["centers"], end)

    # interrupted after epoch 1 (checkpoint written), then resumed to epoch 2
    part = run_experiment(cfg, runs_dir=tmp_path / "part", callbacks=[StopAfterFirstEpoch()])
    mid = load_checkpoint(part.run_dir / "checkpoints" / "last.ckpt")
    assert mid["epoch"] == 1
    assert not torch.equal(mid["trainer"]["task"]["center"]["centers"], end)
    resumed = run_experiment(cfg, runs_dir=tmp_path / "part", resume=part.run_id)
    assert resumed.ok, resumed.error
    b = load_checkpoint(part.run_dir / "checkpoints" / "last.ckpt")
    assert a["epoch"] == b["epoch"] == 2
    assert torch.equal(a["trainer"]["task"]["center"]["centers"],
                       b["trainer"]["task"]["center"]["centers"])
    for key in a["model"]:
        assert torch.equal(a["model"][key], b["model"][key]), key


# ------------------------------------------------------------------------- config errors
@pytest.mark.parametrize("overrides,match", [
    (CENTER + ["task.mix=mixup"], "task.mix"),
    (["task.name=distillation", "task.loss.name=distillation"], "task.teacher: Field required"),
    (["task.teacher={run: runs/x}"], "task.teacher: unknown key"),  # classification has none
], ids=["center+mix", "distillation-without-teacher", "teacher-without-distillation"])
def test_task_config_errors(overrides, match):
    with pytest.raises(ConfigError, match=match):
        load_config(None, overrides)


def test_loss_that_does_not_fit_the_task_lists_the_fitting_ones():
    with pytest.raises(ConfigError) as info:
        load_config(None, ["task.loss.name=nt_xent"])
    message = str(info.value)
    assert "cannot train with loss 'nt_xent'" in message
    fitting = message.split("losses for this task:")[1]
    assert "cross_entropy" in fitting and "focal" in fitting
    assert "nt_xent" not in fitting and "distillation" not in fitting
    # (distillation's default loss is now the distillation loss: ask for one that does not fit)
    with pytest.raises(ConfigError, match="losses for this task: distillation$"):
        load_config(None, ["task.name=distillation", "task.teacher={run: runs/x}",
                           "task.loss.name=cross_entropy"])


# ------------------------------------------------------------------------- distillation
T, ALPHA = 3.0, 0.7


@pytest.fixture(scope="module")
def teacher_run(tmp_path_factory):
    cfg = load_config(None, TINY + ["train.epochs=1"])
    result = run_experiment(cfg, runs_dir=tmp_path_factory.mktemp("teacher") / "runs")
    assert result.ok, result.error
    return result.run_dir


def _student_cfg(tiny_overrides, teacher_dir, *extra):
    return load_config(None, tiny_overrides + [
        "task.name=distillation", f"task.teacher={{run: '{teacher_dir}'}}",
        f"task.loss={{name: distillation, options: {{temperature: {T}, alpha: {ALPHA}}}}}",
        *extra])


def test_distillation_step_matches_hinton_kd_formula(tiny_overrides, teacher_run):
    cfg = _student_cfg(tiny_overrides, teacher_run)
    model, loaders, _, _ = build_model_and_data(cfg, CPU)
    task = build_training_task(cfg, model, CPU)  # loads the teacher as run_experiment does
    assert _teacher_checkpoint(cfg.task.teacher) == teacher_run / "checkpoints" / "best.ckpt"
    teacher = load_trained_model(teacher_run / "checkpoints" / "best.ckpt", CPU).model
    x, y = _batch(loaders)
    model.train()
    out = task.training_step({"x": x, "y": y}, "main")
    student = model(x)  # no dropout in cnn_tiny; BN uses batch statistics in both forwards
    assert out["acc"].item() == pytest.approx((student.argmax(1) == y).float().mean().item())
    with torch.no_grad():
        t_logits = teacher(x)
    # Hinton et al. 2015: α T² KL(softmax(t/T) || softmax(s/T)) + (1 - α) CE(s, y)
    kl = F.kl_div(F.log_softmax(student / T, dim=1), F.log_softmax(t_logits / T, dim=1),
                  log_target=True, reduction="batchmean")
    expected = ALPHA * T * T * kl + (1 - ALPHA) * F.cross_entropy(student, y)
    assert out["loss"].item() == pytest.approx(expected.item(), rel=1e-5)
    assert torch.allclose(task.teacher_logits(x), t_logits, atol=1e-5)
    out["loss"].backward()
    assert all(p.grad is None for p in task.teacher.parameters())


def test_distillation_with_center_loss_adds_the_student_center_term(tiny_overrides, teacher_run):
    cfg = _student_cfg(tiny_overrides, teacher_run, *CENTER)
    model, loaders, _, _ = build_model_and_data(cfg, CPU)
    task = build_training_task(cfg, model, CPU)
    teacher = load_trained_model(teacher_run / "checkpoints" / "best.ckpt", CPU).model
    x, y = _batch(loaders)
    model.train()
    out = task.training_step({"x": x, "y": y}, "main")
    features = model.forward_head(model.forward_features(x), pre_logits=True)
    student = model.fc(features)
    with torch.no_grad():
        t_logits = teacher(x)
    kl = F.kl_div(F.log_softmax(student / T, dim=1), F.log_softmax(t_logits / T, dim=1),
                  log_target=True, reduction="batchmean")
    l_c = 0.5 * ((features - task.center.centers.detach()[y]) ** 2).sum(dim=1).mean()
    expected = ALPHA * T * T * kl + (1 - ALPHA) * F.cross_entropy(student, y) + WEIGHT * l_c
    assert out["center_loss"].item() == pytest.approx(l_c.item(), rel=1e-5)
    assert out["loss"].item() == pytest.approx(expected.item(), rel=1e-5)


def test_student_training_leaves_the_teacher_unchanged(tiny_overrides, teacher_run, runs_dir):
    ckpt = teacher_run / "checkpoints" / "best.ckpt"
    teacher_checkpoint = load_checkpoint(ckpt)
    on_disk = evaluation_state_dict(teacher_checkpoint)  # the weights the teacher is loaded with
    assert teacher_checkpoint["weights"] == "raw"  # no EMA: they are the raw weights
    assert all(torch.equal(on_disk[k], teacher_checkpoint["model"][k]) for k in on_disk)
    capture = Capture()
    cfg = _student_cfg(tiny_overrides, teacher_run, "train.epochs=1")
    result = run_experiment(cfg, runs_dir=runs_dir, callbacks=[capture])
    assert result.ok, result.error
    teacher = capture.trainer.task.teacher
    assert not teacher.training
    state = teacher.state_dict()
    assert state.keys() == on_disk.keys()
    for key in on_disk:  # weights and BN running statistics alike
        assert torch.equal(state[key], on_disk[key]), key
    # the student did learn, and its checkpoint holds the student only
    student = load_checkpoint(result.run_dir / "checkpoints" / "last.ckpt")["model"]
    assert student.keys() == on_disk.keys()
    assert not torch.equal(student["fc.weight"], on_disk["fc.weight"])
    assert result.metrics["test.acc"] > 0.3


def test_missing_teacher_run_names_the_path(tiny_overrides, tmp_path):
    missing = tmp_path / "no_such_run"
    with pytest.raises(FileNotFoundError, match=str(missing)):
        _teacher_checkpoint(RunReference(run=str(missing)))
    cfg = _student_cfg(tiny_overrides, missing)
    model = cfg.model.build(num_classes=10, in_chans=1)
    with pytest.raises(FileNotFoundError, match=str(missing)):
        build_training_task(cfg, model, CPU)  # what run_experiment builds the task with
    empty = tmp_path / "run_without_checkpoints"
    empty.mkdir()
    with pytest.raises(FileNotFoundError, match="callbacks.checkpoint.enabled"):
        _teacher_checkpoint(RunReference(run=str(empty)))


def test_teacher_with_other_classes_is_rejected(tiny_overrides, teacher_run):
    cfg = _student_cfg(tiny_overrides, teacher_run)
    model = cfg.model.build(num_classes=5, in_chans=1)
    with pytest.raises(ValueError, match="teacher predicts 10 classes but the student 5"):
        build_training_task(cfg, model, CPU)
