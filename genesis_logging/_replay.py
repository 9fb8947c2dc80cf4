"""Replaying the spool: one file at a time, in chunks, with the backoff policy.

Used by the handler's worker, by ``genesis-logging spool replay``; its chunking also by
``genesis-logging load``.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass

from ._codec import Row
from ._faults import is_transient
from ._policies import ReplayBackoff
from .spool import Spool, SpoolFile

__all__ = ["Insert", "ReplayReport", "SpoolReplayer", "chunks", "insert_in_chunks"]

Insert = Callable[[Sequence[Row], "str | None"], None]


def chunks(rows: Iterable[Row], size: int) -> Iterator[list[Row]]:
    """``rows`` in lists of ``size`` at most."""
    chunk: list[Row] = []
    for row in rows:
        chunk.append(row)
        if len(chunk) >= size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


def insert_in_chunks(insert: Insert, rows: Iterable[Row], size: int, batch_id: str) -> int:
    """Insert ``rows`` ``size`` at a time, each chunk with its own deduplication token.

    Rows that fit in one chunk keep ``batch_id`` itself (the token of the live attempt);
    otherwise chunk tokens are ``<batch_id>-<offset>``, never reusing the batch's token
    for different rows. Returns the rows inserted; the first error is raised.
    """
    done = 0
    pending = chunks(rows, size)
    chunk = next(pending, None)
    while chunk is not None:
        following = next(pending, None)
        single = done == 0 and following is None
        insert(chunk, batch_id if single else f"{batch_id}-{done}")
        done += len(chunk)
        chunk = following
    return done


@dataclass(frozen=True)
class ReplayReport:
    """What one replay attempt did."""

    file: SpoolFile
    rows: int = 0  # rows delivered
    unreadable: int = 0  # lines that could not be read back
    error: BaseException | None = None
    transient: bool = True
    buried: bool = False  # set aside in dead/
    retry_in: float = 0.0


class SpoolReplayer:
    """Delivers spooled files, oldest first, through ``insert``.

    Args:
        spool: the directory.
        insert: ``insert(rows, token)``, raising on failure.
        batch_size: rows per insert.
        backoff: when to try again and when to give a file up.
    """

    def __init__(
        self, spool: Spool, insert: Insert, *, batch_size: int, backoff: ReplayBackoff
    ) -> None:
        self.spool = spool
        self._insert = insert
        self._batch_size = batch_size
        self._backoff = backoff
        self.next_at = time.monotonic()  # when to look into the spool next

    def due(self, now: float) -> bool:
        return now >= self.next_at

    def soon(self) -> None:
        """Something was spooled: look within the idle interval."""
        self.next_at = min(self.next_at, time.monotonic() + self._backoff.idle)

    def replay_one(self) -> ReplayReport | None:
        """Deliver the oldest due file once; ``None`` when no file is due."""
        try:
            entry = self.spool.claim()
        except OSError:
            entry = None
        if entry is None:
            self.next_at = time.monotonic() + self._backoff.idle
            return None
        try:
            rows, unreadable = self.spool.read(entry)
            insert_in_chunks(self._insert, rows, self._batch_size, entry.batch_id)
        except Exception as error:
            return self._failed(entry, error)
        self.spool.complete(entry)
        self.next_at = time.monotonic()  # more may wait: go on at once
        return ReplayReport(entry, rows=len(rows), unreadable=unreadable)

    def _failed(self, entry: SpoolFile, error: Exception) -> ReplayReport:
        """Put the file back with a backoff; after repeated permanent failures, aside."""
        transient = isinstance(error, OSError) or is_transient(error)
        delay = self._backoff.delay(transient=transient, failures=entry.failures)
        buried = self._backoff.buries(transient=transient, failures=entry.failures)
        try:
            if buried:
                self.spool.bury(entry)
            else:
                self.spool.release(entry, retry_in=delay, failed=not transient)
        except OSError:
            pass  # a claim left behind is recovered once this process has gone
        self.next_at = time.monotonic() + delay
        return ReplayReport(entry, error=error, transient=transient, buried=buried, retry_in=delay)
