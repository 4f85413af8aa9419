"""The strict-config machinery: YAML files plus dotted CLI overrides validated into a root
config class, every problem reported at once.

The experiment's root (``ExperimentConfig``, ``load_config``) lives in :mod:`archlab.runs.config`;
this module knows no section. Override values are parsed as YAML scalars/lists (``3``, ``0.05``,
``true``, ``[flip]``). Every problem — unknown key, wrong type, value out of range, unknown
registry name — is a :class:`ConfigError` naming the key and what is allowed, before any work.
"""

from __future__ import annotations

import dataclasses
import difflib
import typing
from pathlib import Path
from typing import Any, Iterable

import yaml
from pydantic import TypeAdapter, ValidationError


class ConfigError(ValueError):
    """A config file or override is invalid; the CLI exits with status 2."""


#: Keys that moved, so an old config gets told where they went instead of just "unknown key".
MOVED_KEYS = {"train.tta_flip": "task.tta_flip",
              "task.metric_learning": "task (its fields are task options now: task.ce_weight, "
                                      "task.projection_dim, task.centroid_momentum)"}


def parse_override(text: str) -> tuple[list[str], Any]:
    key, sep, raw = text.partition("=")
    if not sep or not key.strip():
        raise ConfigError(f"override '{text}' is not of the form key.path=value")
    try:
        value = yaml.safe_load(raw) if raw.strip() else ""
    except yaml.YAMLError as e:
        raise ConfigError(f"override '{text}': cannot parse value: {e}") from None
    return key.strip().split("."), value


def _expand_section(section: str, value: Any, text: str, root: type) -> Any:
    """A top-level section given in a short form (``diagnostics=all``) becomes its mapping, so
    a later ``diagnostics.every_steps=20`` can refine it. Sections opt in by giving their config
    class an ``expand_short_form`` static method."""
    field_type = typing.get_type_hints(root).get(section)
    expand = getattr(field_type, "expand_short_form", None)
    if expand is None:
        return value
    try:
        return expand(value)
    except ValueError as e:
        raise ConfigError(f"override '{text}': {section}: {e}") from None


def apply_overrides(tree: dict, overrides: Iterable[str], root: type) -> dict:
    for text in overrides:
        path, value = parse_override(text)
        node = tree
        for depth, part in enumerate(path[:-1]):
            child = node.setdefault(part, {})
            if not isinstance(child, dict) and depth == 0:
                child = node[part] = _expand_section(part, child, text, root)
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


def validate(root: type, tree: dict, source: str = "config") -> Any:
    """``tree`` validated into ``root``; all problems at once as a :class:`ConfigError`."""
    try:
        return _adapter(root).validate_python(tree)
    except ValidationError as e:
        raise ConfigError(f"invalid {source}:\n" + format_errors(e, root)) from None


def to_dict(root: type, cfg: Any) -> dict:
    """Plain JSON/YAML types; validating it again gives an equal config."""
    return _adapter(root).dump_python(cfg, mode="json")


_ADAPTERS: dict[type, TypeAdapter] = {}


def _adapter(root: type) -> TypeAdapter:
    if root not in _ADAPTERS:
        _ADAPTERS[root] = TypeAdapter(root)
    return _ADAPTERS[root]


def format_errors(error: ValidationError, root: type) -> str:
    """One line per problem, naming the dotted key; unknown keys get the valid keys of their
    section of ``root`` (the config class validated) and the closest match. In a section that is
    a union chosen by ``name`` (the task), the key is the section's, not the variant's."""
    lines = []
    for err in error.errors():
        raw = [str(p) for p in err["loc"] if not str(p).startswith("function-")]
        loc, cls = _resolve(raw, root)
        key = ".".join(loc) or "<root>"
        if err["type"] in ("unexpected_keyword_argument", "extra_forbidden"):
            moved = MOVED_KEYS.get(key)
            if moved:
                lines.append(f"  {key}: this key moved to {moved}")
                continue
            valid = _field_names(cls)
            close = difflib.get_close_matches(loc[-1], valid, n=1)
            hint = f"; did you mean '{close[0]}'?" if close else ""
            lines.append(f"  {key}: unknown key{hint} (valid keys: {', '.join(valid)})")
            continue
        if err["type"] == "union_tag_invalid":
            tag, expected = err["ctx"]["tag"], err["ctx"]["expected_tags"]
            names = [t.strip(" '") for t in expected.split(",")]
            close = difflib.get_close_matches(tag, names, n=3, cutoff=0.5)
            hint = f"; did you mean {', '.join(close)}?" if close else ""
            lines.append(f"  {key}.name: unknown name '{tag}'{hint} (choices: "
                         f"{', '.join(names)})")
            continue
        msg = err["msg"].removeprefix("Value error, ")
        value = err.get("input")
        shown = "" if isinstance(value, (dict, list)) or value is None else f" (got {value!r})"
        lines.append(f"  {key}: {msg}{shown}")
    return "\n".join(lines)


def _union_members(tp: Any) -> list[type]:
    """The config classes of a (possibly Annotated) Union type; [] for anything else."""
    while typing.get_origin(tp) is typing.Annotated:
        tp = typing.get_args(tp)[0]
    if typing.get_origin(tp) is typing.Union:
        members = []
        for arg in typing.get_args(tp):
            members.extend(_union_members(arg) or [arg])
        return [m for m in members if dataclasses.is_dataclass(m)]
    return []


def _resolve(path: list[str], root: type) -> tuple[list[str], Any]:
    """(``path`` without union tags, the config class holding its last key)."""
    cls: Any = root
    clean: list[str] = []
    parts = list(path)
    while parts:
        part = parts.pop(0)
        members = _union_members(cls)
        if members:  # a tagged union: this part is the variant's name
            chosen = [m for m in members
                      if getattr(m, "__dataclass_fields__", {}).get("name") is not None
                      and m.__dataclass_fields__["name"].default == part]
            if chosen:
                cls = chosen[0]
                continue
        clean.append(part)
        if parts:
            hints = typing.get_type_hints(cls) if dataclasses.is_dataclass(cls) else {}
            cls = hints.get(part)
    return clean, cls


def _field_names(cls: Any) -> list[str]:
    """Field names of a config section (for 'valid keys' in messages)."""
    if dataclasses.is_dataclass(cls):
        return [f.name for f in dataclasses.fields(cls)]
    members = _union_members(cls)
    return sorted({f.name for m in members for f in dataclasses.fields(m)})
