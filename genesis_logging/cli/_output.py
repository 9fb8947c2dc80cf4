"""Rendering query results for a terminal (aligned, cut, coloured on a TTY) or a program."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Sequence
from datetime import date, datetime
from typing import Any, Final, TextIO

__all__ = ["render"]

_COLOURS: Final = {
    "error": "\033[31m",
    "critical": "\033[1;31m",
    "warning": "\033[33m",
    "debug": "\033[2m",
}
_RESET: Final = "\033[0m"


def _plain(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat(sep=" ", timespec="milliseconds")
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, (bytes, bytearray)):
        return bytes(value).decode("utf-8", "replace")
    if isinstance(value, tuple):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    return value


def _cell(value: Any, width: int) -> str:
    plain = _plain(value)
    text = plain if isinstance(plain, str) else json.dumps(plain, ensure_ascii=False)
    text = text.replace("\r", "").replace("\n", "⏎")
    return text if len(text) <= width else text[: width - 1] + "…"


#: Characters ``str.splitlines()`` breaks at that JSON leaves unescaped.
_LINE_BREAKS: Final = {c: f"\\u{c:04x}" for c in (0x1C, 0x1D, 0x1E, 0x85, 0x2028, 0x2029)}


def json_line(value: Any) -> str:
    """``value`` as one JSON line for any reader: no character ``str.splitlines()`` breaks
    at is left unescaped (JSON allows U+2028 and NEL raw)."""
    return json.dumps(value, ensure_ascii=False).translate(_LINE_BREAKS) + "\n"


def render(
    columns: Sequence[str],
    rows: Sequence[Sequence[Any]],
    fmt: str,
    out: TextIO,
    *,
    colour: bool = False,
    max_width: int = 60,
) -> None:
    """Write rows as ``table`` (aligned, long text cut with …), ``json`` lines, or ``csv``."""
    if fmt == "json":
        for row in rows:
            out.write(json_line({c: _plain(v) for c, v in zip(columns, row, strict=True)}))
        return
    if fmt == "csv":
        buffer = io.StringIO()
        writer = csv.writer(buffer, lineterminator="\n")
        writer.writerow(columns)
        for row in rows:
            writer.writerow(
                [_plain(v) if isinstance(_plain(v), str) else json.dumps(_plain(v)) for v in row]
            )
        out.write(buffer.getvalue())
        return
    cells = [[_cell(v, max_width) for v in row] for row in rows]
    widths = [max([len(c), *(len(r[i]) for r in cells)]) for i, c in enumerate(columns)]
    out.write("  ".join(c.ljust(w) for c, w in zip(columns, widths, strict=True)).rstrip() + "\n")
    out.write("  ".join("-" * w for w in widths) + "\n")
    level_at = list(columns).index("level") if "level" in columns else -1
    for row, raw in zip(cells, rows, strict=True):
        line = "  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip()
        if colour and level_at >= 0 and str(raw[level_at]) in _COLOURS:
            line = _COLOURS[str(raw[level_at])] + line + _RESET
        out.write(line + "\n")
    out.write(f"({len(rows)} row{'s' if len(rows) != 1 else ''})\n")
