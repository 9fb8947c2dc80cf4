"""Shared fixtures: a clean logging state per test, and a capturing JSON logger."""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from typing import Any

import pytest

from tests.support.captured import Captured, make_captured


@pytest.fixture(autouse=True)
def _reset_logging() -> Iterator[None]:
    """Give every test the logging configuration it started with."""
    manager = logging.Logger.manager
    root = logging.getLogger()
    saved_root = (list(root.handlers), root.level, list(root.filters))
    saved_loggers = {
        name: (list(lg.handlers), lg.level, lg.propagate, lg.disabled, list(lg.filters))
        for name, lg in manager.loggerDict.items()
        if isinstance(lg, logging.Logger)
    }
    yield
    root.handlers[:], root.level, root.filters[:] = saved_root
    for name, lg in list(manager.loggerDict.items()):
        if not isinstance(lg, logging.Logger):
            continue
        if name in saved_loggers:
            lg.handlers[:], lg.level, lg.propagate, lg.disabled, lg.filters[:] = saved_loggers[
                name
            ]
        else:
            lg.handlers.clear()
            lg.filters.clear()
            lg.setLevel(logging.NOTSET)
            lg.propagate = True
            lg.disabled = False


@pytest.fixture
def captured() -> Captured:
    """A DEBUG logger with a :class:`GenesisJsonFormatter` writing to memory."""
    return make_captured()


@pytest.fixture(scope="session")
def chdb_session(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """Today's ClickHouse engine in-process (chDB); one session for the whole run.

    In memory, as the local store's own sessions are: chDB runs one engine per process,
    and it refuses a second data path (``EmbeddedServer already initialized``)."""
    from chdb import session as chdb_session_module

    chdb = chdb_session_module.Session(":memory:")
    yield chdb
    chdb.close()


# -- real ClickHouse servers ---------------------------------------------------------------

from tests.support.server import (  # noqa: E402
    LocalServer,
    Target,
    external_target,
    start_local_server,
)

_TARGETS = ["local", *(["external"] if external_target() is not None else [])]


@pytest.fixture(scope="session")
def local_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalServer]:
    """Debian's clickhouse-server, started by the suite; tests may kill and restart it."""
    server = start_local_server(tmp_path_factory.mktemp("clickhouse"))
    yield server
    server.stop()


@pytest.fixture
def running_local_server(local_server: LocalServer) -> LocalServer:
    """The local server, (re)started if an earlier test left it down."""
    if not local_server.running:
        local_server.start()
    return local_server


@pytest.fixture(params=_TARGETS)
def clickhouse(request: pytest.FixtureRequest) -> Target:
    """Every server the integration tests must pass against."""
    if request.param == "external":
        target = external_target()
        assert target is not None
        return target
    server: LocalServer = request.getfixturevalue("running_local_server")
    return Target("local", server.host, server.port, local=server)


_table_counter = iter(range(1, 1_000_000))


@pytest.fixture
def logs_table(clickhouse: Target) -> tuple[Target, str, str]:
    """A fresh table with the record schema: (target, database, table)."""
    table = f"logs_{os.getpid()}_{next(_table_counter)}"
    clickhouse.create_logs_table("genesis_test", table)
    return clickhouse, "genesis_test", table


@pytest.fixture(params=["local", "server"])
def store_env(request: pytest.FixtureRequest, tmp_path: Any) -> dict[str, str]:
    """Where the loop logs and reads: the local store, or the real test server."""
    if request.param == "local":
        return {"GENESIS_LOG_DIR": str(tmp_path / "logs")}
    server: LocalServer = request.getfixturevalue("running_local_server")
    target = Target("local", server.host, server.port)
    database = f"loop_{os.getpid()}_{abs(hash(str(tmp_path))) % 100000}"
    target.create_logs_table(database, "logs")
    return {"CLICKHOUSE_URL": target.url(database)}
