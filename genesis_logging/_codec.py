"""The row, and the row <-> JSON line codec.

A row is a ``dict`` holding the schema fields that have a value: ``timestamp`` (int,
milliseconds since the epoch, UTC), ``level``, ``message``, ``logger`` and ``service``
always; the others only when supplied or derived. The console formatter, the spool and the
local store write and read rows as JSON lines through this module; records become rows in
:mod:`._convert`; columns for an insert are the transport's business.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from datetime import datetime
from typing import Any, Final, TypeAlias

from .schema import FIELDS, Kind

__all__ = [
    "Row",
    "RowValue",
    "compact_json",
    "format_timestamp",
    "one_shot",
    "row_from_json_line",
    "row_from_json_object",
    "row_to_json_line",
    "row_to_json_object",
]

RowValue: TypeAlias = "str | int | dict[str, str]"
Row: TypeAlias = "dict[str, RowValue]"


# -- row <-> JSON ---------------------------------------------------------------------------

_PROBE: Final = {"text": 'ação \u2028 "q"', "n": -3, "map": {"k": "v"}, "empty": {}}


def one_shot(encoder: json.JSONEncoder) -> Callable[[Any], str]:
    """``encoder.encode``, without rebuilding the C encoder for every call.

    ``JSONEncoder.iterencode`` makes a C encoder from its settings on each call (half the
    cost of encoding a log line); this makes it once, with the same arguments (no
    circular-reference markers: a log line is a flat object). Where that C encoder is not
    there or answers differently from ``encode`` on a probe, ``encode`` itself is used.
    The console formatter, the JSON lines and old servers' ``attributes`` use it.
    """
    make = getattr(json.encoder, "c_make_encoder", None)
    if make is None or encoder.indent is not None:
        return encoder.encode
    strings = (
        json.encoder.encode_basestring_ascii
        if encoder.ensure_ascii
        else json.encoder.encode_basestring
    )
    try:
        chunks = make(
            None,
            encoder.default,
            strings,
            None,
            encoder.key_separator,
            encoder.item_separator,
            encoder.sort_keys,
            encoder.skipkeys,
            encoder.allow_nan,
        )

        def encode(value: Any) -> str:
            return "".join(chunks(value, 0))

        if encode(_PROBE) == encoder.encode(_PROBE):
            return encode
    except Exception:  # another Python's private signature: the public way
        pass
    return encoder.encode


#: Compact UTF-8 JSON (``json.dumps(value, ensure_ascii=False, separators=(",", ":"))``).
compact_json: Final = one_shot(json.JSONEncoder(ensure_ascii=False, separators=(",", ":")))


_last_second: tuple[int, str] = (-1, "")


def format_timestamp(milliseconds: int) -> str:
    """ISO-8601 UTC with milliseconds and ``Z``: ``2026-11-25T13:49:15.123Z``."""
    global _last_second
    seconds, millis = divmod(milliseconds, 1000)
    cached_second, prefix = _last_second  # one tuple: safe to read while another thread sets it
    if cached_second != seconds:
        prefix = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds))
        _last_second = (seconds, prefix)
    return f"{prefix}.{millis:03d}Z"


_ORDER: Final = tuple((f.name, f.kind is Kind.TIMESTAMP, f.default) for f in FIELDS)


def row_to_json_object(row: Row, *, keep_empty: bool = False) -> dict[str, Any]:
    """The JSON object of a row: schema order, ISO timestamp, empty fields left out."""
    data: dict[str, Any] = {}
    get = row.get
    for name, is_timestamp, default in _ORDER:
        value = get(name)
        if value is None or (not value and type(value) is not int):  # None, "" or {}
            if not keep_empty:
                continue
            value = default
        data[name] = format_timestamp(value) if is_timestamp else value  # type: ignore[arg-type]
    return data


def row_from_json_object(data: dict[str, Any]) -> Row:
    """Inverse of :func:`row_to_json_object` for lines this package wrote."""
    row: Row = {}
    for field in FIELDS:
        if field.name not in data:
            continue
        value = data[field.name]
        if field.kind is Kind.TIMESTAMP:
            moment = datetime.fromisoformat(str(value).replace("Z", "+00:00"))
            value = round(moment.timestamp() * 1000)
        row[field.name] = value
    return row


def row_to_json_line(row: Row) -> str:
    """One ``JSONEachRow`` line (UTF-8 text, newline included) for storage."""
    return compact_json(row_to_json_object(row)) + "\n"


def row_from_json_line(line: str) -> Row:
    """The row of one stored line.

    Raises:
        ValueError: the line is not a JSON object with a valid timestamp.
    """
    data = json.loads(line)
    if not isinstance(data, dict):
        raise ValueError("not a JSON object")
    try:
        return row_from_json_object(data)
    except (TypeError, AttributeError) as error:
        raise ValueError(f"not a genesis record: {error}") from None
