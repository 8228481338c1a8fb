"""Reading typed values out of JSON written by someone else (a model card), one field at a time.

Each reader returns the value in the type the engine uses, or raises
`FieldError` whose message names the field and says what it must be, e.g.
``field 'window' must be a whole number of at least 1, not -5``. JSON gives
``true`` for a number or ``"6"`` for a count as easily as the right thing;
nothing downstream should meet them.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any


class FieldError(ValueError):
    """A JSON field of the wrong type or out of range; the message names the field."""


def _shown(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def _fail(name: str, must: str, value: Any) -> FieldError:
    return FieldError(f"field '{name}' must be {must}, not {_shown(value)}")


def whole(value: Any, name: str, minimum: int | None = None, maximum: int | None = None) -> int:
    """An integer (true/false and "6" are not), within [minimum, maximum]."""
    bounds = (f" of at least {minimum}" if minimum is not None else "") + \
        (f" and at most {maximum}" if maximum is not None else "")
    if isinstance(value, bool) or not isinstance(value, int):
        raise _fail(name, f"a whole number{bounds}", value)
    if (minimum is not None and value < minimum) or (maximum is not None and value > maximum):
        raise _fail(name, f"a whole number{bounds}", value)
    return value


def number(value: Any, name: str, minimum: float | None = None, maximum: float | None = None,
           positive: bool = False, nonzero: bool = False) -> float:
    """A finite number (true/false and "0.5" are not), within the given range."""
    must = "a positive number" if positive else "a non-zero number" if nonzero else "a number"
    if minimum is not None or maximum is not None:
        must += f" from {minimum if minimum is not None else '-inf'} to {maximum if maximum is not None else 'inf'}"
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise _fail(name, must, value)
    if ((positive and value <= 0) or (nonzero and value == 0) or (minimum is not None and value < minimum)
            or (maximum is not None and value > maximum)):
        raise _fail(name, must, value)
    return float(value)


def text(value: Any, name: str, choices: Sequence[str] | None = None, nonempty: bool = False) -> str:
    """A string, one of ``choices`` when given."""
    if choices is not None:
        if value not in choices:
            raise _fail(name, f"one of {', '.join(map(repr, choices))}", value)
        return value
    if not isinstance(value, str) or (nonempty and not value.strip()):
        raise _fail(name, "a non-empty text" if nonempty else "a text", value)
    return value


def flag(value: Any, name: str) -> bool:
    """true or false (1 and "yes" are not)."""
    if not isinstance(value, bool):
        raise _fail(name, "true or false", value)
    return value


def mapping(value: Any, name: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise _fail(name, "a JSON object", value)
    return value


def items(value: Any, name: str, count: int | None = None, least: int = 0) -> list[Any]:
    """A list, of exactly ``count`` items or at least ``least``."""
    must = f"a list of {count} items" if count is not None else f"a list of at least {least} item(s)"
    if not isinstance(value, list) or (count is not None and len(value) != count) or len(value) < least:
        raise _fail(name, must, value)
    return value


def colour(value: Any, name: str) -> tuple[int, int, int]:
    """[red, green, blue], whole numbers 0-255 (a colour name like "red" is not)."""
    if (not isinstance(value, list) or len(value) != 3
            or not all(isinstance(v, int) and not isinstance(v, bool) and 0 <= v <= 255 for v in value)):
        raise _fail(name, "[red, green, blue] with whole numbers 0-255", value)
    return tuple(value)  # type: ignore[return-value]
