"""Expand a StudyConfig into trials: variant × axes point × seed, each a validated config.

A trial's overrides are applied in this order, later ones winning: the study's ``overrides``,
the variant's, the axes point's, ``quick.overrides`` (with ``--quick``), then
``train.seed=<seed>`` and ``experiment=<study name>``. A *group* is a trial without its seed:
the unit the report aggregates over.
"""

from __future__ import annotations

import hashlib
import itertools
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

from archlab.runs.config import ConfigError, config_to_dict, load_config
from archlab.studies.spec import StudyConfig, resolve_base


@dataclass(frozen=True)
class Trial:
    key: str
    """Unique label, e.g. ``"relu lr=0.1 seed=0"``."""
    group: str
    """The key without its seed: the configuration the seeds are aggregated over."""
    variant: str | None
    point: dict[str, Any]
    """Axis values of this trial, by full dotted key."""
    seed: int
    overrides: tuple[str, ...]
    config: dict = field(repr=False)
    """The resolved experiment config (plain types)."""

    @property
    def fingerprint(self) -> str:
        """Hash of the resolved config: a finished trial is reused only if it is unchanged."""
        blob = json.dumps(self.config, sort_keys=True).encode()
        return hashlib.sha256(blob).hexdigest()[:16]


def axis_labels(axes: dict[str, list[Any]]) -> dict[str, str]:
    """Short label per axis key: its last dotted part, or the full key where that collides."""
    last = {k: k.rsplit(".", 1)[-1] for k in axes}
    counts: dict[str, int] = {}
    for short in last.values():
        counts[short] = counts.get(short, 0) + 1
    return {k: (s if counts[s] == 1 else k) for k, s in last.items()}


def _format_value(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value)


def group_label(variant: str | None, point: dict[str, Any], labels: dict[str, str]) -> str:
    parts = [variant] if variant is not None else []
    parts += [f"{labels[k]}={_format_value(v)}" for k, v in point.items()]
    return " ".join(parts) or "base"


def expand_groups(study: StudyConfig) -> list[tuple[str, str | None, dict[str, Any], list[str]]]:
    """(label, variant, axes point, overrides) per configuration, in YAML order."""
    labels = axis_labels(study.axes)
    variants: list[tuple[str | None, list[str]]] = (
        list(study.variants.items()) or [(None, [])])
    keys = list(study.axes)
    groups, seen = [], {}
    for (variant, variant_overrides), values in itertools.product(
            variants, itertools.product(*(study.axes[k] for k in keys))):
        point = dict(zip(keys, values))
        label = group_label(variant, point, labels)
        if label in seen:
            raise ConfigError(f"study '{study.name}': two configurations get the same label "
                              f"'{label}' ({seen[label]} and {point}); rename a variant")
        seen[label] = point
        overrides = list(study.overrides) + list(variant_overrides) + [
            f"{k}={json.dumps(v)}" for k, v in point.items()]
        groups.append((label, variant, point, overrides))
    return groups


def expand_trials(study: StudyConfig, *, quick: bool = False,
                  study_file: str | Path | None = None, overrides: Sequence[str] = (),
                  seeds: Sequence[int] | None = None) -> list[Trial]:
    """Every trial of the study, seed-major (all configurations of seed 0 first, so an
    interrupted study already has one complete replicate). Every config is built and validated
    here; all problems are raised together as one ConfigError before anything runs.

    ``overrides`` (the command line's ``KEY=VALUE``) apply to every trial after everything the
    study sets, quick mode included, e.g. ``train.device=cuda``; ``seeds`` replaces the study's
    (and quick mode's) seed list."""
    base = resolve_base(study, study_file)
    if seeds is None:
        seeds = study.quick.seeds if quick and study.quick.seeds else study.seeds
    seeds = list(seeds)
    if not seeds or len(set(seeds)) != len(seeds):
        raise ConfigError(f"seeds must be a non-empty list of distinct integers, got {seeds}")
    extra = (list(study.quick.overrides) if quick else []) + list(overrides)
    groups = expand_groups(study)
    baseline = study.report.baseline
    if baseline is not None and baseline not in {g[0] for g in groups}:
        raise ConfigError(f"study '{study.name}': report.baseline '{baseline}' is not one of "
                          f"the configurations: {', '.join(g[0] for g in groups)}")
    trials, errors = [], []
    for seed in seeds:
        for label, variant, point, overrides in groups:
            full = overrides + extra + [f"train.seed={seed}", f"experiment={study.name}"]
            key = f"{label} seed={seed}"
            try:
                cfg = load_config(base, full)
            except ConfigError as e:
                if seed == seeds[0]:  # the same error for every seed: report it once
                    errors.append(f"configuration '{label}': {e}")
                continue
            trials.append(Trial(key, label, variant, point, seed, tuple(full),
                                config_to_dict(cfg)))
    if errors:
        raise ConfigError(f"study '{study.name}' has invalid configurations (nothing was run):\n"
                          + "\n".join(errors))
    return trials
