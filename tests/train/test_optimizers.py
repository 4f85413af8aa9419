"""Optimizers against their papers' update rules written out here, param groups, penalties."""

import io
import math

import pytest
import torch
from torch import nn

from archlab.runs.config import ConfigError, load_config
from archlab.train.optim import (OPTIMIZERS, OptimConfig, build_optimizer, param_groups,
                                 regularization_penalty)
from archlab.train.optimizers import SAM, Lion, Lookahead, frozen_norm_stats

# A fixed convex quadratic L(w) = 1/2 w^T A w - b^T w, gradient A w - b, in float64.
A = torch.tensor([[3.0, 0.5, 0.0], [0.5, 1.0, 0.2], [0.0, 0.2, 2.0]], dtype=torch.float64)
B = torch.tensor([1.0, -2.0, 0.5], dtype=torch.float64)
W0 = torch.tensor([0.7, -0.3, 1.2], dtype=torch.float64)


def quad_loss(w):
    return 0.5 * w @ A @ w - B @ w


def quad_grad(w):
    return A @ w - B


def set_quad_grad(p):
    p.grad = quad_grad(p.detach()).clone()


# ----------------------------------------------------------------------------- Lion
def test_lion_matches_paper_algorithm_over_steps():
    torch.manual_seed(0)
    w = nn.Parameter(torch.randn(4, 3, dtype=torch.float64))
    bias = nn.Parameter(torch.randn(3, dtype=torch.float64))
    opt = Lion([{"params": [w], "weight_decay": 0.1}, {"params": [bias], "weight_decay": 0.0}],
               lr=0.01, betas=(0.9, 0.99))
    ref = {"w": w.detach().clone(), "b": bias.detach().clone()}
    m = {k: torch.zeros_like(v) for k, v in ref.items()}
    decay = {"w": 0.1, "b": 0.0}
    for step in range(6):
        grads = {"w": torch.randn(4, 3, dtype=torch.float64),
                 "b": torch.randn(3, dtype=torch.float64)}
        if step == 0:
            grads["w"][0, 0] = 0.0  # c = 0 there: sign(0) = 0, only the decay moves it
        w.grad, bias.grad = grads["w"].clone(), grads["b"].clone()
        opt.step()
        for k in ref:  # Chen et al. 2023, Algorithm 2
            c = 0.9 * m[k] + (1 - 0.9) * grads[k]
            ref[k] = ref[k] - 0.01 * (torch.sign(c) + decay[k] * ref[k])
            m[k] = 0.99 * m[k] + (1 - 0.99) * grads[k]
    assert torch.allclose(w, ref["w"], atol=1e-12, rtol=0)
    assert torch.allclose(bias, ref["b"], atol=1e-12, rtol=0)
    for p, key in ((w, "w"), (bias, "b")):
        state = opt.state[p]
        assert list(state) == ["exp_avg"]  # one state tensor per parameter (Adam keeps three)
        assert torch.allclose(state["exp_avg"], m[key], atol=1e-12, rtol=0)


def test_lion_through_registry_uses_paper_betas_and_decoupled_decay():
    model = nn.Linear(3, 2)
    opt = build_optimizer(model, OptimConfig(name="lion", lr=1e-3, weight_decay=0.5))
    assert isinstance(opt, Lion)
    assert opt.param_groups[0]["betas"] == (0.9, 0.99)
    assert [g["weight_decay"] for g in opt.param_groups] == [0.5, 0.0]  # no decay on the bias


# ----------------------------------------------------------------------------- SAM
def closed_form_sam(w, lr, rho, adaptive):
    """One SAM step with plain SGD at w (Foret et al. 2021, Algorithm 1)."""
    g = quad_grad(w)
    if adaptive:  # ASAM: e = rho |w|^2 g / || |w| g ||
        e = rho * w * w * g / torch.linalg.vector_norm(w.abs() * g)
    else:
        e = rho * g / torch.linalg.vector_norm(g)
    return w - lr * quad_grad(w + e)


@pytest.mark.parametrize("adaptive", [False, True])
def test_sam_two_steps_match_closed_form(adaptive):
    p = nn.Parameter(W0.clone())
    sam = SAM(torch.optim.SGD([p], lr=0.1), rho=0.3, adaptive=adaptive)
    expected = W0.clone()
    for _ in range(2):
        set_quad_grad(p)
        assert sam.first_step(zero_grad=True)
        assert p.grad is None
        set_quad_grad(p)  # gradient at the perturbed point
        sam.second_step(zero_grad=True)
        expected = closed_form_sam(expected, lr=0.1, rho=0.3, adaptive=adaptive)
    assert torch.allclose(p.detach(), expected, atol=1e-12, rtol=0)


def test_sam_perturbation_and_exact_restore():
    p = nn.Parameter(W0.clone())
    sam = SAM(torch.optim.SGD([p], lr=0.1), rho=0.05)
    set_quad_grad(p)
    g = quad_grad(W0)
    sam.first_step(zero_grad=False)
    assert torch.allclose(p.detach() - W0, 0.05 * g / g.norm(), atol=1e-12, rtol=0)
    assert torch.linalg.vector_norm(p.detach() - W0).item() == pytest.approx(0.05, abs=1e-12)
    sam.restore()
    assert torch.equal(p.detach(), W0)  # a copy, not w + e - e: DDP ranks stay bitwise equal


def test_sam_perturbation_is_invariant_to_loss_scale_and_skips_non_finite():
    p1, p2 = nn.Parameter(W0.clone()), nn.Parameter(W0.clone())
    s1, s2 = SAM(torch.optim.SGD([p1], lr=0.1)), SAM(torch.optim.SGD([p2], lr=0.1))
    set_quad_grad(p1)
    p2.grad = quad_grad(W0) * 65536.0  # as GradScaler leaves it before unscale_
    s1.first_step()
    s2.first_step()
    assert torch.allclose(p1.detach(), p2.detach(), atol=1e-12, rtol=0)
    p3 = nn.Parameter(W0.clone())
    s3 = SAM(torch.optim.SGD([p3], lr=0.1))
    p3.grad = torch.tensor([1.0, math.inf, 0.0], dtype=torch.float64)
    assert s3.first_step() is False
    assert torch.equal(p3.detach(), W0)


def test_sam_closure_step_equals_manual_sequence_and_shares_groups():
    p = nn.Parameter(W0.clone())
    sam = SAM(torch.optim.SGD([p], lr=0.2), rho=0.1)

    def closure():
        sam.zero_grad()
        loss = quad_loss(p)
        loss.backward()
        return loss

    loss = sam.step(closure)
    assert loss.item() == pytest.approx(quad_loss(W0).item(), abs=1e-12)  # loss at w, not w + e
    assert torch.allclose(p.detach(), closed_form_sam(W0, 0.2, 0.1, False), atol=1e-12, rtol=0)
    sched = torch.optim.lr_scheduler.LambdaLR(sam, lambda s: 0.5)
    assert sam.base_optimizer.param_groups[0]["lr"] == pytest.approx(0.1)
    assert sched.get_last_lr() == [pytest.approx(0.1)]
    with pytest.raises(RuntimeError, match="must follow first_step"):
        sam.step()


def test_sam_with_grad_scaler_sequence():
    """The Trainer's sequence: first_step on scaled grads, second pass, restore, unscale_,
    scaler.step(sam) -> the closed-form SAM step (scale 1024, no overflow)."""
    p = nn.Parameter(W0.clone())
    sam = SAM(torch.optim.SGD([p], lr=0.1), rho=0.2)
    scaler = torch.amp.GradScaler("cpu", init_scale=1024.0)
    scaler.scale(quad_loss(p)).backward()
    sam.first_step(zero_grad=True)
    scaler.scale(quad_loss(p)).backward()
    sam.restore()
    scaler.unscale_(sam)
    scaler.step(sam)
    scaler.update()
    assert torch.allclose(p.detach(), closed_form_sam(W0, 0.1, 0.2, False), atol=1e-12, rtol=0)


def test_frozen_norm_stats_leaves_running_statistics_untouched():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4)).train()
    x = torch.randn(8, 3)
    model(x)
    bn = model[1]
    before = {k: v.clone() for k, v in bn.state_dict().items()}
    with frozen_norm_stats(model):
        out = model(x + 1.0)
    assert all(torch.equal(before[k], v) for k, v in bn.state_dict().items())
    # still normalized with the batch's own statistics
    assert torch.allclose(out.mean(0), bn.bias.detach(), atol=1e-5)
    model(x + 1.0)
    assert not torch.equal(before["running_mean"], bn.running_mean)
    assert bn.num_batches_tracked.item() == 2


def test_sam_from_config_wraps_base_and_rejects_wrapper_base():
    opt = build_optimizer(nn.Linear(3, 2), OptimConfig(name="sam", base="adamw", lr=1e-3,
                                                       rho=0.1, adaptive=True))
    assert isinstance(opt, SAM) and isinstance(opt.base_optimizer, torch.optim.AdamW)
    assert opt.rho == 0.1 and opt.adaptive
    with pytest.raises(ValueError, match="is itself a wrapper"):
        OptimConfig(name="sam", base="lookahead")


# ----------------------------------------------------------------------------- Lookahead
def test_lookahead_matches_direct_implementation():
    p = nn.Parameter(W0.clone())
    opt = Lookahead(torch.optim.SGD([p], lr=0.1, momentum=0.9), k=3, alpha=0.5)
    fast, slow, buf = W0.clone(), W0.clone(), torch.zeros(3, dtype=torch.float64)
    for t in range(1, 11):
        set_quad_grad(p)
        opt.step()
        # inner SGD with heavy-ball momentum (torch's form: buf = mu buf + g; w -= lr buf)
        buf = 0.9 * buf + quad_grad(fast)
        fast = fast - 0.1 * buf
        if t % 3 == 0:  # Zhang et al. 2019, Algorithm 1
            slow = slow + 0.5 * (fast - slow)
            fast = slow.clone()
        assert torch.allclose(p.detach(), fast, atol=1e-12, rtol=0), t
    assert torch.allclose(opt.state[p]["slow"], slow, atol=1e-12, rtol=0)
    assert opt.fast_steps == 1


def test_lookahead_state_dict_round_trip_resumes_exactly():
    def make():
        p = nn.Parameter(W0.clone())
        return p, Lookahead(torch.optim.Adam([p], lr=0.05), k=4, alpha=0.6)

    p1, opt1 = make()
    for _ in range(6):
        set_quad_grad(p1)
        opt1.step()
    buffer = io.BytesIO()
    torch.save({"w": p1.detach(), "opt": opt1.state_dict()}, buffer)
    buffer.seek(0)
    saved = torch.load(buffer, weights_only=True)  # plain tensors and containers only
    p2, opt2 = make()
    with torch.no_grad():
        p2.copy_(saved["w"])
    opt2.load_state_dict(saved["opt"])
    assert opt2.fast_steps == 2
    for _ in range(7):
        for p, opt in ((p1, opt1), (p2, opt2)):
            set_quad_grad(p)
            opt.step()
    assert torch.equal(p1.detach(), p2.detach())
    sched = torch.optim.lr_scheduler.LambdaLR(opt2, lambda s: 0.1)  # groups still shared
    assert opt2.base_optimizer.param_groups[0]["lr"] == pytest.approx(0.005)
    assert sched.get_last_lr() == [pytest.approx(0.005)]


# ----------------------------------------------------------------------------- registry
def mlp():
    return nn.Sequential(nn.Linear(4, 8), nn.LayerNorm(8), nn.Tanh(), nn.Linear(8, 1))


LRS = {"sgd": 0.05, "adam": 0.03, "adamw": 0.03, "rmsprop": 0.01, "adagrad": 0.1,
       "adafactor": 0.1, "nadam": 0.03, "radam": 0.1, "lion": 0.01, "sam": 0.05,
       "lookahead": 0.05}


@pytest.mark.parametrize("name", sorted(LRS))
def test_every_registered_optimizer_descends_on_regression(name):
    assert set(OPTIMIZERS) == set(LRS)  # a new optimizer needs its row here
    torch.manual_seed(0)
    x = torch.randn(64, 4)
    y = x @ torch.tensor([[1.0], [-2.0], [0.5], [0.0]]) + 0.3
    model = mlp()
    opt = build_optimizer(model, OptimConfig(name=name, lr=LRS[name], weight_decay=1e-4))

    def closure():
        opt.zero_grad()
        loss = (model(x) - y).square().mean()
        loss.backward()
        return loss

    first = closure().item()
    for _ in range(30):
        opt.step(closure)
    assert closure().item() < 0.5 * first


def test_config_defaults_reach_torch_optimizers():
    m = mlp()
    adam = build_optimizer(m, OptimConfig(name="adam", lr=0.01))
    assert isinstance(adam, torch.optim.Adam)
    assert adam.param_groups[0]["betas"] == (0.9, 0.999) and adam.param_groups[0]["eps"] == 1e-8
    nadam = build_optimizer(m, OptimConfig(name="nadam", lr=0.01, betas=(0.8, 0.9), eps=1e-6))
    assert nadam.param_groups[0]["betas"] == (0.8, 0.9) and nadam.param_groups[0]["eps"] == 1e-6
    ada = build_optimizer(m, OptimConfig(name="adagrad", lr=0.01))
    assert ada.param_groups[0]["eps"] == 1e-10  # torch's own default
    la = build_optimizer(m, OptimConfig(name="lookahead", base="radam", lookahead_k=7,
                                        lookahead_alpha=0.8))
    assert isinstance(la.base_optimizer, torch.optim.RAdam) and (la.k, la.alpha) == (7, 0.8)


# ----------------------------------------------------------------------------- groups
class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.stages = nn.Sequential(nn.Sequential(nn.Linear(2, 3), nn.BatchNorm1d(3)),
                                    nn.Linear(3, 3))
        self.fc = nn.Linear(3, 2)
        self.fc2 = nn.Linear(2, 2)

    def forward(self, x):
        return self.fc2(self.fc(self.stages(x)))


def test_lr_multipliers_by_prefix_with_no_decay_rule():
    net = Net()
    opt = build_optimizer(net, OptimConfig(name="sgd", lr=0.1, weight_decay=0.01,
                                           lr_multipliers={"fc": 10.0, "stages": 0.5,
                                                           "stages.0.1": 0.0}))
    lr_of = {id(p): (g["lr"], g["weight_decay"]) for g in opt.param_groups for p in g["params"]}
    expected = {  # longest prefix wins; "fc" is a whole component, so fc2 keeps 1.0
        "stages.0.0.weight": (0.05, 0.01), "stages.0.0.bias": (0.05, 0.0),
        "stages.0.1.weight": (0.0, 0.0), "stages.0.1.bias": (0.0, 0.0),
        "stages.1.weight": (0.05, 0.01), "stages.1.bias": (0.05, 0.0),
        "fc.weight": (1.0, 0.01), "fc.bias": (1.0, 0.0),
        "fc2.weight": (0.1, 0.01), "fc2.bias": (0.1, 0.0),
    }
    for name, p in net.named_parameters():
        assert lr_of[id(p)] == pytest.approx(expected[name]), name
    # a schedule scales every group by the same factor
    torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 0.5)
    assert sorted(g["lr"] / g["lr_multiplier"] for g in opt.param_groups
                  if g["lr_multiplier"] > 0) == pytest.approx([0.05] * 6)


def test_lr_multipliers_step_equals_torch_with_explicit_groups():
    torch.manual_seed(0)
    n1, n2 = Net(), Net()
    n2.load_state_dict(n1.state_dict())
    ours = build_optimizer(n1, OptimConfig(name="sgd", lr=0.1, weight_decay=0.0, momentum=0.9,
                                           lr_multipliers={"fc": 3.0}))
    ref = torch.optim.SGD([{"params": [p for n, p in n2.named_parameters() if n.startswith("fc.")],
                            "lr": 0.3},
                           {"params": [p for n, p in n2.named_parameters()
                                       if not n.startswith("fc.")]}],
                          lr=0.1, momentum=0.9, nesterov=True)
    x = torch.randn(4, 2)
    for opt, m in ((ours, n1), (ref, n2)):
        for _ in range(3):
            opt.zero_grad()
            m(x).square().mean().backward()
            opt.step()
    for a, b in zip(n1.parameters(), n2.parameters()):
        assert torch.allclose(a, b, atol=1e-7)


def test_unknown_lr_multiplier_prefix_is_an_error_with_suggestion():
    with pytest.raises(ValueError, match=r"'fcc' matches no parameter; did you mean fc"):
        param_groups(Net(), 0.0, lr_multipliers={"fcc": 2.0})
    with pytest.raises(ValueError, match="dotted parameter name prefix"):
        OptimConfig(lr_multipliers={"fc.": 2.0})


def test_lr_multipliers_from_cli_override():
    cfg = load_config(None, ["optim.name=lookahead", "optim.base=adamw",
                             "optim.lr_multipliers={fc: 10.0, stages.0: 0.1}"])
    assert cfg.optim.lr_multipliers == {"fc": 10.0, "stages.0": 0.1}
    with pytest.raises(ConfigError, match="optim.lr_multipliers"):
        load_config(None, ["optim.lr_multipliers={fc: -1}"])


# ----------------------------------------------------------------------------- penalties
def test_regularization_penalty_value_excludes_norm_and_bias():
    net = Net()
    weights = [p for n, p in net.named_parameters() if n.endswith("weight") and p.ndim == 2]
    assert len(weights) == 4
    l1 = sum(w.abs().sum() for w in weights)
    l2 = sum(w.square().sum() for w in weights)
    got = regularization_penalty(net, l1=0.01, l2=0.1)
    assert got.item() == pytest.approx(0.01 * l1.item() + 0.05 * l2.item(), rel=1e-6)
    every = sum(p.square().sum() for p in net.parameters())
    assert regularization_penalty(net, l2=2.0, decay_norm_and_bias=True).item() == \
        pytest.approx(every.item(), rel=1e-6)


def test_l2_penalty_in_loss_equals_sgd_coupled_weight_decay():
    torch.manual_seed(0)
    n1, n2 = Net(), Net()
    n2.load_state_dict(n1.state_dict())
    decayed = build_optimizer(n1, OptimConfig(name="sgd", lr=0.1, weight_decay=0.05))
    plain = build_optimizer(n2, OptimConfig(name="sgd", lr=0.1, weight_decay=0.0))
    x = torch.randn(4, 2)
    for _ in range(3):
        decayed.zero_grad()
        n1(x).square().mean().backward()
        decayed.step()
        plain.zero_grad()
        (n2(x).square().mean() + regularization_penalty(n2, l2=0.05)).backward()
        plain.step()
    for a, b in zip(n1.parameters(), n2.parameters()):
        assert torch.allclose(a, b, atol=1e-6)


def test_l1_penalty_gradient_is_sign():
    net = Net()
    regularization_penalty(net, l1=0.3).backward()
    assert torch.equal(net.fc.weight.grad, 0.3 * net.fc.weight.detach().sign())
    assert net.fc.bias.grad is None
