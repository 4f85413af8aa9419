"""Schedules against torch's own implementations and closed forms."""

import math

import pytest
import torch

from archlab.train.schedules import ScheduleConfig, build_schedule


def lrs(scheduler, optimizer, n):
    out = []
    for _ in range(n):
        out.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler.step()
    return out


def sgd(lr=0.1):
    return torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=lr)


def test_onecycle_matches_torch():
    ref_opt = sgd()
    ref = torch.optim.lr_scheduler.OneCycleLR(ref_opt, max_lr=0.1, total_steps=120, pct_start=0.3,
                                              div_factor=10, final_div_factor=100,
                                              cycle_momentum=False)
    opt = sgd()
    ours = build_schedule(opt, ScheduleConfig(name="onecycle", pct_start=0.3, div_factor=10,
                                              final_div_factor=100), epochs=12, steps_per_epoch=10)
    assert lrs(ours, opt, 120) == pytest.approx(lrs(ref, ref_opt, 120), abs=1e-12)


def test_cosine_matches_torch_cosine_annealing():
    ref_opt = sgd()
    ref = torch.optim.lr_scheduler.CosineAnnealingLR(ref_opt, T_max=50, eta_min=0.01)
    opt = sgd()
    ours = build_schedule(opt, ScheduleConfig(name="cosine", min_lr_ratio=0.1), epochs=5,
                          steps_per_epoch=10)
    assert lrs(ours, opt, 50) == pytest.approx(lrs(ref, ref_opt, 50), abs=1e-12)


def test_step_matches_torch_steplr():
    ref_opt = sgd()
    ref = torch.optim.lr_scheduler.StepLR(ref_opt, step_size=20, gamma=0.5)
    opt = sgd()
    ours = build_schedule(opt, ScheduleConfig(name="step", step_epochs=2, gamma=0.5), epochs=10,
                          steps_per_epoch=10)
    assert lrs(ours, opt, 100) == pytest.approx(lrs(ref, ref_opt, 100), abs=1e-12)


def test_linear_warmup_then_cosine_closed_form():
    opt = sgd(0.2)
    sched = build_schedule(opt, ScheduleConfig(name="cosine", warmup_epochs=1), epochs=4,
                           steps_per_epoch=10)
    got = lrs(sched, opt, 40)
    expected = [0.2 * (s + 1) / 10 for s in range(10)]
    expected += [0.2 * (1 + math.cos(math.pi * (s - 10) / 30)) / 2 for s in range(10, 40)]
    assert got == pytest.approx(expected, abs=1e-12)


def test_schedule_state_resumes_exactly():
    opt = sgd()
    sched = build_schedule(opt, ScheduleConfig(name="onecycle"), epochs=3, steps_per_epoch=10)
    lrs(sched, opt, 13)
    state = {k: v for k, v in sched.state_dict().items() if k != "lr_lambdas"}
    rest = lrs(sched, opt, 17)
    opt2 = sgd()
    sched2 = build_schedule(opt2, ScheduleConfig(name="onecycle"), epochs=3, steps_per_epoch=10)
    sched2.load_state_dict({**state, "lr_lambdas": [None]})
    opt2.param_groups[0]["lr"] = sched2.get_last_lr()[0]
    assert lrs(sched2, opt2, 17) == rest
