"""Frozen dataclasses from JSON objects and back, driven by their type hints: the one loader behind model configs
(:mod:`codec12.config`), training recipes (:mod:`codec12.train.recipe`) and their distillation sections.

:func:`load` builds a dataclass from a dict: nested dataclasses from nested objects, tuples from lists, every
value checked against its field's hint; unknown and missing keys are errors naming the dotted key path
(``quantizer.num_acoustic``, ``losses.weights.mel``). Hints it reads: dataclasses, ``X | None``, unions of
dataclasses told apart by a ``Literal`` field they all have (``teacher: Literal["ssl"]``), ``Literal[...]``,
``tuple[X, ...]`` and ``tuple[X, Y]``, ``dict[str, X]``, a bare ``dict`` or ``Any`` (taken as is), ``bool``,
``int``, ``float`` (a bool is neither number; a float must be finite, an integer is one) and ``str``. Numbers
are kept as written: the loader never turns an integer into a float.

:func:`to_plain` is the inverse (dataclasses to dicts, tuples to lists); :func:`non_default` keeps only what
differs from the defaults, the canonical form that hashes and small files are made of.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import math
import types
import typing
from collections.abc import Callable, Sequence
from typing import Any

_UNIONS = (typing.Union, types.UnionType)


@functools.cache
def type_hints(cls) -> dict[str, Any]:
    """The resolved type hints of dataclass ``cls``'s fields."""
    return typing.get_type_hints(cls)


def load(cls, data: Any, where: str = ""):
    """Build dataclass ``cls`` from ``data`` (a dict, as JSON gives it). Errors are ``ValueError``s that start with
    ``where`` (a file name, when given) and name the key path; so do those of the dataclasses' own checks."""
    try:
        return convert(data, cls, "")
    except ValueError as e:
        if not where:
            raise
        raise ValueError(f"{where}: {e}") from None


def _join(label: str, key: str) -> str:
    return f"{label}.{key}" if label else key


def _build(cls, data: dict, label: str, chosen: str = ""):
    """``cls`` from ``data``; ``chosen``: how a union's member was chosen, for messages (``for the asr teacher``)."""
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}
    unknown = sorted(set(data) - set(fields))
    if unknown:
        raise ValueError(f"{label + ': ' if label else ''}unknown keys {unknown}{chosen} (known: {sorted(fields)})")
    for name, f in fields.items():
        if name not in data and f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
            raise ValueError(f"{_join(label, name)} is required{chosen}")
    hints = type_hints(cls)
    return cls(**{name: convert(value, hints[name], _join(label, name)) for name, value in data.items()})


def convert(value: Any, hint: Any, label: str) -> Any:
    """``value`` as type ``hint`` wants it (objects to dataclasses, lists to tuples), or a ValueError naming
    ``label``, the key path of ``value``. :func:`load` for a hint that is not one dataclass (a union of them)."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if hint is Any:
        return value
    if dataclasses.is_dataclass(hint):
        if not isinstance(value, dict):
            raise _wrong(label, hint, value)
        return _build(hint, value, label)
    if origin in _UNIONS:
        if value is None and type(None) in args:
            return None
        classes = [a for a in args if dataclasses.is_dataclass(a)]
        if classes and isinstance(value, dict):
            cls, chosen = _pick(classes, value, label)
            return _build(cls, value, label, chosen)
        for a in args:
            if not dataclasses.is_dataclass(a) and is_a(value, a):
                return convert(value, a, label)
        raise _wrong(label, hint, value)
    if origin is typing.Literal:
        if not _in_literal(value, args):
            raise ValueError(f"{label} must be one of {list(args)}, got {json_repr(value)}")
        return value
    if hint is dict or origin is dict:
        if not isinstance(value, dict) or not all(isinstance(k, str) for k in value):
            raise _wrong(label, hint, value)
        if not args:
            return value
        return {k: convert(v, args[1], _join(label, k)) for k, v in value.items()}
    if origin is tuple:
        if not is_a(value, hint):
            raise _wrong(label, hint, value)
        return tuple(value)
    if not is_a(value, hint):
        raise _wrong(label, hint, value)
    return value


def _tags(classes: list) -> list[str]:
    """The fields that tell dataclasses ``classes`` apart: those all of them have, each a ``Literal``."""
    common = set.intersection(*(set(type_hints(c)) for c in classes))
    return sorted(n for n in common if all(typing.get_origin(type_hints(c)[n]) is typing.Literal for c in classes))


def _pick(classes: list, value: dict, label: str) -> tuple[type, str]:
    """The dataclass among ``classes`` that ``value`` names through their common ``Literal`` field, and how it was
    chosen (`` for the asr teacher``, for messages)."""
    if len(classes) == 1:
        return classes[0], ""
    tags = _tags(classes)
    if not tags:
        raise TypeError(f"{label}: {[c.__name__ for c in classes]} share no Literal field to tell them apart")
    tag = tags[0]
    choices = [(choice, c) for c in classes for choice in typing.get_args(type_hints(c)[tag])]
    got = value.get(tag)
    for choice, c in choices:
        if _in_literal(got, (choice,)):
            return c, f" for the {choice} {tag}"
    raise ValueError(f"{_join(label, tag)} must be one of {sorted(ch for ch, _ in choices)}, got {json_repr(got)}")


def _in_literal(value: Any, choices: tuple) -> bool:
    return any(type(value) is type(c) and value == c for c in choices)


def _wrong(label: str, hint: Any, value: Any) -> ValueError:
    return ValueError(f"{label} must be {describe(hint)}, got {json_repr(value)}")


def is_a(value: Any, hint: Any) -> bool:
    """Whether ``value`` is of type ``hint`` as this module reads hints (a list passes for a tuple: JSON has no
    tuples); a dataclass hint wants an instance."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if hint is Any:
        return True
    if origin in _UNIONS:
        return any(is_a(value, a) for a in args)
    if origin is typing.Literal:
        return _in_literal(value, args)
    if origin is tuple:
        if not isinstance(value, (tuple, list)):
            return False
        if len(args) == 2 and args[1] is Ellipsis:
            return all(is_a(v, args[0]) for v in value)
        return len(value) == len(args) and all(is_a(v, a) for v, a in zip(value, args))
    if hint is dict or origin is dict:
        return isinstance(value, dict) and (not args or all(isinstance(k, str) and is_a(v, args[1])
                                                            for k, v in value.items()))
    if hint is type(None):
        return value is None
    if hint is bool:
        return isinstance(value, bool)
    if hint is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if hint is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    return isinstance(value, hint)


def describe(hint: Any) -> str:
    """``hint`` in words, for messages: ``a list of integers``, ``a finite number or null``."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in _UNIONS:
        words = [describe(a) for a in args if not dataclasses.is_dataclass(a)]
        classes = [a for a in args if dataclasses.is_dataclass(a)]
        if classes:
            words.insert(0, describe(classes[0]) if len(classes) == 1 else "an object")
        return " or ".join(words)
    if origin is typing.Literal:
        return f"one of {list(args)}"
    if origin is tuple:
        each = describe(args[0]).removeprefix("an ").removeprefix("a ")
        if len(args) == 2 and args[1] is Ellipsis:
            return f"a list of {each}s"
        return f"a list of {len(args)} {each}s"
    if hint is dict or origin is dict:
        return f"an object of {describe(args[1]).removeprefix('an ').removeprefix('a ')}s" if args else "an object"
    return {type(None): "null", bool: "true or false", int: "an integer", float: "a finite number",
            str: "a string", Any: "anything"}.get(hint, f"an object ({getattr(hint, '__name__', hint)})")


def json_repr(value: Any) -> str:
    """``value`` as JSON shows it (with its kind for strings and containers), cut short."""
    try:
        text = json.dumps(value)
    except (TypeError, ValueError):
        text = repr(value)
    text = text if len(text) <= 40 else text[:37] + "..."
    kind = {dict: "object ", list: "list ", tuple: "list ", str: "string "}.get(type(value), "")
    return kind + text


def check_types(obj, block: str) -> None:
    """Check every field of dataclass ``obj`` against its hint, as :func:`load` does, for instances built in
    Python; errors name the field as ``block.name``."""
    for name, hint in type_hints(type(obj)).items():
        value = getattr(obj, name)
        if not is_a(value, hint):
            raise _wrong(_join(block, name), hint, value)


def to_plain(value: Any) -> Any:
    """``value`` as JSON holds it: dataclasses as objects of all their fields, tuples as lists."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: to_plain(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, dict):
        return {k: to_plain(v) for k, v in value.items()}
    if isinstance(value, (tuple, list)):
        return [to_plain(v) for v in value]
    return value


def _default(f: dataclasses.Field) -> Any:
    if f.default is not dataclasses.MISSING:
        return f.default
    if f.default_factory is not dataclasses.MISSING:
        return f.default_factory()
    return _REQUIRED


_REQUIRED = object()  # the "default" of a field without one: equal to no value


def non_default(obj, keep: Callable[[dataclasses.Field], bool] = lambda f: True) -> dict[str, Any]:
    """The fields of dataclass ``obj`` that differ from their defaults, as plain JSON values, recursively: a nested
    dataclass appears with its own differing fields (left out when there are none), an optional one that is set
    (its default None) always, as an object of its differing fields (``{}`` when it has none; with its ``Literal``
    tag when its field may hold several dataclasses). Fields for which ``keep(field)`` is false are left out."""
    out = {}
    for f in dataclasses.fields(obj):
        if not keep(f):
            continue
        value, default = getattr(obj, f.name), _default(f)
        if dataclasses.is_dataclass(value) and type(value) is type(default):
            sub = non_default(value, keep)
            if sub:
                out[f.name] = sub
        elif dataclasses.is_dataclass(value):
            classes = [a for a in typing.get_args(type_hints(type(obj))[f.name]) if dataclasses.is_dataclass(a)]
            tags = {t: getattr(value, t) for t in _tags(classes)} if len(classes) > 1 else {}
            out[f.name] = {**tags, **non_default(value, keep)}
        elif default is _REQUIRED or value != default:
            out[f.name] = to_plain(value)
    return out


def _one_dataclass(hint: Any):
    """The dataclass ``hint`` names, ``X | None`` included; None for anything else (a dict, a union of several)."""
    if typing.get_origin(hint) in _UNIONS:
        rest = [a for a in typing.get_args(hint) if a is not type(None)]
        hint = rest[0] if len(rest) == 1 else None
    return hint if dataclasses.is_dataclass(hint) else None


def keys_fixed(cls, path: Sequence[str]) -> bool:
    """Whether the keys of the object at ``path`` (keys from dataclass ``cls`` down) are fixed by the types: it is
    one dataclass reached through dataclass fields alone. Below a dict (``losses.weights``), ``Any`` or a union of
    several dataclasses (``distill``, whose keys depend on its ``teacher``) any key may come, and is checked when
    the whole is loaded."""
    hint = cls
    for key in path:
        block = _one_dataclass(hint)
        if block is None:
            return False
        hints = type_hints(block)
        if key not in hints:
            return True
        hint = hints[key]
    return _one_dataclass(hint) is not None


def field_hint(cls, path: Sequence[str]) -> Any:
    """The hint of the field at ``path`` (keys from dataclass ``cls`` down, every step a dataclass field), or
    None when ``path`` leaves the dataclasses."""
    hint = cls
    for key in path:
        block = _one_dataclass(hint)
        if block is None or key not in type_hints(block):
            return None
        hint = type_hints(block)[key]
    return hint


def holds_objects(hint: Any) -> bool:
    """Whether a field of type ``hint`` may hold a JSON object (a dataclass or a dict)."""
    if typing.get_origin(hint) in _UNIONS:
        return any(holds_objects(a) for a in typing.get_args(hint))
    return hint is Any or hint is dict or typing.get_origin(hint) is dict or dataclasses.is_dataclass(hint)
