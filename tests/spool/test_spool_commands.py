"""genesis-logging spool status | replay | purge, end to end in subprocesses."""

from __future__ import annotations

import json
import logging
import warnings
from pathlib import Path

import pytest

from genesis_logging import ClickHouseHandler, DeliveryWarning
from tests.support.fakes import run_cli as cli
from tests.support.server import WRITER_USER, LocalServer, Target


def spool_records(target: Target, spool_dir: Path, count: int) -> None:
    """Log ``count`` records while the server is down: they end in the spool."""
    handler = ClickHouseHandler(
        url=target.url("genesis_test"),
        table="cli",
        spool_dir=spool_dir,
        retry_attempts=1,
        batch_size=100,
        flush_interval=0.01,
        shutdown_timeout=0.5,
    )
    logger = logging.getLogger("cli.spool")
    logger.handlers[:] = [handler]
    logger.setLevel(logging.INFO)
    logger.propagate = False
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeliveryWarning)
        for i in range(count):
            logger.info("c%d", i)
        handler.close()
    assert handler.stats()["spooled"] == count


@pytest.mark.integration
def test_status_replay_purge(local_server: LocalServer, tmp_path: Path) -> None:
    if not local_server.running:
        local_server.start()
    target = Target("local", local_server.host, local_server.port)
    target.create_logs_table("genesis_test", "cli")
    spool_dir = tmp_path / "spool"
    local_server.stop()
    spool_records(target, spool_dir, 350)

    status = cli("spool", "status", "--spool-dir", str(spool_dir), "--format", "json")
    assert status.returncode == 0, status.stderr
    assert json.loads(status.stdout)["rows"] == 350

    local_server.start()
    wrong = cli(
        "spool",
        "replay",
        "--spool-dir",
        str(spool_dir),
        "--table",
        "cli",
        "--url",
        local_server.url(WRITER_USER, "not-the-password-42", "genesis_test"),
    )
    assert wrong.returncode == 1
    assert "stopped:" in wrong.stdout
    assert "not-the-password-42" not in wrong.stdout + wrong.stderr
    assert "Traceback" not in wrong.stderr

    replay = cli(
        "spool",
        "replay",
        "--spool-dir",
        str(spool_dir),
        "--table",
        "cli",
        env={"CLICKHOUSE_URL": target.url("genesis_test")},
    )
    assert replay.returncode == 0, replay.stdout + replay.stderr
    assert "replayed" in replay.stdout  # progress, file by file
    assert "done: 350 records delivered" in replay.stdout
    stored = target.client().execute("SELECT count(), uniqExact(message) FROM genesis_test.cli")
    assert stored == [(350, 350)]

    table = cli("spool", "status", "--spool-dir", str(spool_dir))
    assert "waiting: 0 files, 0 records" in table.stdout


def test_purge_needs_confirmation(tmp_path: Path) -> None:
    from genesis_logging.spool import Spool

    Spool(tmp_path).write([{"timestamp": 0, "level": "info", "message": "m"}], "0" * 32)
    refused = cli("spool", "purge", "--spool-dir", str(tmp_path))
    assert refused.returncode == 1
    assert "--yes" in refused.stderr
    done = cli("spool", "purge", "--spool-dir", str(tmp_path), "--yes")
    assert done.returncode == 0
    assert done.stdout.strip() == "purged 1 records"


def test_missing_spool_dir_is_a_plain_error(tmp_path: Path) -> None:
    result = cli("spool", "status", "--spool-dir", str(tmp_path / "nope"))
    assert result.returncode == 1
    assert "does not exist" in result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.integration
def test_replay_delivers_files_waiting_for_their_retry_time(
    local_server: LocalServer, tmp_path: Path
) -> None:
    """Issue 20.6: files released with a backoff (5 s after an outage, 60 s after a
    permanent error) were skipped and the command said "done: 0 records", exit 0."""
    from genesis_logging.spool import Spool

    if not local_server.running:
        local_server.start()
    target = Target("local", local_server.host, local_server.port)
    target.create_logs_table("genesis_test", "later")
    spool = Spool(tmp_path, destination=("genesis_test", "later"))
    spool.write([{"timestamp": 0, "level": "info", "message": "m"}] * 3, "a" * 32)
    claimed = spool.claim()
    assert claimed is not None
    spool.release(claimed, retry_in=60.0)  # as the handler's replayer leaves it
    done = cli(
        "spool", "replay", "--spool-dir", str(tmp_path), "--table", "later",
        env={"CLICKHOUSE_URL": target.url("genesis_test")},
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    assert "done: 3 records delivered" in done.stdout
    assert target.client().execute("SELECT count() FROM genesis_test.later") == [(3,)]


def test_replay_names_the_files_it_leaves_and_fails(tmp_path: Path) -> None:
    from genesis_logging.spool import Spool

    spool = Spool(tmp_path, destination=("genesis", "logs"))
    spool.write([{"timestamp": 0, "level": "info", "message": "m"}] * 2, "b" * 32)
    done = cli(
        "spool", "replay", "--spool-dir", str(tmp_path),
        env={"CLICKHOUSE_URL": "clickhouse://default@127.0.0.1:1/genesis"},  # nobody listens
    )  # fmt: skip
    assert done.returncode == 1
    assert "left in the spool: 1 files, 2 records" in done.stdout
    assert "b" * 32 in done.stdout
    assert "Traceback" not in done.stderr  # the driver's own log of the refused connection
    assert Spool(tmp_path).status().rows == 2
