"""Load an ExperimentConfig from YAML plus dotted CLI overrides, strictly.

``load_config("configs/fashion_mnist/default.yaml", ["train.epochs=3", "optim.lr=0.05"])``.
Override values are parsed as YAML scalars/lists (``3``, ``0.05``, ``true``, ``[flip]``).
Every problem — unknown key, wrong type, value out of range, unknown registry name — is
reported at once as a :class:`ConfigError` naming the key and what is allowed, before any work.
"""

from __future__ import annotations

import dataclasses
import difflib
import typing
from pathlib import Path
from typing import Any, Iterable

import yaml
from pydantic import TypeAdapter, ValidationError

from archlab.config.experiment import ExperimentConfig


class ConfigError(ValueError):
    """A config file or override is invalid; the CLI exits with status 2."""


_ADAPTER = TypeAdapter(ExperimentConfig)


def parse_override(text: str) -> tuple[list[str], Any]:
    key, sep, raw = text.partition("=")
    if not sep or not key.strip():
        raise ConfigError(f"override '{text}' is not of the form key.path=value")
    try:
        value = yaml.safe_load(raw) if raw.strip() else ""
    except yaml.YAMLError as e:
        raise ConfigError(f"override '{text}': cannot parse value: {e}") from None
    return key.strip().split("."), value


def _expand_section(section: str, value: Any, text: str) -> Any:
    """A top-level section given in a short form (``diagnostics=all``) becomes its mapping, so
    a later ``diagnostics.every_steps=20`` can refine it. Sections opt in by giving their config
    class an ``expand_short_form`` static method."""
    field_type = typing.get_type_hints(ExperimentConfig).get(section)
    expand = getattr(field_type, "expand_short_form", None)
    if expand is None:
        return value
    try:
        return expand(value)
    except ValueError as e:
        raise ConfigError(f"override '{text}': {section}: {e}") from None


def apply_overrides(tree: dict, overrides: Iterable[str]) -> dict:
    for text in overrides:
        path, value = parse_override(text)
        node = tree
        for depth, part in enumerate(path[:-1]):
            child = node.setdefault(part, {})
            if not isinstance(child, dict) and depth == 0:
                child = node[part] = _expand_section(part, child, text)
            if not isinstance(child, dict):
                raise ConfigError(f"override '{text}': '{part}' is a value, not a section")
            node = child
        node[path[-1]] = value
    return tree


def read_yaml(path: str | Path) -> dict:
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file not found: {path}")
    try:
        tree = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as e:
        raise ConfigError(f"{path}: invalid YAML: {e}") from None
    if not isinstance(tree, dict):
        raise ConfigError(f"{path}: top level must be a mapping of sections, got "
                          f"{type(tree).__name__}")
    return tree


def build_config(tree: dict, source: str = "config") -> ExperimentConfig:
    try:
        return _ADAPTER.validate_python(tree)
    except ValidationError as e:
        raise ConfigError(f"invalid {source}:\n" + format_errors(e)) from None


def load_config(path: str | Path | None = None, overrides: Iterable[str] = ()) -> ExperimentConfig:
    tree = read_yaml(path) if path is not None else {}
    apply_overrides(tree, overrides)
    return build_config(tree, str(path) if path else "config")


def config_to_dict(cfg: ExperimentConfig) -> dict:
    """Plain JSON/YAML types; feeding it back to build_config gives an equal config."""
    return _ADAPTER.dump_python(cfg, mode="json")


def save_config(cfg: ExperimentConfig, path: str | Path) -> None:
    Path(path).write_text(yaml.safe_dump(config_to_dict(cfg), sort_keys=False))


def format_errors(error: ValidationError, root: type = ExperimentConfig) -> str:
    """One line per problem, naming the dotted key; unknown keys get the valid keys of their
    section of ``root`` (the config class validated) and the closest match."""
    lines = []
    for err in error.errors():
        loc = [str(p) for p in err["loc"] if not str(p).startswith("function-")]
        key = ".".join(loc) or "<root>"
        if err["type"] in ("unexpected_keyword_argument", "extra_forbidden"):
            valid = _fields_at(loc[:-1], root)
            close = difflib.get_close_matches(loc[-1], valid, n=1)
            hint = f"; did you mean '{close[0]}'?" if close else ""
            lines.append(f"  {key}: unknown key{hint} (valid keys: {', '.join(valid)})")
            continue
        msg = err["msg"].removeprefix("Value error, ")
        value = err.get("input")
        shown = "" if isinstance(value, (dict, list)) or value is None else f" (got {value!r})"
        lines.append(f"  {key}: {msg}{shown}")
    return "\n".join(lines)


def _fields_at(path: list[str], root: type = ExperimentConfig) -> list[str]:
    """Field names of the config section at ``path`` (for 'valid keys' in messages)."""
    cls: Any = root
    for part in path:
        cls = typing.get_type_hints(cls).get(part)
        if not dataclasses.is_dataclass(cls):
            return []
    return [f.name for f in dataclasses.fields(cls)]
