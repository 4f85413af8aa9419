"""SAM through the real Trainer with fp16 autocast and the CUDA GradScaler — the combination that
goes wrong when the perturbation is computed from scaled or overflowed gradients. Needs CUDA;
skipped elsewhere (the CPU version of the sequence is in test_optimizers.py)."""

import copy

import pytest
import torch
from torch import nn

from archlab.train.callbacks import Callback
from archlab.train.optimizers import SAM
from archlab.train.precision import resolve_precision
from archlab.train.schedules import ScheduleConfig, build_schedule
from archlab.tasks.classification import ClassificationConfig, ClassificationTask
from archlab.train.trainer import TrainConfig, Trainer
from tests.train.test_trainer_math import ListLoader

pytestmark = [pytest.mark.gpu,
              pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")]
CUDA = torch.device("cuda")
LR, RHO = 0.1, 0.05


def mlp():
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(32, 64), nn.Tanh(), nn.Linear(64, 5)).to(CUDA)


def data(n=64):
    g = torch.Generator().manual_seed(1)
    return torch.randn(n, 32, generator=g).to(CUDA), torch.randint(0, 5, (n,), generator=g).to(CUDA)


def fp16_sam_trainer(model, batches, init_scale=2.0 ** 16):
    task = ClassificationTask(model, ClassificationConfig())
    opt = SAM(torch.optim.SGD(model.parameters(), lr=LR), rho=RHO)
    sched = build_schedule(opt, ScheduleConfig(name="constant"), epochs=1,
                           steps_per_epoch=len(batches))
    trainer = Trainer(task, opt, sched, train_loader=ListLoader(batches),
                      val_loader=ListLoader([]), cfg=TrainConfig(epochs=1, precision="fp16"),
                      precision=resolve_precision("fp16", CUDA))
    assert trainer.scaler.is_enabled()  # fp16 on CUDA: the GradScaler is on
    trainer.scaler = torch.amp.GradScaler("cuda", init_scale=init_scale)
    return trainer


def reference_sam_step(model, x, y):
    """The two-step definition in fp32: e = rho g / ||g||, g' = grad at w + e, w <- w - lr g'."""
    model = copy.deepcopy(model)
    params = list(model.parameters())
    loss = nn.functional.cross_entropy(model(x), y)
    grads = torch.autograd.grad(loss, params)
    norm = torch.sqrt(sum((g ** 2).sum() for g in grads))
    with torch.no_grad():
        eps = [RHO * g / norm for g in grads]
        for p, e in zip(params, eps):
            p.add_(e)
    grads_at = torch.autograd.grad(nn.functional.cross_entropy(model(x), y), params)
    with torch.no_grad():
        for p, e, g in zip(params, eps, grads_at):
            p.sub_(e).sub_(LR * g)
    return [p.detach() for p in params]


def test_fp16_sam_step_matches_the_fp32_definition():
    model, (x, y) = mlp(), data()
    expected = reference_sam_step(model, x, y)
    trainer = fp16_sam_trainer(model, [(x, y)])
    trainer.train_epoch()
    for got, want in zip(model.parameters(), expected):
        # fp16 matmuls: agreement to fp16 precision, far closer than the step itself (lr*g).
        torch.testing.assert_close(got.detach(), want, rtol=0, atol=2e-3)
    assert trainer.scaler.get_scale() == 2.0 ** 16  # no overflow, no skipped step


def test_overflowed_step_is_skipped_and_the_perturbation_undone():
    model, (x, y) = mlp(), data()
    before = [p.detach().clone() for p in model.parameters()]
    # 2^40 times a gradient of order 1e-2 overflows fp16 (max 65504): the grads are inf.
    trainer = fp16_sam_trainer(model, [(x, y)], init_scale=2.0 ** 40)
    trainer.train_epoch()
    assert trainer.failure is None  # the loss itself is finite; only the scaled grads overflow
    for got, want in zip(model.parameters(), before):
        assert torch.equal(got.detach(), want)  # no ascent left behind, no descent taken
    assert trainer.scaler.get_scale() == 2.0 ** 39  # the scaler saw the inf and backed off
    assert not trainer.sam._perturbed


class StopAfterFirstEpoch(Callback):
    """Ends fit after epoch 1 (its last.ckpt is on disk), as an interrupted run would."""

    def on_train_epoch_end(self, trainer, metrics):
        trainer.should_stop = True


def test_cuda_run_with_ema_and_center_loss_resumes_on_the_gpu(tiny_overrides, tmp_path):
    """Checkpoints load on the CPU; every piece of state (EMA shadow, centers, optimizer) must
    land back on the GPU when the run resumes there."""
    from archlab.runs.config import load_config
    from archlab.runs.experiment import run_experiment

    overrides = [o for o in tiny_overrides if not o.startswith("train.device")] + [
        "train.device=cuda", "train.precision=fp32", "train.epochs=2",
        "callbacks.ema.enabled=true", "callbacks.ema.decay=0.9",
        "task.center_loss={weight: 0.01, lr_multiplier: 5}"]
    cfg = load_config(None, overrides)
    first = run_experiment(cfg, runs_dir=tmp_path, callbacks=[StopAfterFirstEpoch()])
    assert first.ok, first.error
    resumed = run_experiment(cfg, runs_dir=tmp_path, resume=first.run_id)
    assert resumed.ok, resumed.error
    assert resumed.metrics["test.acc"] > 0.5  # digits after 2 epochs; chance is 0.1
    assert next(resumed.model.parameters()).is_cuda
