"""A new destination is one class: a second backend gets retries, bisection, the spool and
renewal after fork through the seam alone (``genesis_logging.backend.Backend``).

``JsonLinesBackend`` is not a mock: it appends JSON lines to a real file, and its faults are
real conditions of the file system (``/dev/full`` says "no space left"; a directory where the
file should be cannot be opened), judged by its own ``classify``.
"""

from __future__ import annotations

import errno
import json
import logging
import math
import os
import select
import signal
import warnings
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest
from clickhouse_driver import errors

from genesis_logging import ClickHouseHandler, DeliveryWarning
from genesis_logging._codec import Row
from genesis_logging.backend import Backend, Fault
from genesis_logging.settings import ConnectionSettings
from genesis_logging.spool import Spool
from genesis_logging.transport import ClickHouseInserter, Inserter, as_backend
from tests.support.fakes import wait_until


class LineTooLongError(Exception):
    """A row whose line is longer than the destination takes (a log shipper's limit)."""


class JsonLinesBackend(Backend):
    """Appends one JSON line per row to ``path``, every row of an insert or none.

    Args:
        path: the file (followed if it is a symlink).
        max_line_bytes: a longer line is refused, that row only.
        unstored: fields this destination leaves out (reported as missing columns).
    """

    def __init__(
        self, path: Path, *, max_line_bytes: int = 100_000, unstored: Sequence[str] = ()
    ) -> None:
        self.path = path
        self.max_line_bytes = max_line_bytes
        self.missing_columns = tuple(unstored)
        self.attempts = 0
        self.failures: list[OSError] = []
        self.deadlines: list[float] = []
        self.closed = 0

    def insert(self, rows: Sequence[Row], token: str | None = None) -> None:
        self.attempts += 1
        lines = []
        for index in range(len(rows)):  # a ColumnBlock makes a row when asked for one
            row = {k: v for k, v in rows[index].items() if k not in self.missing_columns}
            line = json.dumps(row, default=str, sort_keys=True)
            if len(line.encode()) > self.max_line_bytes:
                raise LineTooLongError(f"a line of {len(line.encode())} bytes")
            lines.append(line + "\n")
        try:
            with open(self.path, "ab", buffering=0) as file:
                file.write("".join(lines).encode())
        except OSError as error:
            self.failures.append(error)
            raise

    def close(self) -> None:
        self.closed += 1

    def classify(self, error: BaseException) -> Fault:
        if isinstance(error, LineTooLongError):
            return Fault.REFUSED_ROWS
        if isinstance(error, OSError) and error.errno in (errno.ENOSPC, errno.EDQUOT):
            return Fault.TRANSIENT  # space comes back
        return Fault.PERMANENT  # a directory in the way, no permission: a person must act

    def limit_time(self, deadline: float) -> None:
        self.deadlines.append(deadline)

    def renew(self) -> JsonLinesBackend:
        """A forked child writes its own file."""
        child = self.path.with_name(f"{self.path.stem}.{os.getpid()}{self.path.suffix}")
        return type(self)(child, max_line_bytes=self.max_line_bytes)

    def messages(self, path: Path | None = None) -> list[str]:
        text = (path or self.path).read_text()
        return [json.loads(line)["message"] for line in text.splitlines()]


@pytest.fixture(autouse=True)
def _quiet_delivery_warnings() -> Iterator[None]:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeliveryWarning)
        yield


def make(backend: Backend | Inserter, **options: Any) -> tuple[ClickHouseHandler, logging.Logger]:
    """A handler delivering through ``backend``, and a logger of its own (outside the tree)."""
    handler = ClickHouseHandler(inserter=backend, **{"flush_interval": 0.01, **options})
    logger = logging.Logger(f"seam.{id(handler)}", logging.DEBUG)
    logger.addHandler(handler)
    return handler, logger


class TestThroughTheSeam:
    """Retries, bisection and giving up follow the backend's own classification."""

    def test_a_full_disk_is_retried_until_space_comes_back(self, tmp_path: Path) -> None:
        target = tmp_path / "out.jsonl"
        target.symlink_to("/dev/full")  # every write: ENOSPC
        backend = JsonLinesBackend(target)
        handler, logger = make(backend)
        for n in range(5):
            logger.info("r%d", n)
        wait_until(lambda: len(backend.failures) >= 1)
        target.unlink()  # space again: the next attempt creates a regular file
        assert handler.drain(20)
        stats = handler.stats()
        handler.close()
        assert backend.failures[0].errno == errno.ENOSPC
        assert stats["retries"] >= 1
        assert (stats["sent"], stats["dropped"]) == (5, {})
        assert backend.messages() == [f"r{n}" for n in range(5)]  # each once

    def test_a_refused_row_costs_that_row_only(self, tmp_path: Path) -> None:
        backend = JsonLinesBackend(tmp_path / "out.jsonl", max_line_bytes=2000)
        handler, logger = make(backend, batch_size=8, flush_interval=60.0)
        for n in range(8):
            logger.info("x" * 5000 if n == 3 else f"r{n}")
        assert handler.drain(20)
        stats = handler.stats()
        handler.close()
        assert (stats["sent"], stats["dropped"], stats["retries"]) == (7, {"bad_row": 1}, 0)
        assert backend.messages() == [f"r{n}" for n in range(8) if n != 3]
        assert backend.attempts > 1  # split until the refused row stood alone

    def test_its_permanent_errors_are_not_retried(self, tmp_path: Path) -> None:
        target = tmp_path / "out.jsonl"
        target.mkdir()  # a directory where the file should be
        backend = JsonLinesBackend(target)
        handler, logger = make(backend, retry_attempts=8)
        for n in range(3):
            logger.info("r%d", n)
        assert handler.drain(20)
        stats = handler.stats()
        handler.close()
        assert isinstance(backend.failures[0], IsADirectoryError)
        assert Backend.classify(backend, backend.failures[0]) is Fault.TRANSIENT  # the default
        assert (backend.attempts, stats["retries"]) == (1, 0)  # ... not what it said
        assert stats["dropped"] == {"permanent_error": 3}

    def test_spooled_rows_come_back_and_a_refused_one_goes_to_dead(self, tmp_path: Path) -> None:
        target = tmp_path / "out.jsonl"
        target.mkdir()  # permanent at first: everything is spooled, the cooldown begins
        spool_dir = tmp_path / "spool"
        backend = JsonLinesBackend(target, max_line_bytes=2000)
        handler, logger = make(backend, spool_dir=spool_dir)
        for n in range(6):
            logger.info("x" * 5000 if n == 2 else f"r{n}")
        assert handler.drain(20)
        assert handler.stats()["spooled"] == 6
        target.rmdir()  # within the cooldown, before the replayer looks
        wait_until(lambda: handler.stats()["spool"]["replayed_rows"] == 5, timeout=60)
        stats = handler.stats()
        handler.close()
        assert stats["spool"]["dead_letter_rows"] == 1
        assert backend.messages() == [f"r{n}" for n in range(6) if n != 2]
        status = Spool(spool_dir).status()
        assert (status.files, status.dead_rows) == (0, 1)


class TestOptionalHooks:
    """Every hook the pipeline uses is declared, with a default, and called."""

    def test_the_defaults(self) -> None:
        class Minimal(Backend):
            def insert(self, rows: Sequence[Row], token: str | None = None) -> None:
                pass

        minimal = Minimal()
        minimal.close()
        minimal.limit_time(0.0)
        assert minimal.missing_columns == ()
        assert minimal.renew() is minimal
        assert minimal.classify(ConnectionResetError()) is Fault.TRANSIENT
        assert minimal.classify(TimeoutError()) is Fault.TRANSIENT
        assert minimal.classify(ValueError()) is Fault.PERMANENT
        assert minimal.classify(errors.ServerException("", code=252)) is Fault.PERMANENT
        with pytest.raises(TypeError):
            Backend()  # type: ignore[abstract]  # insert is the one method without one

    def test_the_time_limit_is_set_before_each_batch(self, tmp_path: Path) -> None:
        backend = JsonLinesBackend(tmp_path / "out.jsonl")
        handler, logger = make(backend)
        logger.info("one")
        assert handler.drain(10)
        handler.close()
        assert backend.deadlines[0] == math.inf  # no exit deadline while a worker runs

    def test_fields_it_does_not_store_are_reported_once(self, tmp_path: Path) -> None:
        backend = JsonLinesBackend(tmp_path / "out.jsonl", unstored=["logger"])
        handler, logger = make(backend)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", DeliveryWarning)
            logger.info("one")
            assert handler.drain(10)
            logger.info("two")
            handler.close()
        texts = [str(w.message) for w in caught if "no column for logger" in str(w.message)]
        assert len(texts) == 1
        assert "logger" not in (tmp_path / "out.jsonl").read_text()

    def test_a_forked_child_delivers_through_the_renewed_backend(self, tmp_path: Path) -> None:
        backend = JsonLinesBackend(tmp_path / "out.jsonl")
        handler, logger = make(backend)
        logger.info("parent")
        assert handler.drain(10)
        read_end, write_end = os.pipe()
        pid = os.fork()
        if pid == 0:  # the child
            try:
                logger.info("child")
                handler.close()
                os.write(write_end, b"1")
            finally:
                os._exit(0)
        os.close(write_end)
        ready, _, _ = select.select([read_end], [], [], 30)
        if not ready:
            os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
        assert ready, "the child hung"
        logger.info("parent again")
        handler.close()
        assert backend.messages() == ["parent", "parent again"]
        assert backend.messages(tmp_path / f"out.{pid}.jsonl") == ["child"]


class TestPlainInserters:
    """An object with only ``insert`` and ``close`` keeps working, judged as before."""

    class Plain:
        def __init__(self) -> None:
            self.rows: list[Row] = []
            self.closed = False

        def insert(self, rows: Sequence[Row], token: str | None = None) -> None:
            self.rows.extend(rows[i] for i in range(len(rows)))

        def close(self) -> None:
            self.closed = True

    def test_wrapped_with_the_defaults_and_clickhouse_s_judgement(self) -> None:
        plain = self.Plain()
        assert isinstance(plain, Inserter)
        backend = as_backend(plain)
        clickhouse = ClickHouseInserter(ConnectionSettings.resolve())
        assert as_backend(clickhouse) is clickhouse
        for code, fault in (
            (252, Fault.TRANSIENT),
            (27, Fault.REFUSED_ROWS),
            (60, Fault.PERMANENT),
        ):
            error = errors.ServerException("", code=code)
            assert backend.classify(error) is clickhouse.classify(error) is fault
        assert clickhouse.classify(OverflowError()) is Fault.REFUSED_ROWS  # the driver's
        assert backend.renew() is backend
        backend.close()
        assert plain.closed

    def test_delivers_through_a_handler(self) -> None:
        plain = self.Plain()
        handler, logger = make(plain)
        logger.info("plain")
        handler.close()
        assert [row["message"] for row in plain.rows] == ["plain"]
        assert handler.stats()["sent"] == 1
