"""Exactly-once on retry, proven on today's engine: same batch + same token = one copy."""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import Any

from genesis_logging.ddl import create_database_sql
from genesis_logging.schema import FIELDS
from genesis_logging.spool import Spool
from tests.support.captured import make_captured


def spooled_lines(tmp_path: Path) -> tuple[str, str]:
    """A batch as the handler spools it: its identity and its JSONEachRow text."""
    captured = make_captured("dedup")
    rows = []
    for i in range(5):
        record = logging.LogRecord("dedup", logging.ERROR, "p", 1, "run %d failed", (i,), None)
        record.__dict__.update(spec_id="spec_001", iteration=i, exit_code=1)
        rows.append(captured.formatter.record_converter.convert(record))
    spool = Spool(tmp_path)
    batch_id = "ab" * 16
    spool.write(rows, batch_id)
    (name,) = os.listdir(tmp_path)
    return batch_id, (tmp_path / name).read_text()


def test_same_token_inserts_once(chdb_session: Any, tmp_path: Path) -> None:
    columns = ", ".join(f"{f.name} {f.clickhouse_type}" for f in FIELDS)
    chdb_session.query(create_database_sql("genesis"))
    chdb_session.query("DROP TABLE IF EXISTS genesis.dedup")
    chdb_session.query(
        f"CREATE TABLE genesis.dedup ({columns}) ENGINE = MergeTree ORDER BY (spec_id, timestamp) "
        "SETTINGS non_replicated_deduplication_window = 1000"
    )
    batch_id, lines = spooled_lines(tmp_path)
    insert = (
        f"INSERT INTO genesis.dedup SETTINGS insert_deduplication_token = '{batch_id}' "
        "FORMAT JSONEachRow\n"
    )
    chdb_session.query(insert + lines)
    chdb_session.query(insert + lines)  # the retry after a connection broke mid-insert
    count = json.loads(
        str(chdb_session.query("SELECT count() AS n FROM genesis.dedup", "JSONEachRow"))
    )
    assert count["n"] == 5
    other = insert.replace(batch_id, "cd" * 16)
    chdb_session.query(other + lines)  # a different batch identity is a different batch
    count = json.loads(
        str(chdb_session.query("SELECT count() AS n FROM genesis.dedup", "JSONEachRow"))
    )
    assert count["n"] == 10
