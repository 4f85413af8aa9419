"""The loop's arithmetic: accumulation equals a big batch, EMA equals its recursion."""

import copy

import torch
from torch import nn

from archlab.train.callbacks import EMA
from archlab.train.precision import Precision
from archlab.train.schedules import ScheduleConfig, build_schedule
from archlab.tasks.classification import ClassificationConfig, ClassificationTask
from archlab.train.trainer import TrainConfig, Trainer


class ListLoader:
    def __init__(self, batches):
        self.batches = batches

    def set_epoch(self, epoch):
        pass

    def __len__(self):
        return len(self.batches)

    def __iter__(self):
        return (b if isinstance(b, dict) else {"x": b[0], "y": b[1]} for b in self.batches)


def mlp():
    torch.manual_seed(0)
    return nn.Sequential(nn.Flatten(), nn.Linear(12, 16), nn.Tanh(), nn.Linear(16, 3))


def make_trainer(model, batches, accumulate=1, callbacks=(), lr=0.1, **train_options):
    task = ClassificationTask(model, ClassificationConfig())
    opt = torch.optim.SGD(model.parameters(), lr=lr, momentum=0.9)
    steps = len(batches) // accumulate
    sched = build_schedule(opt, ScheduleConfig(name="constant"), epochs=1, steps_per_epoch=steps)
    cfg = TrainConfig(epochs=1, accumulate_steps=accumulate, **train_options)
    return Trainer(task, opt, sched, train_loader=ListLoader(batches), val_loader=ListLoader([]),
                   cfg=cfg, precision=Precision(None, False, "cpu"), callbacks=list(callbacks))


def data(n, seed=1):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, 12, generator=g), torch.randint(0, 3, (n,), generator=g)


def test_accumulating_k_batches_equals_one_batch_of_k_times_b():
    x, y = data(32)
    small = [(x[i:i + 8], y[i:i + 8]) for i in range(0, 32, 8)]  # 4 x 8, accumulated
    big = [(x, y)]  # 1 x 32
    m_small, m_big = mlp(), mlp()
    t_small = make_trainer(m_small, small, accumulate=4)
    t_big = make_trainer(m_big, big)
    t_small.train_epoch()
    t_big.train_epoch()
    assert t_small.global_step == t_big.global_step == 1
    for a, b in zip(m_small.parameters(), m_big.parameters()):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)
    # and it really moved: the update is not trivially zero
    assert not torch.allclose(next(mlp().parameters()), next(m_small.parameters()))


def test_ema_matches_its_recursion():
    x, y = data(40)
    batches = [(x[i:i + 8], y[i:i + 8]) for i in range(0, 40, 8)]
    model = mlp()
    ema = EMA(decay=0.9)
    trainer = make_trainer(model, batches, callbacks=[ema])
    # reference: replay the same optimisation, averaging by hand
    ref_model = copy.deepcopy(model)
    ref_trainer = make_trainer(ref_model, batches)
    avg = {k: v.clone() for k, v in ref_model.state_dict().items()}
    trainer._call("on_fit_start")
    trainer.train_epoch()
    for i, batch in enumerate(batches, start=1):
        ref_trainer.train_loader = ListLoader([batch])
        ref_trainer.train_epoch()
        decay = min(0.9, (1 + i) / (10 + i))
        for k, v in ref_model.state_dict().items():
            avg[k] = decay * avg[k] + (1 - decay) * v
    for k in avg:
        torch.testing.assert_close(ema.shadow[k], avg[k], rtol=1e-5, atol=1e-6)
    with trainer.evaluation_weights():
        torch.testing.assert_close(model.state_dict()["1.weight"], avg["1.weight"], rtol=1e-5,
                                   atol=1e-6)
    assert not torch.allclose(model.state_dict()["1.weight"], avg["1.weight"])  # swapped back


def test_gradient_clipping_by_norm_bounds_the_step():
    x, y = data(8)
    model = mlp()
    before = [p.detach().clone() for p in model.parameters()]
    trainer = make_trainer(model, [(x * 100, y)], lr=1.0, grad_clip_norm=0.01)
    trainer.train_epoch()
    assert trainer.grad_norm_before_clip > 1.0  # the raw norm, which the clip brought to 0.01
    step = torch.cat([(p - b).flatten() for p, b in zip(model.parameters(), before)])
    assert step.norm() <= 0.01 * 1.0 + 1e-6  # lr * clipped norm (first momentum step)


def test_sam_second_pass_reuses_the_mixed_batch():
    """SAM evaluates each batch twice; mixup must be drawn once, so the mixing generator
    advances exactly as in a plain SGD epoch and both passes see the same images."""
    from archlab.train.optim import OptimConfig, build_optimizer

    x, y = data(32)
    batches = [(x[i:i + 8].view(8, 1, 3, 4), y[i:i + 8]) for i in range(0, 32, 8)]
    states = {}
    for name in ("sgd", "sam"):
        model = mlp()
        task = ClassificationTask(model, ClassificationConfig(mix={"name": "mixup", "mixup_alpha": 0.4}))
        model.num_classes = 3
        opt = build_optimizer(model, OptimConfig(name=name, base="sgd", lr=0.1))
        sched = build_schedule(opt, ScheduleConfig(name="constant"), epochs=1, steps_per_epoch=4)
        seen = []
        model.register_forward_pre_hook(lambda m, args: seen.append(args[0].clone()))
        trainer = Trainer(task, opt, sched, train_loader=ListLoader(batches),
                          val_loader=ListLoader([]), cfg=TrainConfig(epochs=1),
                          precision=Precision(None, False, "cpu"))
        task.set_epoch(0, 0)
        trainer.train_epoch()
        states[name] = task.mix_generator.get_state()
        if name == "sam":  # forward pairs: first pass and second pass on identical inputs
            assert len(seen) == 8
            assert all(torch.equal(seen[2 * i], seen[2 * i + 1]) for i in range(4))
    assert torch.equal(states["sgd"], states["sam"])
