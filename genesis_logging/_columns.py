"""Captured records to an insert's columns, in the worker, one pass per column.

The caller's thread only captures (:meth:`RecordConverter.capture`); here a whole batch
of snapshots becomes one list per schema field. Every value that needs no rule (a
``str`` within the size limit, an ``int`` within its column's range, a known level ...)
is taken as it is, column by column; a record holding anything else — a value to
coerce, a key to clean, a text to cut, a message that failed — is converted by
:meth:`RecordConverter.from_snapshot`, the very rules of the console, and its values are
put in place. ``tests/handler/test_columns.py`` proves both give the same columns.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterator, Sequence
from itertools import chain, repeat
from operator import itemgetter, methodcaller, mul
from typing import Any, Final, overload

from ._codec import Row
from ._convert import EARLIEST, LATEST, LEVELS, TAKEN_FIELDS, RecordConverter, Snapshot
from ._values import clean_text, to_attribute
from .schema import FIELDS, RULE_FIELDS, SETTABLE_FIELDS, Kind, Rule

__all__ = ["ColumnBlock", "ColumnBuilder"]

_DEFAULTS: Final = {field.name: field.default for field in FIELDS}
_TIME, _LEVEL, _MESSAGE, _EXCEPTION, _REST = (RULE_FIELDS[rule] for rule in Rule)
_SETTABLE_NAMES: Final = frozenset(SETTABLE_FIELDS)
_STRING_FIELDS: Final = tuple(
    name for name, field in SETTABLE_FIELDS.items() if field.kind is Kind.STRING
)
_INT_FIELDS: Final = tuple(
    (name, *field.bounds) for name, field in SETTABLE_FIELDS.items() if field.bounds is not None
)
_NO_VALUES: Final[dict[str, Any]] = {}  # shared, never written to
_STR_ONLY: Final = frozenset({str})
_INT_ONLY: Final = frozenset({int})
_FLOAT_ONLY: Final = frozenset({float})
_THOUSAND: Final = 1000.0  # c * 1000 for a float c is c * 1000.0
_ROUND: Final = float.__round__


class _Slow:
    """Marker: this value needs a rule; its record goes through ``from_snapshot``."""

    __slots__ = ()


_SLOW: Final = _Slow()
_MISSING: Final = object()


class ColumnBlock(Sequence[Row]):
    """A batch held column-wise: what the inserter sends, and rows on demand.

    Rows (for the spool, a user's inserter, a refused record) are made only when asked
    for, with the fields the record had (an integer column holds 0 where none was given;
    ``unset`` says where); a slice is a block of the same columns' slices (bisection of
    refused rows).
    """

    __slots__ = ("_columns", "_length", "_unset")

    def __init__(
        self,
        columns: dict[str, list[Any]],
        length: int,
        unset: dict[str, set[int] | range] | None = None,
    ) -> None:
        self._columns = columns
        self._length = length
        self._unset = unset or {}

    def column(self, name: str) -> list[Any]:
        """The values of field ``name``, one per record, as they are sent: read-only (an
        empty ``attributes`` is one shared dict)."""
        return self._columns[name]

    def __len__(self) -> int:
        return self._length

    @overload
    def __getitem__(self, index: int) -> Row: ...

    @overload
    def __getitem__(self, index: slice) -> ColumnBlock: ...

    def __getitem__(self, index: int | slice) -> Row | ColumnBlock:
        if isinstance(index, slice):
            columns = {name: values[index] for name, values in self._columns.items()}
            positions = range(*index.indices(self._length))
            unset: dict[str, set[int] | range] = {
                name: {new for new, old in enumerate(positions) if old in where}
                for name, where in self._unset.items()
            }
            return ColumnBlock(columns, len(positions), unset)
        if not -self._length <= index < self._length:
            raise IndexError("record index out of range")
        index %= self._length
        row: Row = {}
        for name, values in self._columns.items():
            value = values[index]
            if value == "" or value == _NO_VALUES:  # as a row leaves empty fields out
                continue
            where = self._unset.get(name)
            if where is None or index not in where:
                row[name] = dict(value) if type(value) is dict else value
        return row

    def __iter__(self) -> Iterator[Row]:
        for index in range(self._length):
            yield self[index]


class ColumnBuilder:
    """Turns batches of snapshots into :class:`ColumnBlock` with ``converter``'s rules.

    Each column is first checked as a whole — all ``str``, none too long, all encodable;
    all ``int`` within range — with C-level passes (``map``, ``max``, ``str.join``);
    only a column that fails is looked at value by value.
    """

    def __init__(self, converter: RecordConverter) -> None:
        self.converter = converter

    def build(self, snapshots: Sequence[Snapshot]) -> ColumnBlock:
        """The columns of ``snapshots``; never raises for any captured record."""
        count = len(snapshots)
        if not count:
            return ColumnBlock({name: [] for name in _DEFAULTS}, 0)
        # One tuple per slot, in Snapshot's order (a transposition: zip at C speed).
        created, levels, messages, _, contexts, pinos, extras, exceptions, plain, taken = zip(
            *snapshots, strict=True
        )
        slow: set[int] = set() if all(plain) else {i for i, p in enumerate(plain) if not p}
        limit = self.converter.max_field_chars
        if contexts.count(None) == count and pinos.count(None) == count:  # extra= only
            merged = (
                list(extras)
                if all(extras)  # every record gave extra= (a truth test, not an == None each)
                else [_NO_VALUES if e is None else e for e in extras]
            )
        else:
            merged = [
                (_NO_VALUES if e is None else e) if c is None and p is None else _merge(c, p, e)
                for c, p, e in zip(contexts, pinos, extras, strict=True)
            ]
        keys: set[Any] = set().union(*merged)
        odd = {k for k in keys if type(k) is not str or not k.isascii() or k == _REST}
        if odd:  # a key to clean, or an ``attributes`` mapping to unpack
            slow.update(i for i, values in enumerate(merged) if not odd.isdisjoint(values))
        columns: dict[str, list[Any]] = {
            _TIME: _timestamps(created, slow),
            _LEVEL: _levels(levels, limit, slow),
            _MESSAGE: _texts(messages, limit, slow),
            _EXCEPTION: _texts(exceptions, limit, slow),
        }
        given = _taken(columns, taken, count, limit, slow)
        unset = self._fields(columns, merged, keys, limit, slow)
        unset.update(given)
        columns[_REST] = _attributes(merged, keys, limit, slow)
        for index in slow:
            row = self.converter.from_snapshot(snapshots[index])
            for name, values in columns.items():
                values[index] = row.get(name, _DEFAULTS[name])
            for name, where in list(unset.items()):
                if (name in row) is (index in where):  # the rules saw it otherwise
                    unset[name] = set(where) ^ {index}
        ordered = {field.name: columns[field.name] for field in FIELDS}
        return ColumnBlock(ordered, count, unset)

    def _fields(
        self,
        columns: dict[str, list[Any]],
        merged: list[dict[Any, Any]],
        keys: set[Any],
        limit: int,
        slow: set[int],
    ) -> dict[str, set[int] | range]:
        """The settable fields: from the merged values, else the default. Returns, for
        each integer field, the records that gave it no value."""
        converter = self.converter
        configured = {"service": converter.service, "version": converter.version}
        count = len(merged)
        for name in _STRING_FIELDS:
            default = configured.get(name, "")
            if name not in keys:
                if len(default) <= limit:
                    columns[name] = [default] * count
                else:  # a configured service or version over the limit: cut in every row
                    columns[name] = [_SLOW] * count
                    slow.update(range(count))
                continue
            raw = _values(merged, name)
            if not _all_texts(raw, limit, repeated=True):
                raw = [
                    (v if v.isascii() else clean_text(v))
                    if type(v) is str and len(v) <= limit
                    else (default if v is _MISSING and len(default) <= limit else _SLOW)
                    for v in raw
                ]
                _mark(raw, slow)
            columns[name] = raw
        unset: dict[str, set[int] | range] = {}
        for name, low, high in _INT_FIELDS:
            if name not in keys:
                columns[name] = [0] * count
                unset[name] = range(count)
                continue
            raw = _values(merged, name)
            if not (_INT_ONLY.issuperset(map(type, raw)) and low <= min(raw) and max(raw) <= high):
                unset[name] = {i for i, v in enumerate(raw) if v is _MISSING}
                raw = [
                    v if type(v) is int and low <= v <= high else (0 if v is _MISSING else _SLOW)
                    for v in raw
                ]
                _mark(raw, slow)
            else:
                unset[name] = set()
            columns[name] = raw
        return unset


def _taken(
    columns: dict[str, list[Any]],
    taken: Sequence[tuple[object, ...]],
    count: int,
    limit: int,
    slow: set[int],
) -> dict[str, set[int] | range]:
    """The fields read from record attributes (``logger`` ...): a text or an integer in
    range as it is, ``None`` left out; anything else by the rules. Returns, for each
    integer field, the records that gave it no value."""
    unset: dict[str, set[int] | range] = {}
    for position, (name, _, bounds) in enumerate(TAKEN_FIELDS):
        values = list(map(itemgetter(position), taken))
        column: list[Any]
        if bounds is None:
            if _all_texts(values, limit, repeated=True):
                columns[name] = values
                continue
            column = [
                (v if v.isascii() else clean_text(v))
                if type(v) is str and len(v) <= limit
                else ("" if v is None else _SLOW)
                for v in values
            ]
        else:
            low, high = bounds
            unset[name] = {i for i, v in enumerate(values) if v is None}
            column = [
                v if type(v) is int and low <= v <= high else (0 if v is None else _SLOW)
                for v in values
            ]
        _mark(column, slow)
        columns[name] = column
    return unset


def _values(merged: list[dict[Any, Any]], name: str) -> list[Any]:
    """Each record's value of ``name``, ``_MISSING`` where it has none."""
    try:  # every record has it (the common case): a subscript, not a method call, each
        return list(map(itemgetter(name), merged))
    except KeyError:
        return list(map(methodcaller("get", name, _MISSING), merged))


def _merge(
    context: dict[Any, Any] | None, pino: dict[Any, Any] | None, extras: dict[Any, Any] | None
) -> dict[Any, Any]:
    """Context, then a pino-style mapping, then ``extra=``: later keys win."""
    merged = dict(context) if context else {}
    if pino:
        merged.update(pino)
    if extras:
        merged.update(extras)
    return merged


def _mark(column: list[Any], slow: set[int]) -> None:
    """Send the records whose value in ``column`` needs a rule down the slow path."""
    if _SLOW in column:
        slow.update(i for i, value in enumerate(column) if value is _SLOW)


def _all_texts(values: Sequence[Any], limit: int, *, repeated: bool = False) -> bool:
    """Whether every value is a ``str`` within the limit, UTF-8 encodable as it is.

    With ``repeated`` (a logger name, a spec id: few distinct values in a batch), only the
    distinct values are looked at.
    """
    if repeated:
        with contextlib.suppress(TypeError):  # unhashable (converted at call time): all
            values = list(set(values))
    if not _STR_ONLY.issuperset(map(type, values)):
        return False
    text = "".join(values)
    if len(text) > limit and max(map(len, values)) > limit:  # all of them within: none over
        return False
    return text.isascii() or _encodable(text)


def _encodable(text: str) -> bool:
    """Whether ``text`` is UTF-8 as it is (a lone surrogate is not)."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:  # a lone surrogate somewhere: value by value
        return False
    return True


def _texts(values: Sequence[Any], limit: int, slow: set[int]) -> list[Any]:
    """Messages or tracebacks: taken as they are when all are texts within the limit.

    Checked in C passes only: a batch without a traceback is all ``""`` (one identity
    count); otherwise ``str.join`` refuses what is not a text, lengths are one ``max``.
    """
    if values.count("") == len(values):
        return list(values)
    with contextlib.suppress(TypeError):  # a value that is not a text: value by value
        text = "".join(values)
        if (len(text) <= limit or max(map(len, values)) <= limit) and (
            text.isascii() or _encodable(text)
        ):
            return list(values)
    column = [
        (v if v.isascii() else clean_text(v)) if type(v) is str and len(v) <= limit else _SLOW
        for v in values
    ]
    _mark(column, slow)
    return column


def _timestamps(created: Sequence[Any], slow: set[int]) -> list[Any]:
    """Milliseconds; what is not a float in DateTime64's range takes the slow path."""
    if (
        _FLOAT_ONLY.issuperset(map(type, created))
        and math.isfinite(sum(created))  # no NaN, which min() and max() would pass over
        and min(created) >= EARLIEST
        and max(created) <= LATEST
    ):
        # float.__round__ itself (each value is a float): round() looks it up every time
        return list(map(_ROUND, map(mul, created, repeat(_THOUSAND))))
    column = [
        round(c * 1000) if type(c) is float and EARLIEST <= c <= LATEST else _SLOW for c in created
    ]
    _mark(column, slow)
    return column


def _levels(levels: Sequence[Any], limit: int, slow: set[int]) -> list[Any]:
    column: list[Any]
    with contextlib.suppress(TypeError):  # an unhashable level: value by value
        column = list(map(LEVELS.get, levels))  # None for anything that is not a known name
        if all(column):  # every name known (a truth test, not an == None each)
            return column
    column = [
        (LEVELS.get(v) or v.lower())
        if type(v) is str and v.isascii() and len(v) <= limit
        else _SLOW
        for v in levels
    ]
    _mark(column, slow)
    return column


def _attribute(value: object, limit: int) -> object:
    """An attribute string (``_SLOW`` past the limit); ``_MISSING`` stays missing."""
    if value is _MISSING:
        return value
    text = to_attribute(value)
    return text if len(text) <= limit else _SLOW


def _attributes(
    merged: list[dict[Any, Any]], keys: set[Any], limit: int, slow: set[int]
) -> list[Any]:
    """Every key that is not a field, as strings; a text over the limit takes the slow path.

    One pass per key: the attributes keep the batch's key order (the order the
    record's own keys have, unless records of one batch order the same keys unlike).
    """
    unordered = keys - _SETTABLE_NAMES
    if not unordered:
        return [_NO_VALUES] * len(merged)
    names = (
        list(unordered)
        if len(unordered) == 1
        else [k for k in dict.fromkeys(chain.from_iterable(merged)) if k in unordered]
    )
    columns = []
    for name in names:
        raw = _values(merged, name)
        if not _all_texts(raw, limit, repeated=True):
            raw = [
                v if type(v) is str and v.isascii() and len(v) <= limit else _attribute(v, limit)
                for v in raw
            ]
            _mark(raw, slow)
        columns.append(raw)
    rows: list[Any] = columns[0] if len(names) == 1 else list(zip(*columns, strict=True))
    distinct = set(rows)  # strings, markers, tuples of them: hashable
    if len(distinct) * 2 > len(rows):  # mostly different: one map per record
        return [_attribute_map(names, values) for values in rows]
    # Mostly the same few maps (a topic, a kind): each made once and shared, read-only
    # like the rest of the block — no allocation per record.
    maps = {values: _attribute_map(names, values) for values in distinct}
    return list(map(maps.__getitem__, rows))


def _attribute_map(names: list[Any], values: Any) -> dict[Any, Any]:
    """One record's attributes: ``values`` a value (one name) or a tuple of them."""
    if len(names) == 1:
        return {names[0]: values} if values is not _MISSING else _NO_VALUES
    if _MISSING not in values:
        return dict(zip(names, values, strict=True))
    return {k: v for k, v in zip(names, values, strict=True) if v is not _MISSING} or _NO_VALUES
