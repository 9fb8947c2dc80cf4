"""Record -> row: a ``LogRecord`` becomes a row, in one pass (the console) or in two
(the handler: a :class:`Snapshot` taken in the caller's thread, the row made in the worker).

Coercion, cleaning and the size limit live here; the fields come from
:mod:`genesis_logging.schema`. How a row is written as a JSON line is :mod:`._codec`.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable, Mapping
from itertools import islice
from operator import attrgetter
from typing import TYPE_CHECKING, Any, Final, NamedTuple

from ._codec import Row
from ._values import INVALID, clean_text, coerce_field, safe_repr, safe_str, to_attribute
from .context import CONTEXT_ATTRIBUTE, context_bound, current_context
from .schema import (
    DEFAULT_SERVICE,
    FIELDS_BY_NAME,
    RECORD_ATTRIBUTES,
    RULE_FIELDS,
    SETTABLE_FIELDS,
    Field,
    Rule,
)

__all__ = [
    "DEFAULT_MAX_FIELD_CHARS",
    "EARLIEST",
    "LATEST",
    "LEVELS",
    "STANDARD_RECORD_ATTRIBUTES",
    "TAKEN_FIELDS",
    "RecordConverter",
    "Snapshot",
]


def _formatted_record_attributes() -> frozenset[str]:
    """The attributes of a record once a formatter has been through it (``message``,
    ``asctime`` ...): a record may reach us after another handler formatted it."""
    record = logging.LogRecord("", 0, "", 0, "", None, None)
    logging.Formatter("%(asctime)s").format(record)
    return frozenset(record.__dict__)


#: Attributes every LogRecord has (plus those formatters add); the rest came from extra=.
STANDARD_RECORD_ATTRIBUTES: Final = _formatted_record_attributes() | {
    "taskName",
    CONTEXT_ATTRIBUTE,
}

_EXCEPTION_FORMATTER: Final = logging.Formatter()
# Attributes a plain record has; fewer in __dict__ means no extra= (formatters may add some).
_STANDARD_COUNT: Final = len(logging.LogRecord("", 0, "", 0, "", None, None).__dict__)
#: Settable field name -> (field, integer bounds or None); a dict is quicker than the proxy.
_SETTABLE: Final = {name: (f, f.bounds) for name, f in SETTABLE_FIELDS.items()}
# The fields taken from the record, by rule; their names are the schema's business.
_TIME, _LEVEL, _MESSAGE, _EXCEPTION, _REST = (RULE_FIELDS[rule] for rule in Rule)
_SERVICE, _VERSION = "service", "version"  # the configured fields
#: Fields read from a record attribute: (field name, field, integer bounds or None).
TAKEN_FIELDS: Final = tuple(
    (name, FIELDS_BY_NAME[name], FIELDS_BY_NAME[name].bounds) for name in RECORD_ATTRIBUTES
)
_TAKEN_ATTRIBUTES: Final = tuple(RECORD_ATTRIBUTES.values())
# Those attributes of a record at C speed: attrgetter gives a tuple for several names,
# the value itself for one (wrapped where it is called).
_TAKE_ONE: Final = len(_TAKEN_ATTRIBUTES) == 1
_get_taken: Final[Callable[[logging.LogRecord], Any]] = (
    attrgetter(*_TAKEN_ATTRIBUTES) if _TAKEN_ATTRIBUTES else (lambda record: ())
)
_LogRecord: Final = logging.LogRecord


def _taken_of(record: logging.LogRecord) -> tuple[object, ...]:
    """The record's values of the attribute fields (``None`` for an attribute it lacks)."""
    try:
        return (_get_taken(record),) if _TAKE_ONE else tuple(_get_taken(record))
    except AttributeError:
        return tuple(getattr(record, name, None) for name in _TAKEN_ATTRIBUTES)


_MARKER_ROOM: Final = 80  # characters reserved for the truncation marker
#: ``record.created`` a table can hold: DateTime64's 1900-01-01 to 2299-12-31, in seconds.
EARLIEST: Final = -2_208_988_800.0
LATEST: Final = 10_413_791_999.0

#: Default longest text of one field (characters): large enough for a 1 MB stdout.
DEFAULT_MAX_FIELD_CHARS: Final = 4 * 1024 * 1024


_IMMUTABLE: Final = frozenset({str, int, float, bool, type(None)})
_STR_ONLY: Final = frozenset({str})
#: Level name -> the ``level`` field (lower case), for the stdlib's names.
LEVELS: Final = (
    {name: name.lower() for name in logging.getLevelNamesMapping()}
    if hasattr(logging, "getLevelNamesMapping")
    else {name: name.lower() for name in ("CRITICAL", "ERROR", "WARNING", "INFO", "DEBUG")}
)
_LAST_STANDARD: Final = list(logging.LogRecord("", 0, "", 0, "", None, None).__dict__)[-1]
#: ``extra=`` keys already seen to be plain ``str`` and no record attribute: a record whose
#: keys are all here skips those two checks (a set lookup each instead of two passes with a
#: temporary set). Bounded, so keys made anew for every call stop being remembered.
_KNOWN_KEYS: Final[set[str]] = set()
_KNOWN_KEYS_LIMIT: Final = 4096


def _extras(state: dict[str, Any]) -> dict[str, Any]:
    """The ``extra=`` fields of a record's ``__dict__`` (and attributes filters added).

    A record's own attributes come first, in a fixed order, so the extras are looked for
    only after them — unless a record class or factory changed that order.
    """
    rest = islice(state.items(), _STANDARD_COUNT - 1, None)  # one pass: the check, the rest
    if next(rest, (None,))[0] == _LAST_STANDARD:
        extras = dict(rest)
        if not STANDARD_RECORD_ATTRIBUTES.isdisjoint(extras):  # message, asctime ...
            for name in STANDARD_RECORD_ATTRIBUTES.intersection(extras):
                del extras[name]
        return extras
    return {k: v for k, v in state.items() if k not in STANDARD_RECORD_ATTRIBUTES}


def _plain_keys(extras: dict[Any, object]) -> bool:
    """Whether every key of ``extras`` is a ``str`` and no record attribute (one that
    another handler's formatter added: ``message``, ``asctime``); remembered, up to a
    bound, so that the next record with those keys skips the check."""
    if not (
        STANDARD_RECORD_ATTRIBUTES.isdisjoint(extras) and _STR_ONLY.issuperset(map(type, extras))
    ):
        return False
    if len(_KNOWN_KEYS) < _KNOWN_KEYS_LIMIT:
        _KNOWN_KEYS.update(extras)
    return True


class _Converted(NamedTuple):
    """A value converted at call time: what it adds to the row and to ``attributes``."""

    row: Row
    attributes: dict[str, str]


class Snapshot(NamedTuple):
    """A record as captured in the caller's thread: what the worker makes its row from.

    The types are what a ``LogRecord`` declares; a hostile record may hold anything in
    ``created`` and ``levelname`` (and in ``taken``), which the worker checks.
    """

    created: float  # record.created
    levelname: str  # record.levelname
    message: str  # bound to its arguments
    problems: dict[str, str] | None  # attributes about a message that failed, if it did
    context: dict[Any, object] | None  # log_context / ContextFilter; None when empty
    pino: dict[Any, object] | None  # a mapping logged as the message; None when empty
    extras: dict[Any, object] | None  # extra=; None when empty
    exception: str  # the traceback and stack, formatted; "" when none
    plain: bool  # nothing converted at call time: the worker takes values as they are
    taken: tuple[object, ...]  # the schema's record attributes (TAKEN_FIELDS), in order


if TYPE_CHECKING:  # the fast construction below, slot by slot checked

    def _new(
        cls: type[Snapshot],
        slots: tuple[
            float,
            str,
            str,
            dict[str, str] | None,
            dict[Any, object] | None,
            dict[Any, object] | None,
            dict[Any, object] | None,
            str,
            bool,
            tuple[object, ...],
        ],
    ) -> Snapshot: ...

    def _same_slots(snapshot: Snapshot) -> tuple[float, str, str, dict[str, str] | None]:
        return snapshot[:4]  # the NamedTuple and the tuple above agree (mypy checks)

else:
    _new = tuple.__new__  # a Snapshot without NamedTuple's __new__ (a Python function)


class _Rules:
    """The rules that make a row from a record's values, shared by every path: coercion,
    cleaning, the size limit; counts the values it had to coerce. Its options are
    :class:`RecordConverter`'s."""

    def __init__(
        self,
        *,
        service: str | None = None,
        version: str | None = None,
        max_field_chars: int = DEFAULT_MAX_FIELD_CHARS,
    ) -> None:
        if isinstance(max_field_chars, bool) or not isinstance(max_field_chars, int):
            raise TypeError("max_field_chars must be an integer")
        if max_field_chars < _MARKER_ROOM * 2:
            raise ValueError(f"max_field_chars must be at least {_MARKER_ROOM * 2}")
        self.max_field_chars = max_field_chars
        self.service = service or os.environ.get("GENESIS_SERVICE") or DEFAULT_SERVICE
        self.version = version if version is not None else os.environ.get("GENESIS_VERSION", "")
        if not isinstance(self.service, str) or not isinstance(self.version, str):
            raise TypeError("service and version must be strings")
        self._lock = threading.RLock()  # a signal handler may log while it is held
        self._coerced = 0

    @property
    def coerced(self) -> int:
        """How many supplied values were invalid for their field or not encodable."""
        return self._coerced

    def _count_coercion(self) -> None:
        with self._lock:
            self._coerced += 1

    def _head(
        self,
        created: object,
        levelname: object,
        message: str,
        taken: tuple[object, ...],
        attributes: dict[str, str],
    ) -> Row:
        level = LEVELS.get(levelname) if type(levelname) is str else None
        row: Row = {
            _TIME: self._timestamp(created, attributes),
            _LEVEL: level or safe_str(levelname).lower(),
            _MESSAGE: message,
            _SERVICE: self.service,
        }
        for (name, field, bounds), value in zip(TAKEN_FIELDS, taken):  # noqa: B905 - same length
            if value is None:
                continue
            if bounds is None:  # text: as it is, cleaned (a name that is no str: its str)
                row[name] = value if type(value) is str and value.isascii() else safe_str(value)
            else:
                self._set_field(name, field, bounds, value, row, attributes)
        if self.version:
            row[_VERSION] = self.version
        return row

    def _tail(self, row: Row, attributes: dict[str, str], exception: str) -> Row:
        if exception:
            row[_EXCEPTION] = exception
        limit = self.max_field_chars
        if max(map(len, filter(str.__instancecheck__, row.values()))) > limit:  # type: ignore[arg-type]
            for name in [n for n, v in row.items() if type(v) is str and len(v) > limit]:
                row[name] = self._truncate(name, row[name], attributes)  # type: ignore[arg-type]
        if attributes:
            if max(map(len, attributes.values())) > limit:
                for name in [n for n, v in attributes.items() if len(v) > limit]:
                    attributes[name] = self._truncate(name, attributes[name], attributes)
            row[_REST] = attributes
        return row

    def _timestamp(self, created: object, attributes: dict[str, str]) -> int:
        """Milliseconds of ``record.created``; a value no table can hold (NaN, infinity,
        nanoseconds by mistake) becomes now, and the original is kept in ``attributes``."""
        if type(created) is float and EARLIEST <= created <= LATEST:  # NaN compares false
            return round(created * 1000)
        number = isinstance(created, (int, float)) and not isinstance(created, bool)
        if number and EARLIEST <= created <= LATEST:  # type: ignore[operator]
            return round(created * 1000)  # type: ignore[operator]
        self._count_coercion()
        attributes["created.original"] = safe_repr(created)
        return round(time.time() * 1000)

    def _truncate(self, name: str, text: str, attributes: dict[str, str]) -> str:
        """Cut ``text`` to the limit, say so inside it, and keep its length aside."""
        self._count_coercion()
        kept = self.max_field_chars - _MARKER_ROOM
        attributes[f"{name}.original_length"] = str(len(text))
        return f"{text[:kept]}…[truncated {len(text) - kept} of {len(text)} characters]"

    def _merge(self, values: Mapping[Any, object], row: Row, attributes: dict[str, str]) -> None:
        for key, value in values.items():
            if type(value) is _Converted:  # converted at call time (see capture)
                row.update(value.row)
                attributes.update(value.attributes)
                continue
            name = (
                key
                if type(key) is str and key.isascii()
                else (clean_text(key) if isinstance(key, str) else safe_str(key))
            )
            rule = _SETTABLE.get(name)
            if rule is not None:
                if value is None:
                    continue
                # Fast paths for the values callers normally pass (a call costs more).
                field, bounds = rule
                if bounds is None and type(value) is str:
                    row[name] = value if value.isascii() else clean_text(value)
                elif bounds is not None and type(value) is int and bounds[0] <= value <= bounds[1]:
                    row[name] = value
                else:
                    self._set_field(name, field, bounds, value, row, attributes)
            elif name == _REST and isinstance(value, Mapping):
                for inner_key, inner_value in value.items():
                    attributes[safe_str(inner_key)] = to_attribute(inner_value)
            else:
                attributes[name] = to_attribute(value)

    def _set_field(
        self,
        name: str,
        field: Field,
        bounds: tuple[int, int] | None,
        value: object,
        row: Row,
        attributes: dict[str, str],
    ) -> None:
        """``value`` (not ``None``) into field ``name``, coerced to its kind; a value with
        no faithful form leaves the field's default and is kept in ``attributes``."""
        # Fast paths for the values callers normally pass.
        if bounds is None and type(value) is str:
            row[name] = value if value.isascii() else clean_text(value)
            return
        if bounds is not None and type(value) is int and bounds[0] <= value <= bounds[1]:
            row[name] = value
            return
        coerced = coerce_field(field, value)
        if coerced is INVALID:  # the column gets its default, the value is kept
            self._count_coercion()
            row[name] = field.default
            attributes[name] = to_attribute(value)
        else:
            if not isinstance(value, (str, int)) or isinstance(value, bool):
                self._count_coercion()
            row[name] = coerced  # type: ignore[assignment]  # INVALID excluded above

    def _message_failed(
        self, record: logging.LogRecord, error: Exception, attributes: dict[str, str]
    ) -> str:
        self._count_coercion()
        attributes["message_error"] = f"{type(error).__name__}: {safe_str(error)}"
        if record.args:
            attributes["message_args"] = to_attribute(record.args)
        return safe_str(record.msg)


class RecordConverter(_Rules):
    """Convert log records to rows: in one pass (the console), or captured in the
    caller's thread and made a row in the worker (the handler).

    Args:
        service: the ``service`` field; default ``$GENESIS_SERVICE`` or
            ``genesis-pipeline``.
        version: the ``version`` field; default ``$GENESIS_VERSION`` or empty.
        max_field_chars: longest text kept in one field or attribute; longer text is
            cut with a marker and its original length kept in ``attributes``.
    """

    def convert(self, record: logging.LogRecord) -> Row:
        """Return the row of ``record`` in one pass (the console's path); never raises,
        never mutates the record. Equal to ``from_snapshot(capture(record))``."""
        attributes: dict[str, str] = {}
        message = self._message(record, attributes)
        taken = _taken_of(record)
        row = self._head(record.created, record.levelname, message, taken, attributes)
        state = record.__dict__
        context = state.get(CONTEXT_ATTRIBUTE)
        if context is None or not isinstance(context, Mapping):
            context = current_context()
        if context:
            self._merge(context, row, attributes)
        msg = record.msg
        if type(msg) is not str and not record.args and isinstance(msg, Mapping):
            self._merge(msg, row, attributes)  # pino style: logger.info({...})
        if len(state) > _STANDARD_COUNT or CONTEXT_ATTRIBUTE in state:  # extra= was given
            extras = _extras(state)
            if extras:
                self._merge(extras, row, attributes)
        exception = (
            self._exception(record)
            if record.exc_info or record.stack_info or record.exc_text
            else ""
        )
        return self._tail(row, attributes, exception)

    def capture(self, record: logging.LogRecord) -> Snapshot:
        """What must be taken at call time (the handler's path, in the caller's thread).

        The common record — a plain ``LogRecord``, a ``str`` message, no exception, no
        ``ContextFilter`` snapshot, ``extra=`` of ``str`` keys and immutable values — is
        taken here in a few steps; any other goes through :meth:`full_capture`, which
        gives the same snapshot for the common record too (``tests/handler/test_capture_equals_conversion.py``).
        """
        msg = record.msg
        state = record.__dict__
        if (
            type(msg) is not str
            or type(record) is not _LogRecord
            or record.exc_info
            or record.exc_text
            or record.stack_info
        ):
            return self.full_capture(record)
        args = record.args
        if args:
            try:
                msg = msg % args  # what getMessage() does for a str message
            except Exception:  # bad args or a hostile __str__: the full path says why
                return self.full_capture(record)
        extras = None
        if len(state) > _STANDARD_COUNT:  # extra= was given (or a filter added attributes)
            if CONTEXT_ATTRIBUTE in state:  # ContextFilter's snapshot
                return self.full_capture(record)
            rest = islice(state.items(), _STANDARD_COUNT - 1, None)  # _extras(), inlined
            if next(rest)[0] != _LAST_STANDARD:  # a record whose own attributes moved
                return self.full_capture(record)
            extras = dict(rest)
            if not (
                (extras.keys() <= _KNOWN_KEYS or _plain_keys(extras))  # seen, or checked now
                and _IMMUTABLE.issuperset(map(type, extras.values()))
            ):
                return self.full_capture(record)
        context = current_context() if context_bound() else None  # a fresh dict
        if context and not (
            _IMMUTABLE.issuperset(map(type, context.values()))
            and _STR_ONLY.issuperset(map(type, context))
        ):
            return self.full_capture(record)
        try:
            taken = _get_taken(record)
        except AttributeError:  # a record without one of the attributes
            return self.full_capture(record)
        if _TAKE_ONE:  # one attribute (the schema's own: the logger's name): no temporary set
            if type(taken) not in _IMMUTABLE:  # a logger name that is no str ...
                return self.full_capture(record)
            taken = (taken,)
        elif not _IMMUTABLE.issuperset(map(type, taken)):
            return self.full_capture(record)
        return _new(
            Snapshot,
            (
                record.created,
                record.levelname,
                msg,
                None,
                context or None,
                None,
                extras,
                "",
                True,
                taken,
            ),
        )

    def full_capture(self, record: logging.LogRecord) -> Snapshot:
        """:meth:`capture` for any record (subclasses, exceptions, mappings, mutable
        values); the message is bound to its arguments and the traceback formatted; values
        that are not immutable (``str``, ``int``, ``float``, ``bool``, ``None``) are
        converted now, so a later mutation by the caller cannot change the record. No
        coercion, no cleaning: that waits for the worker (:mod:`._columns`, or
        :meth:`from_snapshot`)."""
        problems: dict[str, str] | None = None
        plain = True  # nothing converted now: the worker's columns may take values as they are
        msg = record.msg
        pino = None
        if record.args or type(msg) is str or not isinstance(msg, Mapping):
            try:
                message = record.getMessage()
            except Exception as error:  # bad args or a hostile __str__: keep what we can
                problems = {}
                message = self._message_failed(record, error, problems)
                plain = False
        else:
            message = ""
            if msg:  # pino style: logger.info({...}); the caller keeps the mapping
                pino, plain = self._taken(msg, ours=False)
        state = record.__dict__
        extras = None
        if len(state) > _STANDARD_COUNT:  # extra= was given (or a filter added attributes)
            extras = _extras(state) or None
            if extras is not None:
                extras, simple = self._taken(extras, ours=True)
                plain = plain and simple
        context = state.get(CONTEXT_ATTRIBUTE)  # ContextFilter's snapshot, if any
        ours = context is None or not isinstance(context, Mapping)
        if ours:
            context = current_context()  # a fresh dict
        if context:
            context, simple = self._taken(context, ours=ours)
            plain = plain and simple
        else:
            context = None
        exception = (
            self._exception(record)
            if record.exc_info or record.stack_info or record.exc_text
            else ""
        )
        taken = _taken_of(record)
        if not _IMMUTABLE.issuperset(map(type, taken)):  # converted now, as extras are
            taken = tuple(v if type(v) in _IMMUTABLE else safe_str(v) for v in taken)
        return Snapshot(
            created=record.created,
            levelname=record.levelname,
            message=message,
            problems=problems,
            context=context,
            pino=pino,
            extras=extras,
            exception=exception,
            plain=plain,
            taken=taken,
        )

    def _taken(
        self, values: Mapping[Any, object], *, ours: bool
    ) -> tuple[dict[Any, object], bool]:
        """``values`` to keep (a copy unless ``ours``), and whether nothing in them had to
        be converted now."""
        if _IMMUTABLE.issuperset(map(type, values.values())) and _STR_ONLY.issuperset(
            map(type, values)
        ):  # the common case: nothing to convert now
            return (values if ours and type(values) is dict else dict(values)), True
        return self._freeze(values, ours=ours), False

    def from_snapshot(self, snapshot: Snapshot) -> Row:
        """The row of a captured record (in the worker); the same row ``convert`` gives."""
        attributes = dict(snapshot.problems) if snapshot.problems else {}
        message = snapshot.message
        text = message if type(message) is str and message.isascii() else safe_str(message)
        row = self._head(snapshot.created, snapshot.levelname, text, snapshot.taken, attributes)
        for values in (snapshot.context, snapshot.pino, snapshot.extras):
            if values:
                self._merge(values, row, attributes)
        return self._tail(row, attributes, snapshot.exception)

    def _freeze(self, values: Mapping[Any, object], *, ours: bool = False) -> dict[Any, object]:
        """``values`` with everything that is not immutable converted now; a copy unless
        ``ours`` (a dict nobody else holds)."""
        for key, value in values.items():
            if type(key) is not str or type(value) not in _IMMUTABLE:
                break
        else:  # the common case: str keys, immutable values
            return values if ours and type(values) is dict else dict(values)
        frozen: dict[Any, object] = {}
        for key, value in values.items():
            if type(key) is str and type(value) in _IMMUTABLE:
                frozen[key] = value
                continue
            row: Row = {}
            attributes: dict[str, str] = {}
            self._merge({key: value}, row, attributes)  # the very rules, applied now
            frozen[key if type(key) is str else safe_str(key)] = _Converted(row, attributes)
        return frozen

    def _message(self, record: logging.LogRecord, attributes: dict[str, str]) -> str:
        msg = record.msg
        if type(msg) is not str and not record.args and isinstance(msg, Mapping):
            return ""
        try:
            return clean_text(record.getMessage())
        except Exception as error:  # bad args or a hostile __str__: keep what we can
            return self._message_failed(record, error, attributes)

    @staticmethod
    def _exception(record: logging.LogRecord) -> str:
        parts: list[str] = []
        try:
            if record.exc_info and record.exc_info[0] is not None:
                parts.append(_EXCEPTION_FORMATTER.formatException(record.exc_info))
            elif record.exc_text:
                parts.append(safe_str(record.exc_text))
            if record.stack_info:
                parts.append(safe_str(record.stack_info))
        except Exception as error:  # a broken traceback object must not cost the record
            parts.append(f"<exception could not be formatted: {safe_str(error)}>")
        return clean_text("\n".join(parts))
