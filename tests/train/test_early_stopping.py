"""Early stopping on a scripted metric sequence, with a real model for restore-best."""

import torch
from torch import nn

from archlab.train.callbacks import EMA, EarlyStopping
from archlab.train.callbacks.early_stopping import improved


class ScriptedTrainer:
    """The few Trainer attributes EarlyStopping reads, driven by a list of metric values."""

    def __init__(self, callbacks=()):
        self.model = nn.Linear(2, 1)
        self.epoch = 0
        self.should_stop = False
        self.callbacks = list(callbacks)

    def evaluation_weights(self):
        import contextlib

        stack = contextlib.ExitStack()
        for cb in self.callbacks:
            if hasattr(cb, "evaluation_weights"):
                stack.enter_context(cb.evaluation_weights(self))
        return stack


def drive(es, values, trainer=None):
    trainer = trainer or ScriptedTrainer([es])
    for v in values:
        trainer.epoch += 1
        with torch.no_grad():
            trainer.model.weight.fill_(v)  # weights tagged with the epoch's metric
        es.on_validation_end(trainer, {"val.acc": v})
        if trainer.should_stop:
            break
    es.on_fit_end(trainer)
    return trainer


def test_stops_after_patience_without_improvement():
    es = EarlyStopping(patience=2)
    t = drive(es, [0.5, 0.6, 0.59, 0.58, 0.7])
    assert t.should_stop and es.stopped_epoch == 4 and es.best == 0.6 and es.best_epoch == 2


def test_min_delta_counts_small_gains_as_no_improvement():
    es = EarlyStopping(patience=2, min_delta=0.05)
    t = drive(es, [0.5, 0.52, 0.54, 0.9])
    assert t.should_stop and es.stopped_epoch == 3


def test_min_mode_and_restore_best_weights():
    es = EarlyStopping(monitor="val.acc", mode="min", patience=1)
    t = drive(es, [0.9, 0.3, 0.4])
    assert es.stopped_epoch == 3
    assert torch.all(t.model.weight == 0.3)  # restored the weights of the best epoch


def test_restore_best_resets_the_ema_average():
    t = ScriptedTrainer()
    ema = EMA(decay=0.5)
    es = EarlyStopping(patience=1)
    t.callbacks = [ema, es]
    ema.on_fit_start(t)
    drive(es, [0.8, 0.2], trainer=t)
    assert torch.equal(ema.shadow["weight"], t.model.weight)


def test_improved_helper():
    assert improved(1.0, None, "max") and improved(0.5, 0.4, "max")
    assert not improved(0.4, 0.4, "max") and improved(0.3, 0.4, "min")


def test_monitor_defaults_to_the_tasks_and_a_named_metric_gets_its_direction():
    from archlab.train.callbacks.early_stopping import resolve_monitor

    assert resolve_monitor(None, None, ("val.loss", "min")) == ("val.loss", "min")
    assert resolve_monitor(None, "max", ("val.acc", "max")) == ("val.acc", "max")
    assert resolve_monitor("val.bpc", None, ("val.acc", "max")) == ("val.bpc", "min")
    assert resolve_monitor("train.loss", None, ("val.acc", "max")) == ("train.loss", "min")
    assert resolve_monitor("val.f1_macro", None, ("val.loss", "min")) == ("val.f1_macro", "max")
    assert resolve_monitor("val.loss", "max", ("val.acc", "max")) == ("val.loss", "max")
