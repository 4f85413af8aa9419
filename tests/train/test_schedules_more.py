"""The added schedules against torch.optim.lr_scheduler's own classes, stepped per iteration,
or against closed forms where torch's semantics differ (said per test)."""

import io
import math

import pytest
import torch

from archlab.train.schedules import (SCHEDULES, ReduceOnPlateau, ScheduleConfig, build_schedule,
                                     step_plateau)

from tests.train.test_schedules import lrs, sgd

L = torch.optim.lr_scheduler


def ours(cfg, epochs, spe, lr=0.1):
    opt = sgd(lr)
    return build_schedule(opt, cfg, epochs=epochs, steps_per_epoch=spe), opt


def test_multistep_matches_torch():
    ref_opt = sgd()
    ref = L.MultiStepLR(ref_opt, milestones=[20, 50, 75], gamma=0.3)
    sched, opt = ours(ScheduleConfig(name="multistep", milestone_epochs=(2, 5, 7.5), gamma=0.3),
                      10, 10)
    assert lrs(sched, opt, 100) == pytest.approx(lrs(ref, ref_opt, 100), abs=1e-12)


def test_multistep_needs_increasing_milestones():
    with pytest.raises(ValueError, match="needs milestone_epochs"):
        ScheduleConfig(name="multistep")
    with pytest.raises(ValueError, match="increasing"):
        ScheduleConfig(name="multistep", milestone_epochs=(5, 2))


def test_exponential_matches_torch_stepped_per_iteration():
    """Ours is gamma per epoch applied smoothly per step; torch's ExponentialLR stepped every
    iteration with gamma ** (1 / steps_per_epoch) is the same curve."""
    ref_opt = sgd()
    ref = L.ExponentialLR(ref_opt, gamma=0.5 ** (1 / 8))
    sched, opt = ours(ScheduleConfig(name="exponential", gamma=0.5), 10, 8)
    got = lrs(sched, opt, 80)
    assert got == pytest.approx(lrs(ref, ref_opt, 80), rel=1e-10)
    assert got[8] == pytest.approx(0.05) and got[16] == pytest.approx(0.025)  # per epoch


@pytest.mark.parametrize("t_mult", [1, 2])
def test_cosine_restarts_matches_torch(t_mult):
    ref_opt = sgd()
    ref = L.CosineAnnealingWarmRestarts(ref_opt, T_0=15, T_mult=t_mult, eta_min=0.005)
    sched, opt = ours(ScheduleConfig(name="cosine_restarts", restart_epochs=3,
                                     restart_mult=t_mult, min_lr_ratio=0.05), 30, 5)
    assert lrs(sched, opt, 150) == pytest.approx(lrs(ref, ref_opt, 150), abs=1e-12)


@pytest.mark.parametrize("mode", ["triangular", "triangular2", "exp_range"])
def test_cyclic_matches_torch(mode):
    """Torch's exp_range gamma is per iteration; ours is per epoch (gamma ** (1 / spe))."""
    ref_opt = sgd()
    ref = L.CyclicLR(ref_opt, base_lr=0.02, max_lr=0.1, step_size_up=12, mode=mode,
                     gamma=0.9 ** (1 / 4), cycle_momentum=False)
    sched, opt = ours(ScheduleConfig(name="cyclic", cyclic_mode=mode, cyclic_step_epochs=3,
                                     min_lr_ratio=0.2, gamma=0.9), 30, 4)
    got = lrs(sched, opt, 120)
    assert got == pytest.approx(lrs(ref, ref_opt, 120), abs=1e-12)
    peak = 0.02 + 0.08 * (0.9 ** 3 if mode == "exp_range" else 1.0)
    assert got[0] == pytest.approx(0.02) and got[12] == pytest.approx(peak)


def test_polynomial_matches_torch_and_closed_form_with_floor():
    ref_opt = sgd()
    ref = L.PolynomialLR(ref_opt, total_iters=60, power=2.0)
    sched, opt = ours(ScheduleConfig(name="polynomial", power=2.0), 6, 10)
    assert lrs(sched, opt, 60) == pytest.approx(lrs(ref, ref_opt, 60), abs=1e-12)
    # torch's PolynomialLR decays to 0; with a floor: min + (1 - min) (1 - t/T)^p
    sched, opt = ours(ScheduleConfig(name="polynomial", power=0.5, min_lr_ratio=0.1), 6, 10)
    expected = [0.1 * (0.1 + 0.9 * (1 - s / 60) ** 0.5) for s in range(60)]
    assert lrs(sched, opt, 60) == pytest.approx(expected, abs=1e-12)


def test_exponential_warmup_closed_form_then_cosine():
    sched, opt = ours(ScheduleConfig(name="cosine", warmup_epochs=1, warmup="exponential"),
                      4, 10, lr=0.2)
    got = lrs(sched, opt, 40)
    warm = [0.2 * 10 ** ((s + 1 - 10) / 9) for s in range(10)]
    after = [0.2 * (1 + math.cos(math.pi * (s - 10) / 30)) / 2 for s in range(10, 40)]
    assert got == pytest.approx(warm + after, abs=1e-12)
    assert got[0] == pytest.approx(0.2 / 10) and got[9] == pytest.approx(0.2)
    ratios = [b / a for a, b in zip(got[:9], got[1:10])]
    assert ratios == pytest.approx([10 ** (1 / 9)] * 9)  # geometric: a constant factor


# ----------------------------------------------------------------------------- plateau
METRICS = [1.0, 0.9, 0.9, 0.91, 0.95, 0.899, 0.9, 0.9, 0.9, 0.9, 0.8, 0.85, 0.85, 0.85, 0.85,
           0.85, 0.85, 0.85, 0.85, 0.85, 0.85, 0.85, 0.85, 0.85, 0.85]


@pytest.mark.parametrize("mode,threshold_mode,cooldown", [("min", "rel", 0), ("min", "abs", 2),
                                                          ("max", "rel", 1)])
def test_plateau_matches_torch_reduce_on_plateau(mode, threshold_mode, cooldown):
    metrics = METRICS if mode == "min" else [-m for m in METRICS]
    ref_opt = sgd()
    ref = L.ReduceLROnPlateau(ref_opt, mode=mode, factor=0.5, patience=2, threshold=0.01,
                              threshold_mode=threshold_mode, cooldown=cooldown, min_lr=0.01)
    sched, opt = ours(ScheduleConfig(name="plateau", gamma=0.5, plateau_mode=mode,
                                     plateau_patience=2, plateau_threshold=0.01,
                                     plateau_threshold_mode=threshold_mode,
                                     plateau_cooldown=cooldown, min_lr_ratio=0.1),
                      len(metrics), 3)
    got, expected = [], []
    for value in metrics:  # an epoch of 3 steps, then validation
        for _ in range(3):
            got.append(opt.param_groups[0]["lr"])
            expected.append(ref_opt.param_groups[0]["lr"])
            opt.step()
            sched.step()
            ref_opt.step()
        step_plateau(sched, value)
        ref.step(value)
    assert got == pytest.approx(expected, abs=1e-12)
    assert len(set(got)) >= 3  # the sequence exercised at least two reductions
    assert sched.get_last_lr() == pytest.approx(ref.get_last_lr())


def test_plateau_state_round_trips_through_lambdalr_state_dict():
    cfg = ScheduleConfig(name="plateau", gamma=0.5, plateau_patience=1, warmup_epochs=1)
    sched, opt = ours(cfg, 10, 2)
    lrs(sched, opt, 4)
    for value in (1.0, 1.0, 1.0, 0.5):
        step_plateau(sched, value)
    buffer = io.BytesIO()
    torch.save(sched.state_dict(), buffer)
    buffer.seek(0)
    state = torch.load(buffer, weights_only=True)
    sched2, opt2 = ours(cfg, 10, 2)
    sched2.load_state_dict(state)
    opt2.param_groups[0]["lr"] = sched2.get_last_lr()[0]
    plateau2 = sched2.lr_lambdas[0]
    assert isinstance(plateau2, ReduceOnPlateau)
    assert (plateau2.scale, plateau2.best, plateau2.num_bad) == (0.5, 0.5, 0)
    for s, o in ((sched, opt), (sched2, opt2)):
        step_plateau(s, 0.6)
        step_plateau(s, 0.6)
    assert lrs(sched2, opt2, 6) == lrs(sched, opt, 6) == pytest.approx([0.025] * 6)


def test_plateau_warmup_and_non_plateau_rejected():
    sched, opt = ours(ScheduleConfig(name="plateau", warmup_epochs=1), 5, 4)
    assert lrs(sched, opt, 6) == pytest.approx([0.025, 0.05, 0.075, 0.1, 0.1, 0.1])
    cos, _ = ours(ScheduleConfig(name="cosine"), 5, 4)
    with pytest.raises(ValueError, match="schedule.name=plateau"):
        step_plateau(cos, 1.0)
    with pytest.raises(ValueError, match="must be < 1"):
        ScheduleConfig(name="plateau", gamma=1.0)


# ----------------------------------------------------------------------------- state
@pytest.mark.parametrize("name", SCHEDULES.list())
@pytest.mark.parametrize("warmup", ["linear", "exponential"])
def test_every_schedule_state_is_plain_and_resumes(name, warmup):
    """The full LambdaLR state (lr_lambdas included) loads with weights_only=True, and a
    scheduler resumed from it continues with the same lrs."""
    extra = {"milestone_epochs": (2.0, 3.0)} if name == "multistep" else {}
    cfg = ScheduleConfig(name=name, warmup_epochs=1, warmup=warmup, step_epochs=1, **extra)
    sched, opt = ours(cfg, 6, 5)
    lrs(sched, opt, 12)
    buffer = io.BytesIO()
    torch.save(sched.state_dict(), buffer)
    buffer.seek(0)
    state = torch.load(buffer, weights_only=True)
    rest = lrs(sched, opt, 18)
    sched2, opt2 = ours(cfg, 6, 5)
    sched2.load_state_dict(state)
    opt2.param_groups[0]["lr"] = sched2.get_last_lr()[0]
    assert lrs(sched2, opt2, 18) == rest
