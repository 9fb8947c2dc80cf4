"""The local store as chDB sees it: the view ``genesis.logs`` over its files, and the
data path the official MCP server opens (``<log_dir>/.chdb``)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Final

from .ddl import quote_string, view_statements
from .schema import FIELDS, Kind

__all__ = ["CHDB_SUBDIR", "chdb_session", "create_view", "prepare_mcp_data_path"]

CHDB_SUBDIR: Final = ".chdb"
_EMPTY_FILE: Final = "genesis-empty.jsonl"  # keeps the view's glob matching in an empty store


def _structure() -> str:
    types = {Kind.TIMESTAMP: "DateTime64(3, 'UTC')", Kind.STRING_MAP: "Map(String, String)"}
    return ", ".join(f"{f.name} {types.get(f.kind, f.clickhouse_type)}" for f in FIELDS)


def chdb_session(path: str) -> Any:
    from chdb import session as chdb_session_module

    chdb_session: Any = chdb_session_module  # untyped third-party API
    return chdb_session.Session(path)


def create_view(session: Any, directory: Path) -> None:
    """(Re)create the view ``genesis.logs`` over the JSON-lines files in ``directory``."""
    (directory / _EMPTY_FILE).touch()
    pattern = quote_string(str(directory / "*.jsonl*"))
    session.query("CREATE DATABASE IF NOT EXISTS genesis")
    session.query(
        "CREATE OR REPLACE VIEW genesis.logs AS SELECT * FROM "
        f"file({pattern}, 'JSONEachRow', {quote_string(_structure())}) "
        "SETTINGS date_time_input_format = 'best_effort'"
    )
    for statement in view_statements("genesis", "logs"):  # the assistant's views
        session.query(statement)


def prepare_mcp_data_path(log_dir: str | os.PathLike[str]) -> tuple[Path, bool]:
    """Create ``genesis.logs`` in ``<log_dir>/.chdb``, the chDB path the MCP server opens.

    Returns the path and whether it was prepared now. A running MCP server holds the
    path's lock; the path was then prepared before that server started, so it is left
    alone (``False``).
    """
    directory = Path(log_dir).resolve()
    path = directory / CHDB_SUBDIR
    if _locked_by_another_process(path):
        return path, False
    session = chdb_session(str(path))
    try:
        create_view(session, directory)
    finally:
        session.close()
    return path, True


def _locked_by_another_process(chdb_path: Path) -> bool:
    """Whether a chDB (or ClickHouse) process holds ``<chdb_path>/status``'s ``flock``."""
    import fcntl

    try:
        descriptor = os.open(chdb_path / "status", os.O_RDONLY)
    except FileNotFoundError:
        return False
    try:
        fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    else:
        fcntl.flock(descriptor, fcntl.LOCK_UN)
        return False
    finally:
        os.close(descriptor)
