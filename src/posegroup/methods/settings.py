"""Typed, validated settings objects for the methods.

A method's settings are a frozen dataclass whose fields carry their check in
``field(metadata={"check": ..., "help": ..., "convert": ...})``. :func:`from_options` builds one
from a plain dict (a config's ``method.options`` or ``test`` section): an unknown key (with a
close-match suggestion), a wrong type or an out-of-range value is a one-line ``ValueError``
naming the key and the valid choices; :func:`updated` is a settings object with some values
replaced, validated the same way.
"""
from __future__ import annotations

import dataclasses
import difflib
import math
from typing import Any, Callable

import numpy as np


def positive(v) -> bool:
    return v > 0


def non_negative(v) -> bool:
    return v >= 0


def unit_interval(v) -> bool:
    return 0.0 <= v <= 1.0


# A check with a ``must`` text: the one-line error of a value it refuses says what it must be.

def finite(v) -> bool:
    """A finite real number (not a bool)."""
    return isinstance(v, (int, float, np.number)) and not isinstance(v, bool) and math.isfinite(v)


def finite_positive(v) -> bool:
    return finite(v) and v > 0


def finite_non_negative(v) -> bool:
    return finite(v) and v >= 0


finite.must = "a finite number"
finite_positive.must = "a finite number > 0"
finite_non_negative.must = "a finite number >= 0"


def integer_in(low: int, high: int) -> Callable[[Any], bool]:
    """An integral number in [low, high] (an integral float counts)."""
    def check(v) -> bool:
        return finite(v) and int(v) == v and low <= v <= high
    check.must = f"an integer in [{low}, {high}]"
    return check


def boolean(v) -> bool:
    return isinstance(v, bool)


boolean.must = "true or false"


def one_of(*choices) -> Callable[[Any], bool]:
    def check(v) -> bool:
        return v in choices
    check.choices = choices
    return check


def setting(default, check: Callable[[Any], bool] | None = None, help: str = "",
            convert: Callable[[Any], Any] | None = None):
    """A dataclass field with a validity check, a help line and an optional ``convert`` applied
    to a valid given value (e.g. a YAML list made a tuple, so that the settings stay immutable)."""
    return dataclasses.field(default=default, metadata={"check": check, "help": help, "convert": convert})


def _coerce(name: str, value, default, what: str):
    """Value converted to the default's type (int <- integral float, float <- int / numeric str);
    a value of the wrong type is a ValueError naming the key and ``what``."""
    if default is None or value is None:
        return value
    kind = type(default)
    if kind is bool:
        if isinstance(value, bool):
            return value
        raise ValueError(f"option '{name}' must be true or false, got {value!r} in {what}")
    if kind in (int, float) and isinstance(value, bool):
        raise ValueError(f"option '{name}' must be a number, got {value!r} in {what}")
    if kind is int:
        if isinstance(value, float) and value.is_integer():
            return int(value)
        if isinstance(value, int):
            return value
        raise ValueError(f"option '{name}' must be an integer, got {value!r} in {what}")
    if kind is float:
        try:
            return float(value)
        except (TypeError, ValueError):
            raise ValueError(f"option '{name}' must be a number, got {value!r} in {what}") from None
    if kind is str and not isinstance(value, str):
        raise ValueError(f"option '{name}' must be a string, got {value!r} in {what}")
    return value


def _valid(check, v) -> bool:
    """``check(v)``, a TypeError (a value of another kind) read as False; a check's own
    ValueError is its one-line message and passes through."""
    try:
        return bool(check(v))
    except TypeError:
        return False


def validated(cls, options: dict | None, *, what: str = "method.options") -> dict:
    """The keys of ``options`` checked against the fields of the settings dataclass ``cls``:
    name -> value converted (the default's type, then the field's ``convert``); an unknown key,
    a wrong type or an invalid value is a one-line ValueError naming ``what`` and the key."""
    fields = {f.name: f for f in dataclasses.fields(cls)}
    values = {}
    for key, value in (options or {}).items():
        if key not in fields:
            close = difflib.get_close_matches(str(key), list(fields), n=1)
            hint = f" (did you mean '{close[0]}'?)" if close else ""
            raise ValueError(f"unknown option '{key}' in {what}{hint}; valid: {', '.join(sorted(fields))}")
        f = fields[key]
        default = f.default if f.default is not dataclasses.MISSING else None
        v = _coerce(key, value, default, what)
        check = f.metadata.get("check")
        if check is not None and v is not None and not _valid(check, v):
            if getattr(check, "must", None):
                raise ValueError(f"option '{key}' must be {check.must}, got {value!r} in {what}")
            choices = getattr(check, "choices", None)
            valid = f"one of {list(choices)}" if choices else (f.metadata.get("help") or "a valid value")
            raise ValueError(f"option '{key}' in {what} has an invalid value {value!r}; expected {valid}")
        convert = f.metadata.get("convert")
        values[key] = convert(v) if convert is not None and v is not None else v
    return values


def from_options(cls, options: dict | None, *, what: str = "method.options"):
    """Build the settings dataclass ``cls`` from ``options``, validating every key
    (:func:`validated`)."""
    return cls(**validated(cls, options, what=what))


def updated(settings, options: dict | None, *, what: str = "test"):
    """A copy of the frozen ``settings`` with the values of ``options`` (validated as by
    :func:`validated`, naming ``what``) in place of its own."""
    return dataclasses.replace(settings, **validated(type(settings), options, what=what))


def as_dict(settings) -> dict:
    """Plain dict of a settings object (for checkpoints and logs)."""
    return dataclasses.asdict(settings)
