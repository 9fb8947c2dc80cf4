"""Turning arbitrary Python values into the schema's value domains without raising.

Everything here is pure and total: any input gives a value, never an exception.
"""

from __future__ import annotations

import json
import math
import operator
from typing import Final

from .schema import Field, Kind

__all__ = ["INVALID", "clean_text", "coerce_field", "safe_repr", "to_attribute"]


class _Invalid:
    """Marker: the supplied value cannot be represented in the field's domain."""

    __slots__ = ()

    def __repr__(self) -> str:
        return "INVALID"


INVALID: Final = _Invalid()


def clean_text(text: str) -> str:
    """Return ``text`` encodable as UTF-8: lone surrogates become U+FFFD."""
    if text.isascii():
        return text
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return "".join("\ufffd" if "\ud800" <= ch <= "\udfff" else ch for ch in text)
    return text


def safe_repr(value: object) -> str:
    """``repr(value)``, or a placeholder naming the type when ``repr`` itself fails."""
    try:
        return clean_text(repr(value))
    except Exception:  # a hostile __repr__ may raise anything
        return f"<unrepresentable {type(value).__qualname__}>"


def safe_str(value: object) -> str:
    """``str(value)``, falling back to :func:`safe_repr` when ``str`` fails."""
    if isinstance(value, str):
        return clean_text(value)
    try:
        return clean_text(str(value))
    except Exception:  # a hostile __str__ may raise anything
        return safe_repr(value)


def to_attribute(value: object) -> str:
    """Encode any value as an attribute string.

    Strings pass through, bytes are decoded as UTF-8 with replacement, other values
    are JSON-encoded; values JSON cannot encode (cycles, huge ints, odd keys) fall back
    to ``repr``, and a failing ``repr`` to a placeholder.
    """
    if isinstance(value, str):
        return clean_text(value)
    if isinstance(value, (bytes, bytearray)):
        return bytes(value).decode("utf-8", "replace")
    if type(value) is int and -(10**15) < value < 10**15:
        return repr(value)  # JSON's spelling of an int, without building an encoder
    try:
        encoded = json.dumps(value, ensure_ascii=False, separators=(",", ":"))
    except TypeError:
        if not isinstance(value, (dict, list, tuple)):
            return safe_repr(value)  # not JSON at all: its repr says the most
        try:  # a container with some non-JSON members: repr just those
            encoded = json.dumps(
                value, ensure_ascii=False, default=safe_repr, separators=(",", ":")
            )
        except Exception:
            return safe_repr(value)
    except Exception:  # cycles, RecursionError, int-to-str limits
        return safe_repr(value)
    return clean_text(encoded)


def _coerce_int(value: object, low: int, high: int) -> int | _Invalid:
    if isinstance(value, bool):
        return INVALID
    if isinstance(value, float):
        if not math.isfinite(value):
            return INVALID
        number = round(value)
    elif isinstance(value, str):
        try:
            number = int(value.strip())
        except ValueError:
            return INVALID
    else:
        try:
            number = operator.index(value)  # type: ignore[arg-type]
        except TypeError:
            return INVALID
    return number if low <= number <= high else INVALID


def coerce_field(field: Field, value: object) -> str | int | _Invalid:
    """Coerce a caller-supplied value into ``field``'s domain.

    Returns :data:`INVALID` when the value has no faithful representation there
    (``iteration="abc"``, ``exit_code=2**40``); strings are always representable.
    """
    bounds = field.bounds
    if bounds is not None:
        return _coerce_int(value, *bounds)
    if field.kind is Kind.STRING:
        return to_attribute(value)
    return INVALID
