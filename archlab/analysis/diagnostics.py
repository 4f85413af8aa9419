"""Training diagnostics as one callback, switched on from the config.

``archlab train -c cfg.yaml diagnostics=all`` (or ``diagnostics=[grad_flow,dead_units]``, or in
YAML ``diagnostics: {grad_flow: true, every_steps: 20}``) turns on any of

* ``grad_flow`` — per-parameter gradient norm and mean |grad|, global norm, and warnings for
  vanishing / exploding gradients (:mod:`archlab.analysis.grad_flow`);
* ``activation_stats`` — mean, std, sparsity, saturation per activation module on the logged
  training steps, histograms on the first validation batch after ``histogram_epochs``
  (:mod:`archlab.analysis.activation_stats`);
* ``dead_units`` — fraction of ReLU-family units that are zero for the whole validation pass,
  and of any rectifier's units that are never positive, every epoch
  (:mod:`archlab.analysis.dead_units`);
* ``weight_stats`` — weight norms and update-to-weight ratios (:mod:`.weight_stats`);
* ``bn_stats`` — each BatchNorm layer's running mean/variance against the statistics of what it
  sees in the validation pass, every epoch, with a warning when eval mode would normalize by a
  variance ``bn_var_ratio`` times off (:mod:`archlab.analysis.bn_stats`);
* ``nonfinite`` — when the Trainer stops on a non-finite loss, the run's error names the module
  that first produced NaN/inf (:mod:`archlab.analysis.nonfinite`).

Records go to ``<run_dir>/diagnostics.jsonl`` (``{"step", "epoch", "kind", "layers": {name:
values}, ...}``, layers in depth order; with grad_flow or weight_stats a ``parameters`` record at
the start of fit gives each parameter's shape); at the end of fit the plots go to
``<run_dir>/artifacts/diagnostics/`` (see :func:`~archlab.analysis.diagnostic_plots.
plot_diagnostics`). Everything is off by default, and the hooks are attached only on the steps
that are measured (``nonfinite`` alone watches every training forward pass).
"""

from __future__ import annotations

import difflib
import warnings
from pathlib import Path
from typing import Annotated, Any, Optional

from pydantic import Field, field_validator, model_validator
from pydantic_core import ArgsKwargs

from archlab.analysis.activation_stats import ActivationStats
from archlab.analysis.bn_stats import BatchNormStats, BatchNormStatsWarning, check_batchnorm_stats
from archlab.analysis.dead_units import DeadUnitCounter
from archlab.analysis.grad_flow import GradientFlowWarning, check_gradient_flow, gradient_flow
from archlab.analysis.nonfinite import NonFiniteDetector
from archlab.analysis.weight_stats import UpdateToWeightRatio
from archlab.config import config_dataclass
from archlab.strict_json import strict_dumps
from archlab.train.callbacks.base import Callback
from archlab.train.callbacks.metric_logger import truncate_metrics

#: The diagnostics one can switch on, by the name used in configs (and their module's name).
DIAGNOSTIC_PARTS = ("grad_flow", "activation_stats", "dead_units", "weight_stats", "bn_stats",
                    "nonfinite")


def expand_short_form(value: Any) -> Any:
    """The short forms: ``all`` / true, ``none`` / false / null, a part name, a list of them."""
    if value is True or value == "all":
        return {p: True for p in DIAGNOSTIC_PARTS}
    if value is False or value is None or value == "none":
        return {}
    names = [value] if isinstance(value, str) else value
    if not isinstance(names, (list, tuple)) or not all(isinstance(n, str) for n in names):
        raise ValueError(f"diagnostics must be 'all', 'none', a part name, a list of part names "
                         f"or a mapping of options; got {value!r}")
    mapping = {}
    for name in names:
        if name == "all":
            mapping.update({p: True for p in DIAGNOSTIC_PARTS})
        elif name in DIAGNOSTIC_PARTS:
            mapping[name] = True
        else:
            close = difflib.get_close_matches(name, DIAGNOSTIC_PARTS, n=1)
            hint = f"; did you mean {close[0]}?" if close else ""
            raise ValueError(f"unknown diagnostic '{name}'{hint} (valid choices: "
                             f"{', '.join(DIAGNOSTIC_PARTS)}, all, none)")
    return mapping


@config_dataclass
class DiagnosticsConfig:
    grad_flow: bool = False
    activation_stats: bool = False
    dead_units: bool = False
    weight_stats: bool = False
    bn_stats: bool = False
    nonfinite: bool = False
    every_steps: Annotated[int, Field(ge=1)] = 50
    """grad_flow, activation_stats and weight_stats are measured on the first optimizer step
    and every this many steps."""
    histogram_epochs: tuple[int, ...] = (1, -1)
    """activation_stats: epochs (1-based) after which activation histograms are taken on the
    first validation batch; negative counts from the end (-1 = train.epochs)."""
    histogram_bins: Annotated[int, Field(ge=2)] = 50
    saturation_eps: Annotated[float, Field(gt=0.0, lt=0.5)] = 0.01
    """A sigmoid output below eps or above 1 - eps (tanh: |y| > 1 - eps) counts as saturated."""
    vanishing_ratio: Optional[Annotated[float, Field(gt=0.0)]] = 1e-3
    """Warn when the first layer's gradient norm is below this times the last layer's
    (null: never)."""
    exploding_norm: Optional[Annotated[float, Field(gt=0.0)]] = 1e3
    """Warn when the global gradient norm exceeds this or is not finite (null: never). With
    train.grad_clip_norm it is the norm before clipping."""
    bn_var_ratio: Optional[Annotated[float, Field(gt=1.0)]] = 10.0
    """bn_stats: warn when a BatchNorm layer's running variance is more than this factor
    above or below the variance of its input in the validation pass (null: never)."""
    plots: bool = True
    """Write the PNGs to artifacts/diagnostics/ at the end of fit."""

    #: Lets the override loader refine a short form: ``diagnostics=all diagnostics.every_steps=5``.
    expand_short_form = staticmethod(expand_short_form)

    @model_validator(mode="before")
    @classmethod
    def _short_form(cls, data: Any) -> Any:
        if isinstance(data, (dict, cls, ArgsKwargs)):  # the full form, or the constructor
            return data
        return expand_short_form(data)

    @field_validator("histogram_epochs")
    @classmethod
    def _nonzero(cls, epochs: tuple[int, ...]) -> tuple[int, ...]:
        if 0 in epochs:
            raise ValueError("histogram_epochs are 1-based (1 = after the first epoch; -1 = "
                             "after the last); 0 is not an epoch")
        return epochs

    @property
    def parts(self) -> list[str]:
        """Names of the diagnostics switched on."""
        return [p for p in DIAGNOSTIC_PARTS if getattr(self, p)]

    @property
    def enabled(self) -> bool:
        return bool(self.parts)


class Diagnostics(Callback):
    """Measures what ``cfg`` switches on and appends records to ``<run_dir>/diagnostics.jsonl``.

    Runs on rank 0 only (gradients are already all-reduced at ``on_before_optimizer_step``;
    dead units are counted on rank 0's share of the validation set).
    """

    def __init__(self, cfg: DiagnosticsConfig, run_dir: str | Path) -> None:
        self.cfg, self.run_dir = cfg, Path(run_dir)
        self.path = self.run_dir / "diagnostics.jsonl"
        self._warned: set[str] = set()
        self._activations: ActivationStats | None = None
        self._histograms: ActivationStats | None = None
        self._dead: DeadUnitCounter | None = None
        self._updates: UpdateToWeightRatio | None = None
        self._bn: BatchNormStats | None = None
        self._nonfinite: NonFiniteDetector | None = None

    # ------------------------------------------------------------------ records
    def _write(self, trainer, kind: str, step: int | None = None, **values: Any) -> None:
        record = {"step": trainer.global_step if step is None else step,
                  "epoch": trainer.epoch, "kind": kind, **values}
        with self.path.open("a") as f:
            f.write(strict_dumps(record) + "\n")

    def _warn(self, message: str, category: type[Warning] = GradientFlowWarning) -> None:
        kind = message.split(":", 1)[0]  # warn once per kind; every occurrence is recorded
        if kind not in self._warned:
            self._warned.add(kind)
            warnings.warn(message, category, stacklevel=2)

    def _logged(self, step: int) -> bool:
        # Step 1 too: the picture at initialization is where vanishing gradients show first.
        return step == 1 or step % self.cfg.every_steps == 0

    def _arm_activations(self, trainer) -> None:
        # Hooks go on only for the step about to be measured, so other steps pay nothing.
        if self._activations is not None and self._logged(trainer.global_step + 1):
            self._activations.attach()

    # ------------------------------------------------------------------ hooks
    def on_fit_start(self, trainer) -> None:
        model, cfg = trainer.model, self.cfg
        self.path.parent.mkdir(parents=True, exist_ok=True)
        # A resumed run re-logs the records after its checkpoint.
        truncate_metrics(self.path.parent, trainer.global_step, self.path.name)
        if hasattr(trainer.task.model, "_orig_mod") and (cfg.activation_stats or cfg.dead_units
                                                        or cfg.nonfinite):
            warnings.warn("diagnostics with train.compile: forward hooks on a compiled model "
                          "may cause recompilation or be skipped; turn compile off to diagnose")
        if cfg.grad_flow or cfg.weight_stats:
            # The plots draw weight matrices and kernels (ndim >= 2) as the depth curve and
            # biases / norm scales (1-d) as separate marks; the shapes say which is which.
            self._write(trainer, "parameters",
                        layers={n: {"shape": list(p.shape)} for n, p in model.named_parameters()
                                if p.requires_grad})
        if cfg.activation_stats:
            self._activations = ActivationStats(model, saturation_eps=cfg.saturation_eps)
            self._histograms = ActivationStats(model, saturation_eps=cfg.saturation_eps,
                                               histogram_bins=cfg.histogram_bins)
        if cfg.dead_units:
            self._dead = DeadUnitCounter(model)
        if cfg.weight_stats:
            self._updates = UpdateToWeightRatio(model)
        if cfg.bn_stats:
            self._bn = BatchNormStats(model)
            if not self._bn.modules:  # nothing to compare (e.g. an MLP): no empty records
                self._bn = None
        if cfg.nonfinite:
            self._nonfinite = NonFiniteDetector(model, raise_error=False)

    def on_train_epoch_start(self, trainer) -> None:
        if self._nonfinite is not None:
            self._nonfinite.attach()
        self._arm_activations(trainer)

    def on_before_optimizer_step(self, trainer) -> None:
        if not self._logged(trainer.global_step + 1):
            return
        if self.cfg.grad_flow:
            flow = gradient_flow(trainer.model)
            # With norm clipping the gradients read here are already clipped; the exploding
            # check needs the norm the clipper saw.
            pre_clip = getattr(trainer, "grad_norm_before_clip", None)
            if pre_clip is not None:
                flow.global_norm = float(pre_clip)
            messages = check_gradient_flow(flow, self.cfg.vanishing_ratio,
                                           self.cfg.exploding_norm)
            # The step being taken is global_step + 1; the record carries that number.
            self._write(trainer, "grad_flow", step=trainer.global_step + 1,
                        global_norm=flow.global_norm, depth_ratio=flow.depth_ratio,
                        warnings=messages, layers=flow.layers)
            for message in messages:
                self._warn(message)
        if self._updates is not None:
            self._updates.snapshot()

    def on_train_batch_end(self, trainer, out) -> None:
        if self._nonfinite is not None:
            self._nonfinite.reset()
        if self._logged(trainer.global_step):
            if self._updates is not None and self._updates.pending:
                self._write(trainer, "weight_stats", layers=self._updates.measure())
            if self._activations is not None and self._activations.attached:
                self._activations.detach()
                self._write(trainer, "activation_stats", layers=self._activations.results())
                self._activations.reset()
        self._arm_activations(trainer)

    def on_validation_start(self, trainer) -> None:
        if self._activations is not None:  # armed for the next training step, not for this
            self._activations.detach()
            self._activations.reset()
        if self._nonfinite is not None:
            self._nonfinite.detach()
        if self._dead is not None:
            self._dead.reset()
            self._dead.attach()
        if self._bn is not None:
            self._bn.reset()
            self._bn.attach()
        if self._histograms is not None and self._histogram_epoch(trainer):
            self._histograms.reset()
            self._histograms.attach()

    def on_validation_end(self, trainer, metrics) -> None:
        if self._dead is not None and self._dead.attached:
            self._dead.detach()
            self._write(trainer, "dead_units", layers=self._dead.results())
        if self._bn is not None and self._bn.attached:
            self._bn.detach()
            layers = self._bn.results()
            messages = check_batchnorm_stats(layers, self.cfg.bn_var_ratio)
            self._write(trainer, "bn_stats", threshold=self.cfg.bn_var_ratio, warnings=messages,
                        layers=layers)
            for message in messages:
                self._warn(message, BatchNormStatsWarning)
        if self._histograms is not None and self._histograms.attached:
            self._histograms.detach()
            self._write(trainer, "activation_histogram", layers=self._histograms.histograms())

    def on_fit_end(self, trainer) -> None:
        if self._nonfinite is not None and trainer.failure:
            message = self._nonfinite.check(step=trainer.global_step)
            if message is not None:  # the run's error (and the store) then names the module
                trainer.failure = f"{trainer.failure} Diagnosis: {message}."
            else:
                message = ("every module output of the failing forward pass was finite: the "
                           "loss itself (or the penalty) turned non-finite")
            self._write(trainer, "nonfinite", message=message)
        for tracker in (self._activations, self._histograms, self._dead, self._bn,
                        self._nonfinite):
            if tracker is not None:
                tracker.detach()
        if self.cfg.plots and self.path.exists():
            from archlab.analysis.diagnostic_plots import plot_diagnostics

            try:
                plot_diagnostics(self.run_dir)
            except Exception as e:  # a failed plot must not fail a finished run; say so
                warnings.warn(f"diagnostics plots failed: {type(e).__name__}: {e}")

    def _histogram_epoch(self, trainer) -> bool:
        epoch, total = trainer.epoch, trainer.cfg.epochs
        return any(e == epoch or (e < 0 and total + 1 + e == epoch)
                   for e in self.cfg.histogram_epochs)
