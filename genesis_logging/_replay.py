"""Replaying the spool: one file at a time, in chunks, with the backoff policy.

Used by the handler's worker, by ``genesis-logging spool replay``; its chunking also by
``genesis-logging load``.
"""

from __future__ import annotations

import contextlib
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass

from ._batch import Note
from ._faults import Fault
from ._inserts import Insert, Inserted, PartialInsertError, insert_in_chunks
from ._policies import ReplayBackoff
from .backend import Backend
from .spool import Spool, SpoolFile
from .transport import Inserter, as_backend

__all__ = ["ReplayReport", "SpoolReplayer"]


@dataclass(frozen=True)
class ReplayReport:
    """What one replay attempt did."""

    file: SpoolFile
    rows: int = 0  # rows delivered
    unreadable: int = 0  # lines that could not be read back
    refused: int = 0  # rows the server refused, set aside in dead/
    error: BaseException | None = None
    transient: bool = True
    buried: bool = False  # set aside in dead/
    retry_in: float = 0.0

    def counts(self) -> dict[str, int]:
        """What to add to the spool counters."""
        return {
            "replayed_rows": self.rows,
            "unreadable_lines": self.unreadable,
            "dead_letter_rows": self.refused + (self.file.rows if self.buried else 0),
        }

    def notes(self, describe: Callable[[BaseException], str]) -> list[Note]:
        """What a person should hear about this attempt."""
        notes = []
        if self.refused:
            text = f"{self.refused} spooled records refused by the server, set aside in dead/"
            notes.append(Note("dead_letter", text, force=True))
        if self.error is None:
            return notes
        message = describe(self.error)
        if self.buried:
            text = (
                f"spool file set aside in dead/ after repeated permanent failures ({message}); "
                "'genesis-logging spool replay --dead' retries it"
            )
            notes.append(Note("dead_letter", text, force=True))
        text = f"replaying the spool failed, next try in {self.retry_in:.0f}s: {message}"
        notes.append(Note("replay_failed", text))
        return notes


class SpoolReplayer:
    """Delivers spooled files, oldest first, through a backend.

    Args:
        spool: the directory.
        backend: the destination; its ``classify`` says which rows go to ``dead/`` and
            which failures are transient (a plain inserter or ``insert(rows, token)``
            function is wrapped).
        batch_size: rows per insert.
        backoff: when to try again and when to give a file up.
    """

    def __init__(
        self,
        spool: Spool,
        backend: Backend | Inserter | Insert,
        *,
        batch_size: int,
        backoff: ReplayBackoff,
    ) -> None:
        self.spool = spool
        self._backend = as_backend(backend)
        self._batch_size = batch_size
        self._backoff = backoff
        self.next_at = time.monotonic()  # when to look into the spool next

    def due(self, now: float) -> bool:
        return now >= self.next_at

    def soon(self) -> None:
        """Something was spooled: look within the idle interval."""
        self.next_at = min(self.next_at, time.monotonic() + self._backoff.idle)

    def replay_one(
        self, *, skip: frozenset[str] = frozenset(), due_only: bool = True
    ) -> ReplayReport | None:
        """Deliver the oldest due file once (not those of the batches in ``skip``; any
        file, due or not, unless ``due_only``); ``None`` when there is none."""
        try:
            entry = self.spool.claim(skip=skip, due_only=due_only)
        except OSError:
            entry = None
        if entry is None:
            self.next_at = time.monotonic() + self._backoff.idle
            return None
        try:
            rows, unreadable = self.spool.read(entry)
        except OSError as error:
            return self._failed(entry, error, transient=True)  # the disk, not the backend
        try:
            backend = self._backend
            done = insert_in_chunks(
                backend.insert,
                rows,
                self._batch_size,
                entry.batch_id,
                offset=entry.offset,
                classify=backend.classify,
            )
        except PartialInsertError as partial:
            # Keep only what was not delivered, so a fault costs no duplicates beyond the
            # chunk it hit (and none on servers that deduplicate: its token is kept).
            refused = self._set_aside(partial.done)
            rest = entry
            if partial.done.sent or refused:
                with contextlib.suppress(OSError):  # else the whole file stays: no loss
                    rest = self.spool.rewrite(entry, partial.unsent, partial.offset)
            report = self._failed(rest, partial.error)
            return ReplayReport(
                **{**report.__dict__, "rows": partial.done.sent, "refused": refused}
            )
        except Exception as error:
            return self._failed(entry, error)
        refused = self._set_aside(done)
        self.spool.complete(entry)
        self.next_at = time.monotonic()  # more may wait: go on at once
        return ReplayReport(entry, rows=done.sent, unreadable=unreadable, refused=refused)

    def _set_aside(self, done: Inserted) -> int:
        """Rows the destination refused go to dead/, for a person to look at."""
        if not done.refused:
            return 0
        rows = [row for row, _ in done.refused]
        try:
            self.spool.write(rows, uuid.uuid4().hex, dead=True)
        except OSError:
            return 0
        return len(rows)

    def _failed(
        self, entry: SpoolFile, error: BaseException, *, transient: bool | None = None
    ) -> ReplayReport:
        """Put the file back with a backoff; after repeated permanent failures, aside.
        The backend judges its own errors (``transient`` overrides: the spool's)."""
        if transient is None:
            transient = self._backend.classify(error) is Fault.TRANSIENT
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
