"""LR range test: the sweep it runs, the state it leaves behind, its suggestions and plot."""

import math

import numpy as np
import pytest
import torch
from torch import nn

from archlab.train.lr_finder import find_lr, steepest_index, valley_index
from archlab.train.optim import OptimConfig, build_optimizer
from archlab.tasks.classification import ClassificationConfig, ClassificationTask


def setup(name="sgd", lr=0.05):
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(6, 16), nn.BatchNorm1d(16), nn.ReLU(), nn.Dropout(0.1),
                          nn.Linear(16, 3))
    centers = torch.randn(3, 6) * 2
    y = torch.arange(96) % 3
    x = centers[y] + torch.randn(96, 6)
    loader = [{"x": x[i:i + 16], "y": y[i:i + 16]} for i in range(0, 96, 16)]
    task = ClassificationTask(model, ClassificationConfig())
    opt = build_optimizer(model, OptimConfig(name=name, lr=lr, lr_multipliers={"4": 0.5}))
    # one real step first, so the optimizer has state (momentum buffers) to be restored
    opt.step(lambda: task.training_step(loader[0])["loss"].backward())
    return task, opt, loader


def snapshot(task, opt):
    return ({k: v.clone() for k, v in task.model.state_dict().items()},
            {k: v.clone() for k, v in _flat(opt.state_dict())},
            [dict((k, v) for k, v in g.items() if k != "params") for g in opt.param_groups])


def _flat(obj, prefix=""):
    if isinstance(obj, torch.Tensor):
        yield prefix, obj
    elif isinstance(obj, dict):
        for k, v in obj.items():
            yield from _flat(v, f"{prefix}/{k}")


@pytest.mark.parametrize("name", ["sgd", "sam", "lookahead"])
def test_sweep_restores_model_optimizer_and_rng(name):
    task, opt, loader = setup(name)
    task.model.eval()
    model_before, opt_before, groups_before = snapshot(task, opt)
    rng_before = torch.get_rng_state()
    seen = []
    opt.register_step_pre_hook(lambda o, args, kwargs: seen.append([g["lr"] for g in
                                                                     o.param_groups]))
    result = find_lr(task, opt, loader, start_lr=1e-4, end_lr=1.0, num_steps=20)
    model_after, opt_after, groups_after = snapshot(task, opt)
    assert model_after.keys() == model_before.keys() and opt_after.keys() == opt_before.keys()
    assert all(torch.equal(model_before[k], model_after[k]) for k in model_before)
    assert opt_before and all(torch.equal(opt_before[k], opt_after[k]) for k in opt_before)
    assert groups_after == groups_before  # lr, initial settings
    assert not task.model.training
    assert torch.equal(torch.get_rng_state(), rng_before)
    # the sweep itself: geometric lrs from start to end, applied (times each group's multiplier)
    n = len(result.lrs)
    assert n == 20 and not result.diverged
    assert result.lrs == pytest.approx([1e-4 * 1e4 ** (i / 19) for i in range(20)], rel=1e-12)
    mults = [g["lr_multiplier"] for g in opt.param_groups]
    assert sorted(set(mults)) == [0.5, 1.0]
    assert seen == [pytest.approx([lr * m for m in mults]) for lr in result.lrs]


def test_smoothing_divergence_and_suggestions():
    task, opt, loader = setup("sgd")
    result = find_lr(task, opt, loader, start_lr=1e-3, end_lr=1e4, num_steps=60, smooth=0.9)
    avg, expected = 0.0, []
    for i, loss in enumerate(result.losses):
        avg = 0.9 * avg + 0.1 * loss
        expected.append(avg / (1 - 0.9 ** (i + 1)))
    assert result.smoothed == pytest.approx(expected, rel=1e-12)
    assert result.diverged and len(result.lrs) < 60
    last = result.smoothed[-1]
    assert not math.isfinite(last) or last > 4 * min(result.smoothed[:-1])
    assert all(s <= 4 * min(result.smoothed[:i + 1]) for i, s in enumerate(result.smoothed[:-1]))
    for lr in (result.suggestion_steepest, result.suggestion_valley):
        assert lr in result.lrs[:-1]
    assert result.smoothed[0] > min(result.smoothed)  # the loss did go down before diverging


def test_suggestion_rules_on_a_known_curve():
    smoothed = [5.0, 4.8, 4.0, 2.5, 2.2, 2.1, 3.0, 9.0]
    lrs = [10.0 ** (i - 6) for i in range(8)]
    # central differences per unit log-lr: -0.5, -1.15, -0.9, ... -> index 2
    assert steepest_index(lrs, smoothed) == 2
    slope = np.gradient(np.array(smoothed), np.log(lrs))
    assert slope[2] == pytest.approx((2.5 - 4.8) / (2 * math.log(10)))
    # longest decreasing run 5 > 4.8 > 4 > 2.5 > 2.2 > 2.1 (indices 0..5), middle 2
    assert valley_index(smoothed) == 2
    # not contiguous: 3 > 2 > 1.5 > 1.2 > 1.1 > 1.0 skips the 1.0 at index 1; spans 0..6
    assert valley_index([3.0, 1.0, 2.0, 1.5, 1.2, 1.1, 1.0, 4.0]) == 3
    assert steepest_index(lrs[:2], smoothed[:2]) is None and valley_index([1.0]) is None


def test_plot_writes_a_labelled_png(tmp_path):
    task, opt, loader = setup("sgd")
    result = find_lr(task, opt, loader, start_lr=1e-3, end_lr=1.0, num_steps=12)
    path = tmp_path / "lr_find.png"
    fig = result.plot(path)
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    ax = fig.axes[0]
    assert "learning rate" in ax.get_xlabel() and "loss" in ax.get_ylabel()
    assert ax.get_xscale() == "log"
    labels = [t.get_text() for t in ax.get_legend().get_texts()]
    assert "smoothed loss" in labels and any(s.startswith("valley") for s in labels)
    import matplotlib.image

    assert matplotlib.image.imread(path).shape[:2] == (420, 640)


def test_bad_arguments_are_named():
    task, opt, loader = setup("sgd")
    with pytest.raises(ValueError, match="start_lr < end_lr"):
        find_lr(task, opt, loader, start_lr=1.0, end_lr=0.1, num_steps=10)
    with pytest.raises(ValueError, match="no batch"):
        find_lr(task, opt, [], start_lr=1e-3, end_lr=0.1, num_steps=10)
