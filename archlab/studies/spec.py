"""StudyConfig: what a study YAML may say, strictly typed.

A study is a base experiment, the things to vary, the seeds, and what to report::

    name: activations
    base: ../configs/fashion_mnist/mlp.yaml      # relative to this file (optional)
    overrides: {model.name: mlp, train.epochs: 10}   # or a list: [train.epochs=10]
    variants:                                   # named override sets (optional) ...
      relu: {model.options.act: relu}
      tanh: [model.options.act=tanh]
    axes: {optim.lr: [0.01, 0.1]}               # ... crossed with a grid of values (optional)
    seeds: [0, 1, 2]
    report:
      metrics: [val.acc, test.acc, train_time_s]
      curves: [val.acc, train.loss]
      targets: {val.acc: [0.8, 0.85]}           # "epochs to reach"
      baseline: relu
      sections: [grad_flow]                     # extra report sections by name
    quick: {overrides: {data.subset_fraction: 0.1, train.epochs: 2}, seeds: [0, 1]}

Overrides use the experiment's dotted keys (``archlab train`` syntax). A mapping form is
accepted because a YAML list item such as ``model.options={a: 1}`` would otherwise parse as a
mapping; each ``key: value`` becomes ``key=<value as JSON>`` (JSON is YAML), so both forms go
through the one override loader. Every trial's config is validated before any trial runs
(:func:`archlab.studies.trials.expand_trials`).
"""

from __future__ import annotations

import json
import re
from dataclasses import field
from pathlib import Path
from typing import Annotated, Any, Literal, Optional, Union

import yaml
from pydantic import Field, TypeAdapter, ValidationError, field_validator

from archlab.config import config_dataclass
from archlab.runs.config import ConfigError, format_errors

Overrides = Union[list[str], dict[str, Any]]
NAME_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")


def normalize_overrides(value: Any) -> list[str]:
    """``[k=v, ...]`` or ``{k: v}`` -> ``["k=v", ...]`` (mapping values written as JSON)."""
    if value is None:
        return []
    if isinstance(value, dict):
        return [f"{k}={json.dumps(v)}" for k, v in value.items()]
    if isinstance(value, list) and all(isinstance(v, str) for v in value):
        for text in value:
            if "=" not in text:
                raise ValueError(f"override '{text}' is not of the form key.path=value")
        return list(value)
    raise ValueError(f"overrides must be a list of 'key.path=value' strings or a mapping "
                     f"{{key.path: value}}; got {value!r} (quote list items that contain ': ')")


@config_dataclass
class ReportSpec:
    metrics: list[str] = field(default_factory=lambda: ["val.acc", "test.acc", "train_time_s"])
    """Final metrics (from the run store) summarised per configuration."""
    curves: list[str] = field(default_factory=lambda: ["val.acc", "train.loss"])
    """Per-epoch metrics (from each run's metrics.jsonl) drawn as mean ± band."""
    band: Literal["std", "ci"] = "std"
    """Shaded band of the curves: ± one std over seeds, or the Student-t interval (with 2-3
    seeds the t interval is 4-13 std wide and hides the curves)."""
    targets: dict[str, list[float]] = field(default_factory=dict)
    """``{metric: [values]}``: epochs and train time to first reach each value (a metric whose
    name contains 'loss' or 'err' is reached from above)."""
    baseline: Optional[str] = None
    """Configuration the others are compared with (a variant name or axis label, as shown in
    the summary table); None compares all pairs."""
    pairwise: Literal["baseline", "all", "none"] = "baseline"
    confidence: Annotated[float, Field(gt=0.0, lt=1.0)] = 0.95
    bootstrap_resamples: Annotated[int, Field(ge=0)] = 0
    """> 0 adds a percentile-bootstrap interval of each difference of means."""
    bootstrap_seed: int = 0
    sections: list[str] = field(default_factory=list)
    """Extra report sections by registered name (``archlab.studies.sections.REPORT_SECTIONS``),
    appended after the standard ones (summary, pairwise, curves, targets, trials)."""

    @field_validator("sections")
    @classmethod
    def _registered(cls, sections: list[str]) -> list[str]:
        from archlab.config import known_name
        from archlab.studies.sections import REPORT_SECTIONS

        return [known_name(REPORT_SECTIONS, s) for s in sections]


@config_dataclass
class QuickSpec:
    """What ``--quick`` changes: extra overrides applied last, and (optionally) fewer seeds."""

    overrides: Overrides = field(default_factory=list)
    seeds: Optional[list[int]] = field(default_factory=lambda: [0, 1])

    @field_validator("overrides", mode="before")
    @classmethod
    def _normalize(cls, value: Any) -> list[str]:
        return normalize_overrides(value)


@config_dataclass
class StudyConfig:
    name: str
    """Study name: the run-store experiment and the study directory's name."""
    description: str = ""
    base: Optional[str] = None
    """Experiment YAML the trials start from, relative to the study file."""
    overrides: Overrides = field(default_factory=list)
    variants: dict[str, Overrides] = field(default_factory=dict)
    axes: dict[str, list[Any]] = field(default_factory=dict)
    seeds: Annotated[list[int], Field(min_length=1)] = field(default_factory=lambda: [0, 1, 2])
    report: ReportSpec = field(default_factory=ReportSpec)
    quick: QuickSpec = field(default_factory=QuickSpec)

    @field_validator("name")
    @classmethod
    def _simple_name(cls, name: str) -> str:
        if not NAME_PATTERN.match(name) or name == "studies":
            raise ValueError(f"study name must be letters, digits, '_', '.', '-' (and not "
                             f"'studies'); got {name!r}")
        return name

    @field_validator("overrides", mode="before")
    @classmethod
    def _normalize(cls, value: Any) -> list[str]:
        return normalize_overrides(value)

    @field_validator("variants", mode="before")
    @classmethod
    def _normalize_variants(cls, value: Any) -> dict[str, list[str]]:
        if not isinstance(value, dict):
            raise ValueError(f"variants must map a name to its overrides, got {value!r}")
        return {str(k): normalize_overrides(v) for k, v in value.items()}

    @field_validator("axes")
    @classmethod
    def _non_empty(cls, axes: dict[str, list[Any]]) -> dict[str, list[Any]]:
        for key, values in axes.items():
            if not values:
                raise ValueError(f"axis '{key}' has no values")
        return axes

    @field_validator("seeds")
    @classmethod
    def _distinct(cls, seeds: list[int]) -> list[int]:
        if len(set(seeds)) != len(seeds):
            raise ValueError(f"seeds must be distinct, got {seeds}")
        return seeds


_ADAPTER = TypeAdapter(StudyConfig)


def build_study(tree: Any, source: str = "study") -> StudyConfig:
    """A StudyConfig from a parsed YAML mapping; every problem in one :class:`ConfigError`."""
    if not isinstance(tree, dict):
        raise ConfigError(f"{source}: a study must be a mapping with at least 'name', got "
                          f"{type(tree).__name__}")
    try:
        return _ADAPTER.validate_python(tree)
    except ValidationError as e:
        raise ConfigError(f"invalid {source}:\n" + format_errors(e, root=StudyConfig)) from None


def load_study(path: str | Path) -> StudyConfig:
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"study file not found: {path}")
    try:
        tree = yaml.safe_load(path.read_text())
    except yaml.YAMLError as e:
        raise ConfigError(f"{path}: invalid YAML: {e}") from None
    return build_study(tree, str(path))


def study_to_dict(study: StudyConfig) -> dict:
    """Plain types; :func:`build_study` of it gives an equal StudyConfig."""
    return _ADAPTER.dump_python(study, mode="json")


def resolve_base(study: StudyConfig, study_file: str | Path | None) -> Path | None:
    """The base experiment YAML as an absolute path (relative to the study file's folder)."""
    if study.base is None:
        return None
    base = Path(study.base)
    if not base.is_absolute() and study_file is not None:
        base = Path(study_file).resolve().parent / base
    if not base.is_file():
        raise ConfigError(f"study '{study.name}': base config not found: {base}")
    return base.resolve()
