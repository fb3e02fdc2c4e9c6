"""Typed, validated settings objects for the methods.

A method's settings are a frozen dataclass whose fields carry their check in
``field(metadata={"check": ..., "help": ...})``. :func:`from_options` builds one from a plain
dict (a config's ``method.options``): an unknown key (with a close-match suggestion), a wrong
type or an out-of-range value is a ``ValueError`` naming the key and the valid choices.
"""
from __future__ import annotations

import dataclasses
import difflib
from typing import Any, Callable


def positive(v) -> bool:
    return v > 0


def non_negative(v) -> bool:
    return v >= 0


def unit_interval(v) -> bool:
    return 0.0 <= v <= 1.0


def one_of(*choices) -> Callable[[Any], bool]:
    def check(v) -> bool:
        return v in choices
    check.choices = choices
    return check


def setting(default, check: Callable[[Any], bool] | None = None, help: str = ""):
    """A dataclass field with a validity check and a help line."""
    return dataclasses.field(default=default, metadata={"check": check, "help": help})


def _coerce(name: str, value, default):
    """Value converted to the default's type (int <- integral float, float <- int / numeric str)."""
    if default is None or value is None:
        return value
    kind = type(default)
    if kind is bool:
        if isinstance(value, bool):
            return value
        raise ValueError(f"option '{name}' must be true or false, got {value!r}")
    if kind in (int, float) and isinstance(value, bool):
        raise ValueError(f"option '{name}' must be a number, got {value!r}")
    if kind is int:
        if isinstance(value, float) and value.is_integer():
            return int(value)
        if isinstance(value, int):
            return value
        raise ValueError(f"option '{name}' must be an integer, got {value!r}")
    if kind is float:
        try:
            return float(value)
        except (TypeError, ValueError):
            raise ValueError(f"option '{name}' must be a number, got {value!r}") from None
    if kind is str and not isinstance(value, str):
        raise ValueError(f"option '{name}' must be a string, got {value!r}")
    return value


def from_options(cls, options: dict | None, *, what: str = "method.options"):
    """Build the settings dataclass ``cls`` from ``options``, validating every key."""
    fields = {f.name: f for f in dataclasses.fields(cls)}
    values = {}
    for key, value in (options or {}).items():
        if key not in fields:
            close = difflib.get_close_matches(str(key), list(fields), n=1)
            hint = f" (did you mean '{close[0]}'?)" if close else ""
            raise ValueError(f"unknown option '{key}' in {what}{hint}; valid: {', '.join(sorted(fields))}")
        f = fields[key]
        default = f.default if f.default is not dataclasses.MISSING else None
        v = _coerce(key, value, default)
        check = f.metadata.get("check")
        if check is not None and v is not None and not check(v):
            choices = getattr(check, "choices", None)
            valid = f"one of {list(choices)}" if choices else (f.metadata.get("help") or "a valid value")
            raise ValueError(f"option '{key}' in {what} has an invalid value {value!r}; expected {valid}")
        values[key] = v
    return cls(**values)


def as_dict(settings) -> dict:
    """Plain dict of a settings object (for checkpoints and logs)."""
    return dataclasses.asdict(settings)
