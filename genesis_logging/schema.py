"""The one record schema: every field of a genesis log record, in column order.

The console formatter, the ClickHouse handler's row conversion and the DDL all read
:data:`FIELDS`; nothing else in the package lists the fields. A field taken from the
``LogRecord`` says how here too (:data:`RECORD_EXTRACTORS`): a record attribute read as it
is (``logger`` is ``record.name``), or one of the :class:`Rule` s the row codec applies.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum
from types import MappingProxyType
from typing import Final

__all__ = [
    "CONTEXT_FIELDS",
    "DEFAULT_SERVICE",
    "FIELDS",
    "FIELDS_BY_NAME",
    "FIELD_NAMES",
    "RECORD_ATTRIBUTES",
    "RECORD_EXTRACTORS",
    "RULE_FIELDS",
    "RUN_FIELDS",
    "SEED_FIELDS",
    "SETTABLE_FIELDS",
    "SHOW_FIELDS",
    "TAIL_FIELDS",
    "Field",
    "Kind",
    "Rule",
    "Source",
]

DEFAULT_SERVICE: Final = "genesis-pipeline"


class Kind(str, Enum):
    """The value domain of a field, which decides how a supplied value is coerced."""

    TIMESTAMP = "timestamp"
    STRING = "string"
    UINT32 = "uint32"
    INT32 = "int32"
    STRING_MAP = "string_map"


class Source(str, Enum):
    """Where a field's value comes from."""

    RECORD = "record"  # derived from the LogRecord itself
    CONTEXT = "context"  # log_context(...) or extra=
    RUN = "run"  # a captured run of a command, via extra= (or run_and_log)
    CONFIG = "config"  # formatter/handler option or environment, overridable by extra=


class Rule(str, Enum):
    """How a field taken from the LogRecord is made when more than a read is needed."""

    TIME = "time"  # ``created`` in milliseconds; out of DateTime64's range: now, kept aside
    LEVEL = "level"  # ``levelname`` in lower case
    MESSAGE = "message"  # ``getMessage()``; "" for a pino-style mapping, whose keys merge
    EXCEPTION = "exception"  # ``exc_info`` / ``exc_text`` / ``stack_info``, formatted
    REST = "rest"  # every supplied value that is no field, as strings


@dataclass(frozen=True)
class Field:
    """One column of ``genesis.logs`` and one key of a console line.

    Attributes:
        name: column name and JSON key.
        clickhouse_type: the type the specification gives (today's ClickHouse).
        kind: value domain used for coercion.
        source: how the value is filled.
        seed: whether the field is one of the specification's 14 columns.
        doc: one line for documentation and the DDL comment.
        repeats: few distinct values over many rows (dictionary-encode it).
        bulky: large free text (compress it harder).
        record_attribute: for a field taken from the LogRecord, the attribute read (its
            value coerced to ``kind`` as a supplied value is; ``None`` leaves it out).
        rule: for a field taken from the LogRecord by a rule, which one.
    """

    name: str
    clickhouse_type: str
    kind: Kind
    source: Source
    seed: bool
    doc: str
    repeats: bool = False
    bulky: bool = False
    record_attribute: str | None = None
    rule: Rule | None = None

    def __post_init__(self) -> None:
        taken = (self.record_attribute is not None) + (self.rule is not None)
        if taken != (self.source is Source.RECORD):
            raise ValueError(f"field {self.name!r}: a record field has a rule or an attribute")

    @property
    def default(self) -> str | int | dict[str, str]:
        """The value a column takes when a record does not supply it."""
        if self.kind in (Kind.UINT32, Kind.INT32, Kind.TIMESTAMP):
            return 0
        if self.kind is Kind.STRING_MAP:
            return {}
        if self.name == "service":
            return DEFAULT_SERVICE
        return ""

    @property
    def bounds(self) -> tuple[int, int] | None:
        """Inclusive integer range for integer kinds, else ``None``."""
        if self.kind is Kind.UINT32:
            return (0, 2**32 - 1)
        if self.kind is Kind.INT32:
            return (-(2**31), 2**31 - 1)
        return None


_S, _C, _R, _F = Source.RECORD, Source.CONTEXT, Source.RUN, Source.CONFIG
_STR = Kind.STRING
_T, _L, _M, _E = Rule.TIME, Rule.LEVEL, Rule.MESSAGE, Rule.EXCEPTION

# fmt: off
FIELDS: Final[tuple[Field, ...]] = (
    Field("timestamp", "DateTime64(3)", Kind.TIMESTAMP, _S, True, "when it was logged: UTC, millisecond precision", rule=_T),
    Field("level", "String", _STR, _S, True, "lower-case level name", repeats=True, rule=_L),
    Field("message", "String", _STR, _S, True, "the formatted message", bulky=True, rule=_M),
    Field("spec_id", "String", _STR, _C, True, "specification under test, e.g. spec_001", repeats=True),
    Field("iteration", "UInt32", Kind.UINT32, _C, True, "iteration of the TDD loop: 1, 2, 3 ..."),
    Field("stdout", "String", _STR, _R, True, "standard output of a run; for a test, its captured output", bulky=True),
    Field("stderr", "String", _STR, _R, True, "standard error of a run; for a test, its failure text", bulky=True),
    Field("exit_code", "Int32", Kind.INT32, _R, True, "exit status of a run or test; 0 = success"),
    Field("code_snapshot", "String", _STR, _R, True, "the code that was run", bulky=True),
    Field("duration_ms", "UInt32", Kind.UINT32, _R, True, "how long the run or task took, in milliseconds"),
    Field("sprint_id", "String", _STR, _C, True, "sprint, e.g. S030", repeats=True),
    Field("task_id", "String", _STR, _C, True, "task, e.g. T01", repeats=True),
    Field("service", "String", _STR, _F, True, "emitting service", repeats=True),
    Field("version", "String", _STR, _F, True, "version of the emitting service", repeats=True),
    Field("logger", "String", _STR, _S, False, "logger name: genesis.run (runs), genesis.pytest (tests) ...", repeats=True, record_attribute="name"),
    Field("exception", "String", _STR, _S, False, "formatted traceback / stack", bulky=True, rule=_E),
    Field("attributes", "Map(String, String)", Kind.STRING_MAP, _S, False, "every other field, as strings: outcome, test, kind, code_hash ...", rule=Rule.REST),
)
# fmt: on

FIELD_NAMES: Final[tuple[str, ...]] = tuple(f.name for f in FIELDS)
FIELDS_BY_NAME: Final = MappingProxyType({f.name: f for f in FIELDS})
SEED_FIELDS: Final[tuple[Field, ...]] = tuple(f for f in FIELDS if f.seed)
#: Fields a caller may set through ``extra=`` or :func:`~genesis_logging.log_context`.
SETTABLE_FIELDS: Final = MappingProxyType(
    {f.name: f for f in FIELDS if f.source is not Source.RECORD}
)
#: Every field taken from the LogRecord: field name -> its rule, or the attribute read.
RECORD_EXTRACTORS: Final[MappingProxyType[str, Rule | str]] = MappingProxyType(
    {f.name: f.rule or f.record_attribute or "" for f in FIELDS if f.source is Source.RECORD}
)
#: Fields read from a LogRecord attribute as they are: field name -> attribute, in order.
RECORD_ATTRIBUTES: Final = MappingProxyType(
    {f.name: f.record_attribute for f in FIELDS if f.record_attribute is not None}
)
#: The field each rule makes (every rule makes exactly one).
RULE_FIELDS: Final = MappingProxyType({f.rule: f.name for f in FIELDS if f.rule is not None})
if set(RULE_FIELDS) != set(Rule) or len(RULE_FIELDS) != sum(f.rule is not None for f in FIELDS):
    raise ValueError("every rule makes exactly one field")
#: What the loop reads of every run record (its output and code only when asked).
RUN_FIELDS: Final[tuple[str, ...]] = ("iteration", "exit_code", "duration_ms", "timestamp")
#: What ``genesis-logging show`` says of a run above its output, in this order.
SHOW_FIELDS: Final[tuple[str, ...]] = (
    "timestamp",
    "level",
    "iteration",
    "exit_code",
    "duration_ms",
    "message",
)
#: What ``genesis-logging tail`` shows of each record, in this order.
TAIL_FIELDS: Final[tuple[str, ...]] = (
    "timestamp",
    "level",
    "spec_id",
    "iteration",
    "exit_code",
    "message",
)
#: The identifiers of the TDD loop that usually come from the context.
CONTEXT_FIELDS: Final[tuple[str, ...]] = tuple(
    f.name for f in FIELDS if f.source is Source.CONTEXT
)
