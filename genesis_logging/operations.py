"""Server-side operations for the infra team: what a server can do, init, doctor.

Everything talks through a ``query(sql) -> rows`` callable, so the same code runs against
a ClickHouse server (native protocol) and, in tests, against chDB.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Final

from .ddl import column_definition, legacy_type, quote_identifier, quote_string
from .schema import FIELDS, Field, Kind

__all__ = [
    "FEATURES",
    "LEGACY_PROFILE",
    "DoctorReport",
    "Features",
    "best_profile",
    "compatibility",
    "diagnose",
    "missing_features",
    "upgrade_statements",
]

Query = Callable[[str], Sequence[Sequence[Any]]]

#: Feature -> first server version that has it (in a usable, non-experimental form).
FEATURES: Final = {
    "DateTime64": (20, 1),
    "TTL": (19, 6),
    "LowCardinality": (19, 6),
    "Map": (21, 8),
    "skip indexes": (20, 1),
    "users": (20, 5),
    "ADD COLUMN IF NOT EXISTS": (19, 1),
    "insert_deduplication_token": (22, 2),
}

#: What each profile's DDL needs from the server.
PROFILE_NEEDS: Final = {
    "seed": ("DateTime64", "TTL", "skip indexes"),
    "default": ("DateTime64", "TTL", "LowCardinality", "Map", "skip indexes"),
    "legacy": (),
}
#: What a person is told the legacy profile gives up.
LEGACY_PROFILE: Final = (
    "timestamps in whole seconds, attributes as JSON text, no codecs, skip indexes or TTL: "
    "drop old months with ALTER TABLE … DROP PARTITION"
)


@dataclass(frozen=True)
class Features:
    """A server's version and the features it has."""

    version: str
    major_minor: tuple[int, int]

    @classmethod
    def from_version(cls, version: str) -> Features:
        numbers = [int(part) for part in re.findall(r"\d+", version)[:2]] + [0, 0]
        return cls(version, (numbers[0], numbers[1]))

    def has(self, feature: str) -> bool:
        return self.major_minor >= FEATURES[feature]

    def summary(self) -> str:
        return ", ".join(f"{name} {'yes' if self.has(name) else 'no'}" for name in FEATURES)


def missing_features(features: Features, profile: str, *, users: bool = False) -> list[str]:
    """The features ``profile`` (and the read-only user, if wanted) need but lack."""
    needs = list(PROFILE_NEEDS[profile]) + (["users"] if users else [])
    return [name for name in needs if not features.has(name)]


def best_profile(features: Features) -> str:
    """``default`` where the server has what it needs, else ``legacy`` (every server)."""
    return "default" if not missing_features(features, "default") else "legacy"


def _base_type(column_type: str) -> str:
    base = column_type.strip()
    changed = True
    while changed:
        changed = False
        for wrapper in ("LowCardinality(", "Nullable("):
            if base.startswith(wrapper) and base.endswith(")"):
                base = base[len(wrapper) : -1]
                changed = True
    return base


def compatibility(field: Field, column_type: str) -> tuple[str, str | None]:
    """Whether a column of ``column_type`` can hold ``field``.

    Returns:
        ``("ok", None)``, ``("degraded", why)`` or ``("incompatible", why)``.
    """
    base = _base_type(column_type)
    if field.kind is Kind.TIMESTAMP:
        if base.startswith("DateTime64"):
            return "ok", None
        if base.startswith("DateTime"):
            return "degraded", "DateTime keeps seconds: milliseconds are lost"
    elif field.kind is Kind.STRING:
        if base == "String":
            return "ok", None
    elif field.kind is Kind.UINT32:
        if base in ("UInt32", "UInt64", "Int64"):
            return "ok", None
    elif field.kind is Kind.INT32:
        if base in ("Int32", "Int64"):
            return "ok", None
    elif field.kind is Kind.STRING_MAP:
        if (
            base.startswith("Map(")
            and base.replace("LowCardinality(String)", "String") == "Map(String, String)"
        ):
            return "ok", None
        if base == "String":
            return "degraded", "attributes are stored as JSON text, not as a Map"
    return "incompatible", f"{column_type} cannot hold {field.clickhouse_type}"


def upgrade_statements(
    database: str, table: str, missing: Sequence[Field], features: Features
) -> list[str]:
    """``ALTER TABLE … ADD COLUMN`` for the record fields a table lacks, no data lost."""
    target = f"{quote_identifier(database)}.{quote_identifier(table)}"
    if_not_exists = " IF NOT EXISTS" if features.has("ADD COLUMN IF NOT EXISTS") else ""
    statements = []
    for field_ in missing:
        if features.has("Map") and features.has("LowCardinality"):
            definition = column_definition(field_, "default")
        else:
            definition = f"{field_.name} {legacy_type(field_)}"
        statements.append(f"ALTER TABLE {target} ADD COLUMN{if_not_exists} {definition}")
    return statements


@dataclass
class DoctorReport:
    """What ``doctor`` found: lines for a person, fix statements, and a verdict."""

    lines: list[tuple[str, str]] = field(default_factory=list)  # (OK|WARN|FAIL|INFO, text)
    fixes: list[str] = field(default_factory=list)

    def add(self, status: str, text: str) -> None:
        self.lines.append((status, text))

    @property
    def usable(self) -> bool:
        return not any(status == "FAIL" for status, _ in self.lines)

    @property
    def degraded(self) -> bool:
        return any(status == "WARN" for status, _ in self.lines)

    def render(self) -> str:
        out = [f"  {status:<4} {text}" for status, text in self.lines]
        verdict = "usable" if self.usable else "NOT usable"
        if self.usable and self.degraded:
            verdict += " (degraded, see WARN lines)"
        out.append(f"verdict: {verdict}")
        if self.fixes:
            out.append("to fix, run:")
            out.extend(f"  {statement};" for statement in self.fixes)
        return "\n".join(out) + "\n"


def diagnose(
    query: Query,
    version: str,
    database: str,
    table: str,
    *,
    can_insert: Callable[[], str | None],
    init_command: str = "",
) -> DoctorReport:
    """Check a table against the record schema.

    Args:
        query: runs one SQL statement, returns rows.
        version: the server's version string.
        can_insert: tries an insert that stores nothing; returns an error text or None.
        init_command: the ``genesis-logging init …`` that creates the table on this
            server (it picks the profile the server can hold).
    """
    init_command = init_command or (f"genesis-logging init --database {database} --table {table}")
    report = DoctorReport()
    features = Features.from_version(version)
    report.add("OK", f"server version {version}")
    report.add("INFO", f"features: {features.summary()}")
    lacking = missing_features(features, "default")
    if lacking:
        report.add(
            "INFO",
            f"this server lacks {', '.join(lacking)}: 'init' creates the legacy profile here "
            f"({LEGACY_PROFILE})",
        )
    rows = query(
        "SELECT name, type FROM system.columns WHERE database = "
        f"{quote_string(database)} AND table = {quote_string(table)}"
    )
    if not rows:
        exists = query(
            f"SELECT count() FROM system.databases WHERE name = {quote_string(database)}"
        )
        where = (
            f"database {database}"
            if not exists or not int(exists[0][0])
            else f"table {database}.{table}"
        )
        report.add("FAIL", f"{where} does not exist")
        report.add("INFO", f"create it with: {init_command}")
        return report
    report.add("OK", f"table {database}.{table} exists")
    if not features.has("insert_deduplication_token"):
        _check_deduplication(report, query, database, table)
    _check_columns(report, {str(n): str(t) for n, t in rows}, database, table, features)
    error = can_insert()
    if error is None:
        report.add("OK", "this user can insert")
    else:
        report.add("FAIL", f"this user cannot insert: {error}")
    return report


def _check_deduplication(report: DoctorReport, query: Query, database: str, table: str) -> None:
    """Without dedup tokens only replicated tables recognise a repeated batch (by the
    block's hash); a ``Distributed`` table's key is checked by the CLI's ``doctor``."""
    engine = query(
        "SELECT engine FROM system.tables WHERE database = "
        f"{quote_string(database)} AND name = {quote_string(table)}"
    )
    name = str(engine[0][0]) if engine else ""
    if name.startswith("Replicated"):
        report.add("OK", f"{name}: a repeated batch is stored once (by its block's hash)")
    elif name == "Distributed":
        report.add(
            "INFO",
            "Distributed: a repeated batch is stored once when the local tables are "
            "Replicated* and the sharding key is computed from the row",
        )
    else:
        report.add(
            "WARN",
            "no insert_deduplication_token: delivery is at-least-once (a retried batch may "
            "be stored twice)",
        )


def _check_columns(
    report: DoctorReport, columns: dict[str, str], database: str, table: str, features: Features
) -> None:
    """Each record field against the table's column of that name."""
    missing = []
    for field_ in FIELDS:
        if field_.name not in columns:
            missing.append(field_)
            continue
        verdict, why = compatibility(field_, columns[field_.name])
        if verdict == "degraded":
            report.add("WARN", f"{field_.name} is {columns[field_.name]}: {why}")
        elif verdict == "incompatible":
            report.add("FAIL", f"{field_.name} is {columns[field_.name]}: {why}")
    if missing:
        names = ", ".join(f.name for f in missing)
        report.add("WARN", f"missing columns {names}: those fields are not stored")
        report.fixes = upgrade_statements(database, table, missing, features)
    extra = sorted(set(columns) - {f.name for f in FIELDS})
    if extra:
        report.add(
            "INFO",
            f"extra columns {', '.join(extra)}: not written by genesis-logging (they take their defaults)",
        )
