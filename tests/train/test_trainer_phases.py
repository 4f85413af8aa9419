"""A task with two phases (a GAN's shape): one optimizer, scaler and schedule per phase, each
phase steps only its own parameters, and the other phase's parameters take no gradient from it.
Checked against the same two updates written out by hand."""

import copy

import pytest
import torch
from torch import nn

from archlab.metrics.mean import MeanMetric
from archlab.tasks.base import Task, unwrap
from archlab.train.precision import Precision
from archlab.train.schedules import ScheduleConfig, build_schedule
from archlab.train.trainer import TrainConfig, Trainer
from tests.train.test_trainer_math import ListLoader


class Pair(nn.Module):
    """"critic" scores samples; "maker" turns noise into samples (a toy GAN)."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.maker = nn.Linear(3, 4)
        self.critic = nn.Linear(4, 1)


class TwoPhaseTask(Task):
    phases = ("critic", "maker")

    def phase_module(self, phase):
        return getattr(unwrap(self.model), phase)

    def training_step(self, batch, phase):
        m = unwrap(self.model)
        fake = m.maker(batch["z"])
        if phase == "critic":  # real up, fake down; the fake is not detached on purpose:
            loss = m.critic(fake).mean() - m.critic(batch["x"]).mean()  # maker is frozen here
        else:
            loss = -m.critic(fake).mean()
        return {"loss": loss, "fake_mean": fake.detach().mean()}

    def evaluation_metrics(self):
        return {"score": MeanMetric("score")}

    def validation_step(self, batch, metrics):
        metrics["score"].update(unwrap(self.model).critic(batch["x"]).flatten())


def batches(n=3):
    g = torch.Generator().manual_seed(1)
    return [{"x": torch.randn(5, 4, generator=g), "z": torch.randn(5, 3, generator=g)}
            for _ in range(n)]


def make(model, data):
    task = TwoPhaseTask(model, None)
    opts = {"critic": torch.optim.SGD(model.critic.parameters(), lr=0.1),
            "maker": torch.optim.SGD(model.maker.parameters(), lr=0.05, momentum=0.9)}
    scheds = {k: build_schedule(o, ScheduleConfig(name="constant"), epochs=1,
                                steps_per_epoch=len(data)) for k, o in opts.items()}
    return Trainer(task, opts, scheds, train_loader=ListLoader(data), val_loader=ListLoader(data),
                   cfg=TrainConfig(epochs=1), precision=Precision(None, False, "cpu"))


def test_each_phase_steps_its_own_parameters_like_the_hand_written_loop():
    data = batches()
    model = Pair()
    ref = copy.deepcopy(model)
    trainer = make(model, data)
    metrics = trainer.train_epoch()

    opt_c = torch.optim.SGD(ref.critic.parameters(), lr=0.1)
    opt_m = torch.optim.SGD(ref.maker.parameters(), lr=0.05, momentum=0.9)
    fakes = {"critic": [], "maker": []}
    for b in data:
        ref.maker.requires_grad_(False)
        fake = ref.maker(b["z"])
        fakes["critic"].append(fake.mean())
        (ref.critic(fake).mean() - ref.critic(b["x"]).mean()).backward()
        ref.maker.requires_grad_(True)
        opt_c.step()
        opt_c.zero_grad()
        ref.critic.requires_grad_(False)
        fake = ref.maker(b["z"])
        fakes["maker"].append(fake.detach().mean())
        (-ref.critic(fake).mean()).backward()
        ref.critic.requires_grad_(True)
        opt_m.step()
        opt_m.zero_grad()
        assert all(p.grad is None for p in ref.parameters())
    for (name, a), b in zip(model.named_parameters(), ref.parameters()):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-7, msg=name)
    assert all(p.grad is None for p in model.parameters())  # nothing leaked across phases
    assert all(p.requires_grad for p in model.parameters())  # and everything was unfrozen
    assert trainer.global_step == len(data)  # one step per batch, both phases
    assert set(metrics) == {"train.critic.loss", "train.critic.fake_mean", "train.maker.loss",
                            "train.maker.fake_mean", "lr", "lr.maker"}
    assert metrics["train.maker.fake_mean"] == pytest.approx(
        torch.stack(fakes["maker"]).mean().item(), abs=1e-6)
    assert metrics["lr"] == 0.1 and metrics["lr.maker"] == 0.05


def test_phase_state_round_trips_and_single_optimizer_needs_one_phase():
    data = batches()
    model = Pair()
    trainer = make(model, data)
    trainer.train_epoch()
    state = copy.deepcopy(trainer.state_dict())
    assert set(state["optimizers"]) == set(state["schedulers"]) == {"critic", "maker"}
    other = make(Pair(), data)
    other.load_state_dict(state)
    momentum = other.phases[1].optimizer.state_dict()["state"][0]["momentum_buffer"]
    assert torch.equal(momentum, state["optimizers"]["maker"]["state"][0]["momentum_buffer"])
    with pytest.raises(ValueError, match="one optimizer per phase"):
        Trainer(TwoPhaseTask(model, None), torch.optim.SGD(model.parameters(), lr=0.1),
                {"critic": None, "maker": None}, train_loader=ListLoader(data),
                val_loader=ListLoader(data), cfg=TrainConfig(), precision=Precision(None, False,
                                                                                "cpu"))
