"""DDL for ``genesis.logs``, rendered from the one record schema."""

from __future__ import annotations

import re

from .schema import FIELDS, Field

__all__ = ["column_definitions", "create_database_sql", "create_table_sql", "quote_identifier"]

_PLAIN_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")


def quote_identifier(name: str) -> str:
    """Quote a database or table name for ClickHouse; plain names stay readable."""
    if _PLAIN_IDENTIFIER.match(name):
        return name
    return "`" + name.replace("\\", "\\\\").replace("`", "\\`") + "`"


def _column(field: Field) -> str:
    ch_type = field.clickhouse_type
    if field.name == "timestamp":
        return f"{field.name} {ch_type} DEFAULT now64(3)"
    if field.name == "service":
        return f"{field.name} {ch_type} DEFAULT '{field.default}'"
    return f"{field.name} {ch_type}"


def column_definitions() -> list[str]:
    """One ``name Type [DEFAULT ...]`` per field, in schema order."""
    return [_column(field) for field in FIELDS]


def create_database_sql(database: str = "genesis") -> str:
    """``CREATE DATABASE IF NOT EXISTS``."""
    return f"CREATE DATABASE IF NOT EXISTS {quote_identifier(database)}"


def create_table_sql(database: str = "genesis", table: str = "logs", *, ttl_days: int = 90) -> str:
    """The specification's table (§3.4) with every field of the record schema."""
    if ttl_days < 1:
        raise ValueError("ttl_days must be at least 1")
    columns = ",\n    ".join(column_definitions())
    return (
        f"CREATE TABLE IF NOT EXISTS {quote_identifier(database)}.{quote_identifier(table)} (\n"
        f"    {columns}\n"
        ") ENGINE = MergeTree()\n"
        "ORDER BY (timestamp, spec_id)\n"
        f"TTL toDateTime(timestamp) + INTERVAL {int(ttl_days)} DAY"
    )
