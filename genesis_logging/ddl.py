"""DDL for ``genesis.logs``, rendered from the one record schema.

Three profiles. ``seed`` is the specification's DDL as written (§3.4: its 14 columns,
``ORDER BY (timestamp, spec_id)``, the 90-day TTL, two skip indexes). ``default`` keeps
every column name and adds ``logger``, ``exception`` and ``attributes``, tuned for what
the assistant runs: ``WHERE spec_id = … ORDER BY timestamp DESC`` and time ranges.
``legacy`` is ``default``'s columns in the types every server has (Debian's 18.16
included): ``DateTime`` in seconds, ``attributes`` as JSON text (what the handler writes
to such a column), no TTL, codecs or skip indexes. ``docs/schema.md`` gives the reason
for each choice.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Final

from .schema import FIELDS, SEED_FIELDS, Field, Kind

__all__ = [
    "PROFILES",
    "SHARDING_KEY",
    "TableSpec",
    "column_definition",
    "create_database_sql",
    "create_table_sql",
    "legacy_type",
    "quote_identifier",
    "quote_string",
    "readonly_user_statements",
    "render_statements",
    "view_statements",
]

PROFILES: Final = ("default", "seed", "legacy")

_PLAIN_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")

#: Skip indexes of the seed (§3.4), kept by both profiles.
_SEED_INDEXES: Final = (
    ("idx_level", "level", "set(10)", 4),
    ("idx_exit_code", "exit_code", "set(10)", 4),
)
#: Token bloom filters for searching words in text (``hasToken``, ``LIKE '%word%'``).
_TEXT_INDEXES: Final = (
    ("idx_message", "message", "tokenbf_v1(32768, 3, 0)", 4),
    ("idx_stderr", "stderr", "tokenbf_v1(32768, 3, 0)", 4),
)
DEDUPLICATION_WINDOW: Final = 1000
#: A replicated table remembers the hashes of its last 100 blocks by default (18.16 and
#: servers before 23.x): a batch replayed from the spool after a long outage of one shard
#: would come back after more blocks than that on the other (each failed insert leaves its
#: part there) and be stored twice. 1000 blocks: 1000 failed batches before that happens.
_REPLICATED_WINDOW: Final = f"replicated_deduplication_window = {DEDUPLICATION_WINDOW}"
#: How the ``Distributed`` table picks a shard: from the row itself, so a retried or
#: replayed batch splits into the same blocks and each shard's replicated table drops
#: the repeat (a block identical to one it has, rows in any order). A spec's rows stay
#: on one shard (the assistant's queries filter by ``spec_id``); rows without one
#: (service logs) spread by service and second instead of all landing on one shard.
SHARDING_KEY: Final = "if(spec_id = '', cityHash64(service, timestamp), cityHash64(spec_id))"


def quote_identifier(name: str) -> str:
    """Quote a database, table or user name for ClickHouse; plain names stay readable."""
    if _PLAIN_IDENTIFIER.match(name):
        return name
    return "`" + name.replace("\\", "\\\\").replace("`", "\\`") + "`"


def quote_string(value: str) -> str:
    """A ClickHouse string literal."""
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


@dataclass(frozen=True)
class TableSpec:
    """What to create: where, which profile, how long to keep rows, on which cluster."""

    database: str = "genesis"
    table: str = "logs"
    profile: str = "default"
    ttl_days: int = 90
    cluster: str | None = None

    def __post_init__(self) -> None:
        if self.profile not in PROFILES:
            raise ValueError(f"profile must be one of {', '.join(PROFILES)}, got {self.profile!r}")
        if (
            isinstance(self.ttl_days, bool)
            or not isinstance(self.ttl_days, int)
            or self.ttl_days < 1
        ):
            raise ValueError(
                f"ttl_days must be a whole number of days >= 1, got {self.ttl_days!r}"
            )
        for name in (self.database, self.table):
            if not name:
                raise ValueError("database and table names must not be empty")

    @property
    def fields(self) -> tuple[Field, ...]:
        return SEED_FIELDS if self.profile == "seed" else FIELDS

    @property
    def target(self) -> str:
        return f"{quote_identifier(self.database)}.{quote_identifier(self.table)}"

    @property
    def on_cluster(self) -> str:
        return f" ON CLUSTER {quote_identifier(self.cluster)}" if self.cluster else ""


def column_definition(field: Field, profile: str = "default", *, comment: bool = True) -> str:
    """``name Type [DEFAULT …] [CODEC(…)]`` of one field in a profile.

    ``comment=False`` leaves the ``COMMENT`` out: 18.16 keeps column comments out of a
    replicated table's metadata in ZooKeeper, so a second replica of a table with
    comments is refused ("Table structure in ZooKeeper is too different").
    """
    if profile == "seed":
        ch_type = field.clickhouse_type
        suffix = ""
    elif profile == "legacy":
        ch_type = legacy_type(field)
        suffix = ""
    else:
        ch_type = _tuned_type(field)
        suffix = ""
        if field.bulky:
            suffix = " CODEC(ZSTD(3))"
        elif field.kind is Kind.STRING_MAP:
            suffix = " CODEC(ZSTD(1))"
    doc = _LEGACY_DOCS.get(field.kind, field.doc) if profile == "legacy" else field.doc
    if comment:
        suffix += f" COMMENT {quote_string(doc)}"  # what list_tables shows the assistant
    if field.kind is Kind.TIMESTAMP:
        now = "now()" if profile == "legacy" else "now64(3)"
        return f"{field.name} {ch_type} DEFAULT {now}{suffix}"
    if field.name == "service":
        return f"{field.name} {ch_type} DEFAULT {quote_string(str(field.default))}{suffix}"
    return f"{field.name} {ch_type}{suffix}"


#: Comments that say how the legacy profile's types differ from the schema's.
_LEGACY_DOCS: Final = {
    Kind.TIMESTAMP: "when it was logged: UTC, whole seconds",
    Kind.STRING_MAP: "every other field as JSON text: outcome, test, kind, code_hash ... "
    "(read one with visitParamExtractString(attributes, 'test'))",
}


def legacy_type(field: Field) -> str:
    """The type of ``field`` on a server without ``DateTime64``, ``Map`` or ``LowCardinality``."""
    if field.kind is Kind.TIMESTAMP:
        return "DateTime('UTC')"
    if field.kind is Kind.STRING_MAP:
        return "String"  # JSON text, as the handler writes a map to a String column
    return field.clickhouse_type


def _tuned_type(field: Field) -> str:
    if field.kind is Kind.TIMESTAMP:
        return "DateTime64(3, 'UTC')"
    if field.kind is Kind.STRING_MAP:
        return "Map(LowCardinality(String), String)"
    if field.repeats:
        return f"LowCardinality({field.clickhouse_type})"
    return field.clickhouse_type


def create_database_sql(database: str = "genesis", cluster: str | None = None) -> str:
    """``CREATE DATABASE IF NOT EXISTS``."""
    on_cluster = f" ON CLUSTER {quote_identifier(cluster)}" if cluster else ""
    return f"CREATE DATABASE IF NOT EXISTS {quote_identifier(database)}{on_cluster}"


def _engine(spec: TableSpec, local_table: str) -> str:
    if not spec.cluster:
        return "MergeTree" if spec.profile == "default" else "MergeTree()"
    path = f"/clickhouse/tables/{{shard}}/{spec.database}/{local_table}"
    return f"ReplicatedMergeTree({quote_string(path)}, '{{replica}}')"


def create_table_sql(
    database: str = "genesis",
    table: str = "logs",
    *,
    profile: str = "default",
    ttl_days: int = 90,
    cluster: str | None = None,
) -> str:
    """The ``CREATE TABLE IF NOT EXISTS`` statement of a profile (the local table on a cluster)."""
    spec = TableSpec(database, table, profile, ttl_days, cluster)
    return _create_table(spec, f"{table}_local" if cluster else table)


def _create_table(spec: TableSpec, table: str) -> str:
    target = f"{quote_identifier(spec.database)}.{quote_identifier(table)}"
    comment = not (spec.cluster and spec.profile == "legacy")  # see column_definition
    lines = [column_definition(field, spec.profile, comment=comment) for field in spec.fields]
    if spec.profile == "seed":
        body = ",\n    ".join(lines)
        return (
            f"CREATE TABLE IF NOT EXISTS {target}{spec.on_cluster} (\n    {body}\n)"
            f" ENGINE = {_engine(spec, table)}\n"
            "ORDER BY (timestamp, spec_id)\n"
            f"TTL timestamp + INTERVAL {spec.ttl_days} DAY"
        )
    if spec.profile == "legacy":  # no TTL, skip indexes or table settings before 19.6
        body = ",\n    ".join(lines)
        window = f"\nSETTINGS {_REPLICATED_WINDOW}" if spec.cluster else ""
        return (
            f"CREATE TABLE IF NOT EXISTS {target}{spec.on_cluster} (\n    {body}\n)"
            f" ENGINE = {_engine(spec, table)}\n"
            "PARTITION BY toYYYYMM(timestamp)\n"
            f"ORDER BY (spec_id, timestamp){window}"
        )
    indexes = [
        f"INDEX {name} {column} TYPE {kind} GRANULARITY {granularity}"
        for name, column, kind, granularity in (*_SEED_INDEXES, *_TEXT_INDEXES)
    ]
    body = ",\n    ".join(lines + indexes)
    settings = "ttl_only_drop_parts = 1"
    if spec.cluster:  # replicated tables deduplicate by themselves, over this many blocks
        settings = f"{_REPLICATED_WINDOW}, {settings}"
    else:
        settings = f"non_replicated_deduplication_window = {DEDUPLICATION_WINDOW}, {settings}"
    return (
        f"CREATE TABLE IF NOT EXISTS {target}{spec.on_cluster} (\n    {body}\n)"
        f" ENGINE = {_engine(spec, table)}\n"
        "PARTITION BY toYYYYMM(timestamp)\n"
        "ORDER BY (spec_id, timestamp)\n"
        f"TTL toDateTime(timestamp) + INTERVAL {spec.ttl_days} DAY\n"
        f"SETTINGS {settings}"
    )


def render_statements(spec: TableSpec) -> list[str]:
    """Every statement that creates the database and table of ``spec``, in order.

    All are idempotent (``IF NOT EXISTS``): running them again changes nothing.
    """
    statements = [create_database_sql(spec.database, spec.cluster)]
    local = f"{spec.table}_local" if spec.cluster else spec.table
    statements.append(_create_table(spec, local))
    if spec.profile == "seed":  # the specification adds its indexes with ALTER (§3.4)
        local_target = f"{quote_identifier(spec.database)}.{quote_identifier(local)}"
        statements.extend(
            f"ALTER TABLE {local_target}{spec.on_cluster} ADD INDEX IF NOT EXISTS "
            f"{name} ({column}) TYPE {kind} GRANULARITY {granularity}"
            for name, column, kind, granularity in _SEED_INDEXES
        )
    if spec.cluster:
        statements.append(
            f"CREATE TABLE IF NOT EXISTS {spec.target}{spec.on_cluster} "
            f"AS {quote_identifier(spec.database)}.{quote_identifier(local)} "
            f"ENGINE = Distributed({quote_identifier(spec.cluster)}, "
            f"{quote_identifier(spec.database)}, {quote_identifier(local)}, {SHARDING_KEY})"
        )
    if spec.profile != "seed":  # the seed profile is the specification's table, nothing more
        statements.extend(
            view_statements(
                spec.database, spec.table, spec.cluster, json_attributes=spec.profile == "legacy"
            )
        )
    return statements


#: Characters of stdout/stderr a view shows per row: enough to see the error, never megabytes.
EXCERPT_CHARS: Final = 2000


def view_statements(
    database: str = "genesis",
    table: str = "logs",
    cluster: str | None = None,
    *,
    json_attributes: bool = False,
) -> list[str]:
    """Views for the questions an assistant asks, over ``database.table``.

    ``failures``: every failing run and test, with bounded excerpts (the end of stderr and
    stdout) instead of megabytes of text. ``last_iterations``: each spec's latest run.
    ``flaky_tests``: tests that passed and failed on the same code (the same code hash).
    With ``json_attributes`` the ``attributes`` column is JSON text and the SQL is what
    old servers run (the legacy profile).
    """
    on_cluster = f" ON CLUSTER {quote_identifier(cluster)}" if cluster else ""
    db, source = (
        quote_identifier(database),
        f"{quote_identifier(database)}.{quote_identifier(table)}",
    )

    def attribute(key: str) -> str:
        if json_attributes:
            return f"visitParamExtractString(attributes, {quote_string(key)})"
        return f"attributes[{quote_string(key)}]"

    def tail(column: str) -> str:
        if json_attributes:  # 18.16's substringUTF8 takes constant offsets only
            return (
                f"reverseUTF8(substringUTF8(reverseUTF8({column}), 1, {EXCERPT_CHARS})) "
                f"AS {column}_tail"
            )
        return (
            f"substringUTF8({column}, toUInt64(greatest(1, toInt64(lengthUTF8({column})) - "
            f"{EXCERPT_CHARS - 1}))) AS {column}_tail"
        )

    return [
        f"CREATE VIEW IF NOT EXISTS {db}.failures{on_cluster} AS SELECT timestamp, spec_id, "
        f"iteration, logger, message, exit_code, duration_ms, {tail('stderr')}, "
        f"{tail('stdout')}, sprint_id, task_id FROM {source} WHERE exit_code != 0",
        f"CREATE VIEW IF NOT EXISTS {db}.last_iterations{on_cluster} AS SELECT spec_id, "
        "max(iteration) AS last_iteration, argMax(exit_code, (iteration, timestamp)) AS "
        "exit_code, argMax(duration_ms, (iteration, timestamp)) AS duration_ms, "
        "max(timestamp) AS last_run_at, count() AS runs "
        f"FROM {source} WHERE logger = 'genesis.run' GROUP BY spec_id",
        f"CREATE VIEW IF NOT EXISTS {db}.flaky_tests{on_cluster} AS SELECT spec_id, "
        f"{attribute('test')} AS test, {attribute('code_hash')} AS code_hash, "
        f"groupUniqArray({attribute('outcome')}) AS outcomes, groupUniqArray(iteration) AS "
        f"iterations FROM {source} WHERE logger = 'genesis.pytest' AND {attribute('kind')} = "
        f"'test' AND {attribute('code_hash')} != '' GROUP BY spec_id, test, code_hash "
        "HAVING has(outcomes, 'passed') AND (has(outcomes, 'failed') OR has(outcomes, 'error'))",
    ]


def readonly_user_statements(
    user: str, password: str, database: str = "genesis", cluster: str | None = None
) -> list[str]:
    """The read-only user of §3.6 for the assistant: ``SELECT`` on the database only."""
    on_cluster = f" ON CLUSTER {quote_identifier(cluster)}" if cluster else ""
    who = quote_identifier(user)
    return [
        f"CREATE USER IF NOT EXISTS {who}{on_cluster} IDENTIFIED WITH sha256_password "
        f"BY {quote_string(password)} SETTINGS readonly = 1",
        f"GRANT{on_cluster} SELECT ON {quote_identifier(database)}.* TO {who}",
    ]
