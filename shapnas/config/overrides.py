"""Config overrides as data: field names checked, values converted to the field's declared type.

Every way in to a config (``--set KEY=VALUE`` text on the command line, a dict of a notebook run, a job of the
run matrix) passes here, so a wrong name or value fails the same way everywhere: one ``ValueError`` naming
the field, the value and what was expected (no ``TypeError`` from a comparison deep in ``__post_init__``).
"""

from __future__ import annotations

import difflib
import typing
from collections.abc import Iterable, Mapping
from dataclasses import fields
from typing import Any, Literal

import yaml

__all__ = ["field_types", "check_names", "convert_value", "convert_values", "parse_overrides"]

TRUE_WORDS = ("true", "yes", "on", "1")
FALSE_WORDS = ("false", "no", "off", "0")


def field_types(cls: type) -> dict[str, Any]:
    """The declared type of every field of a config dataclass (annotations resolved)."""
    hints = typing.get_type_hints(cls)
    return {f.name: hints[f.name] for f in fields(cls)}


def check_names(names: Iterable[str], cls: type) -> None:
    """Raise when a name is not a field of ``cls``.

    Args:
        names: field names to check.
        cls: the config dataclass.

    Raises:
        ValueError: naming the unknown field(s), the closest valid names and every valid name.
    """
    valid = [f.name for f in fields(cls)]
    unknown = [n for n in names if n not in valid]
    if not unknown:
        return
    close = sorted({m for n in unknown for m in difflib.get_close_matches(n, valid, n=3, cutoff=0.6)})
    hint = f"did you mean {', '.join(close)}? " if close else ""
    raise ValueError(f"unknown {cls.__name__} fields: {', '.join(unknown)}; {hint}valid fields: {', '.join(valid)} "
                     "(each documented in the package file shapnas/config.py)")


def _expected(kind: Any) -> str:
    """A type in words, for error messages."""
    origin = typing.get_origin(kind)
    if origin is Literal:
        return "one of " + ", ".join(map(str, typing.get_args(kind)))
    if origin is tuple:
        return "a comma-separated list of numbers"
    if origin is dict:
        return "a mapping such as {amos: [liver, spleen]}"
    return {bool: "true or false", int: "an integer", float: "a number", str: "text"}.get(kind, str(kind))


def _number(value: Any, kind: type) -> int | float:
    """``value`` as an ``int`` or ``float`` (text parsed; a bool is never a number)."""
    if isinstance(value, str):
        value = value.strip()
        value = int(value) if kind is int else float(value)
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(value)
    if kind is int and value != int(value):
        raise TypeError(value)
    return kind(value)


def _convert(value: Any, kind: Any) -> Any:
    """``value`` (text or a plain Python value) as ``kind``; TypeError or ValueError when it is not one."""
    origin = typing.get_origin(kind)
    if origin is Literal:
        if str(value) not in typing.get_args(kind):
            raise ValueError(value)
        return str(value)
    if origin is tuple:
        items = value.split(",") if isinstance(value, str) else value
        return tuple(_number(v, float) for v in items if not (isinstance(v, str) and not v.strip()))
    if origin is dict:
        value = yaml.safe_load(value) if isinstance(value, str) else value
        if not isinstance(value, Mapping):
            raise TypeError(value)
        return dict(value)
    if kind is bool:
        word = str(value).strip().lower()
        if isinstance(value, bool) or word in TRUE_WORDS + FALSE_WORDS:
            return value if isinstance(value, bool) else word in TRUE_WORDS
        raise ValueError(value)
    if kind in (int, float):
        return _number(value, kind)
    if kind is str:
        if not isinstance(value, (str, int, float)) or isinstance(value, bool):
            raise TypeError(value)
        return str(value)
    return value


def convert_value(cls: type, name: str, value: Any) -> Any:
    """One field's value converted to its declared type (``"20"`` → 20 for an ``int`` field).

    Args:
        cls: the config dataclass.
        name: the field name (must be a field of ``cls``).
        value: text (from ``--set``) or a plain Python value (from a dict, YAML or JSON).

    Returns:
        The value as the field's type (tuples for list fields).

    Raises:
        ValueError: ``name=value; expected <type>``, one line.
    """
    check_names([name], cls)
    kind = field_types(cls)[name]
    try:
        return _convert(value, kind)
    except (TypeError, ValueError):
        raise ValueError(f"{name}={value!r}: expected {_expected(kind)}") from None


def convert_values(cls: type, values: Mapping[str, Any]) -> dict[str, Any]:
    """Every value of ``values`` converted with :func:`convert_value` (unknown names raise first, all at once)."""
    check_names(values, cls)
    return {name: convert_value(cls, name, value) for name, value in values.items()}


def parse_overrides(items: Iterable[str], cls: type) -> dict[str, Any]:
    """``--set`` items to typed values: ``["search_epochs=20", "decoder_input=true"]`` → ``{...: 20, ...: True}``.

    Args:
        items: ``KEY=VALUE`` strings.
        cls: the config dataclass that names the fields and their types.

    Returns:
        Field name → value of the field's type, in the order given (a later item wins).

    Raises:
        ValueError: an item without ``=``, an unknown field (the valid ones listed) or a value of the wrong type.
    """
    values: dict[str, Any] = {}
    for item in items:
        key, sep, text = item.partition("=")
        if not sep or not key.strip():
            raise ValueError(f"--set {item!r}; expected KEY=VALUE, e.g. --set search_epochs=20")
        values[key.strip()] = text
    return convert_values(cls, values)
