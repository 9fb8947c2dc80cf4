"""Today's ClickHouse reads what we send: the insert's Native block — the handler's columns
(``ColumnBuilder``), as clickhouse-driver writes them for the socket — read by chDB
(ClickHouse 26) into each profile's table, equal to today's conversion of each record.

No current server runs on these machines; the block writer is the driver's own
(``BlockOutputStream`` over its ``BufferedSocketWriter``), with a socket that collects
the bytes and a server revision of 0, so no TCP packet framing surrounds the block.
"""

from __future__ import annotations

import json
import logging
import re
from pathlib import Path
from typing import Any

import pytest
from clickhouse_driver import Client
from clickhouse_driver.block import ColumnOrientedBlock
from clickhouse_driver.bufferedwriter import BufferedSocketWriter
from clickhouse_driver.connection import ServerInfo
from clickhouse_driver.streams.native import BlockOutputStream

from genesis_logging._codec import Row
from genesis_logging._columns import ColumnBlock, ColumnBuilder
from genesis_logging._convert import RecordConverter
from genesis_logging.ddl import create_database_sql, create_table_sql
from genesis_logging.schema import FIELDS_BY_NAME
from genesis_logging.settings import ConnectionSettings
from genesis_logging.transport import ClickHouseInserter
from tests.support.server import legacy_table_sql

KEEP = 200 * 365  # days: the TTL must not drop the rows from 1900 on insert


class CollectingSocket:
    """Stands in for the server's socket: keeps what the driver sends."""

    def __init__(self) -> None:
        self.data = bytearray()

    def sendall(self, data: bytes) -> None:
        self.data += data


def native_block(columns_with_types: list[tuple[str, str]], columns: list[list[Any]]) -> bytes:
    """The block exactly as the driver writes it for ``client.execute(..., columnar=True)``."""
    client = Client("localhost")  # never connected: its context and settings are what we need
    context = client.connection.context
    context.server_info = ServerInfo("chdb", 26, 0, 0, 0, "UTC", "chdb", used_revision=0)
    socket = CollectingSocket()
    writer = BufferedSocketWriter(socket, 1 << 20)
    block = ColumnOrientedBlock(columns_with_types, columns, types_check=False)
    BlockOutputStream(writer, context).write(block)
    return bytes(socket.data)


def table_ddl(profile: str, table: str) -> str:
    if profile == "old-server":
        return legacy_table_sql("wire", table)  # no TTL there
    if profile == "cluster":  # the local table's columns, without ZooKeeper
        ddl = create_table_sql("wire", table, ttl_days=KEEP, cluster="c")
        ddl = ddl.replace(f"{table}_local", table)
        ddl = ddl.replace(" ON CLUSTER c", "")
        return re.sub(r"ReplicatedMergeTree\([^)]*\)", "MergeTree()", ddl)
    return create_table_sql("wire", table, profile=profile, ttl_days=KEEP)


def hostile_batch() -> tuple[ColumnBlock, list[Row]]:
    """What the handler sends for hostile records (captured, then columns in the worker),
    and what today's one-pass conversion makes of them."""
    converter = RecordConverter(max_field_chars=2 * 1024 * 1024)
    logger = logging.getLogger("wire")

    def row(msg: str, created: float, **extra: Any) -> logging.LogRecord:
        record = logger.makeRecord(
            "wire.ü", logging.ERROR, __file__, 1, msg, None, None, extra=extra
        )
        record.created = created
        return record

    ordinary = [
        row(f"ordinary {i}", 1_764_078_555.5 + i, spec_id="spec_001", iteration=3, topic="t")
        for i in range(3)
    ]  # the columns' fast path, beside the records that need rules
    hostile = [
        row(
            "ünïcödé ✓ 🚀 \u2028 line separator", 1_764_078_555.123, spec_id="spec_ü", iteration=1
        ),
        row("lone \ud800 surrogate", 0.0, stderr="bad \udfff tail", exit_code=-11),
        row("a megabyte", 1e-3, stdout="x" * 1_000_000, code_snapshot="y" * 1_000_000),
        row("many attributes", 10_413_791_999.0, **{f"k{i}": f"v{i}" for i in range(500)}),
        row("out of range", -2_208_988_800.0, iteration=2**40, exit_code="abc", duration_ms=-5),
        row("before the epoch", -86_400.5, sprint_id="S030", task_id="T01", version="1.2"),
    ]
    records = ordinary + hostile
    block = ColumnBuilder(converter).build([converter.capture(r) for r in records])
    reference = RecordConverter(max_field_chars=2 * 1024 * 1024)
    return block, [reference.convert(r) for r in records]


def expected(row: Row, name: str, column_type: str) -> Any:
    value = row.get(name, FIELDS_BY_NAME[name].default)
    if name == "timestamp" and not column_type.startswith("DateTime64"):
        return min(max(value // 1000, 0), 2**32 - 1)  # whole seconds, DateTime's range
    if name == "attributes" and column_type == "String":
        return json.dumps(value, ensure_ascii=False, separators=(",", ":"))
    return value


@pytest.mark.parametrize("profile", ["seed", "default", "cluster", "old-server"])
def test_chdb_reads_the_drivers_block(chdb_session: Any, tmp_path: Path, profile: str) -> None:
    table = f"logs_{profile.replace('-', '_')}"
    chdb_session.query(create_database_sql("wire"))
    chdb_session.query(f"DROP TABLE IF EXISTS wire.{table}")
    chdb_session.query(table_ddl(profile, table))
    answer = chdb_session.query(f"DESCRIBE TABLE wire.{table}", "JSONCompactEachRow")
    described = [json.loads(line)[:2] for line in str(answer).splitlines()]
    inserter = ClickHouseInserter(ConnectionSettings(database="wire"), table)
    inserter.learn(described)  # as on connecting: the plan comes from the table
    block, rows = hostile_batch()
    path = tmp_path / "block.native"
    path.write_bytes(native_block(inserter.column_types, inserter.to_columns(block)))

    names = ", ".join(inserter.columns)
    chdb_session.query(
        f"INSERT INTO wire.{table} ({names}) SELECT {names} FROM file('{path}', 'Native')"
    )
    types = dict(inserter.column_types)
    select = ", ".join(
        f"toUnixTimestamp64Milli({n}) AS {n}" if n == "timestamp" and types[n].startswith("DateTime64")
        else f"toUnixTimestamp({n}) AS {n}" if n == "timestamp"
        else n
        for n in inserter.columns
    )  # fmt: skip
    result = chdb_session.query(f"SELECT {select} FROM wire.{table}", "JSONEachRow")
    stored = sorted(
        (json.loads(line) for line in str(result).splitlines()), key=lambda r: r["message"]
    )
    assert len(stored) == len(rows)
    for row, back in zip(sorted(rows, key=lambda r: str(r["message"])), stored, strict=True):
        for name, column_type in inserter.column_types:
            assert back[name] == expected(row, name, column_type), (profile, name)
