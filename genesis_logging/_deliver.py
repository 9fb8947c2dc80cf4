"""Delivering one batch: insert with the retry policy, isolate poisoned rows, spool on failure.

The deliverer answers with an :class:`~._batch.Outcome` and touches no counter: the queue
counts, the reporter warns. It knows the destination only through the backend seam: its
``classify`` decides what is retried, split or given up, ``limit_time`` bounds an insert
at exit, ``missing_columns`` is reported.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable, Sequence
from typing import Final

from ._batch import Batch, Note, Outcome
from ._codec import Row
from ._faults import Fault
from ._inserts import PartialInsertError, insert_isolating
from ._policies import RetryPolicy
from .backend import Backend
from .spool import BatchTooLargeError, Spool
from .transport import Inserter, as_backend

_PARTS_PER_CAP: Final = 8  # a batch over the spool cap is written in parts this small

__all__ = ["Deliverer"]

_FAILURE_KINDS = {
    "delivery_failed": "gave up after retries",
    "permanent_error": "permanent error, not retried",
}


class Deliverer:
    """Inserts batches through ``inserter``; what cannot be delivered goes to ``spool``.

    Args:
        inserter: the seam to the database (a plain :class:`Inserter` is wrapped).
        retry: the retry policy for transient errors.
        spool: where undeliverable rows go (``None``: they are dropped, with a reason).
        abort: set at shutdown; cuts retries and backoffs short.
        describe: turns an error into one line without secrets.
        on_retry: called before each retry's pause with the error.
    """

    def __init__(
        self,
        inserter: Backend | Inserter,
        retry: RetryPolicy,
        spool: Spool | None,
        abort: threading.Event,
        describe: Callable[[BaseException], str],
        on_retry: Callable[[BaseException], None],
    ) -> None:
        self.inserter = backend = as_backend(inserter)
        self.deadline = math.inf  # set while delivering inline at interpreter exit
        self._retrying = retry.retrying(
            abort,
            on_retry,
            lambda: self.deadline,
            transient=lambda error: backend.classify(error) is Fault.TRANSIENT,
        )
        self._spool = spool
        self._describe = describe

    def deliver(self, batch: Batch[Row]) -> Outcome:
        """Insert ``batch``; never raises. Past the deadline, spool it without trying."""
        if time.monotonic() >= self.deadline:
            return self.spool(batch, "shutdown")
        self.inserter.limit_time(self.deadline)
        outcome = Outcome()
        self._insert(batch.rows, batch.id, outcome)
        missing = self.inserter.missing_columns
        if missing:
            outcome.notes.append(
                Note(
                    "missing_columns",
                    f"the table has no column for {', '.join(missing)}: those fields are not stored",
                    once=True,
                )
            )
        return outcome

    def _insert(self, rows: Sequence[Row], token: str, outcome: Outcome) -> None:
        def insert(part: Sequence[Row], part_token: str | None) -> None:
            self._retrying(self.inserter.insert, part, part_token)

        try:
            done = insert_isolating(insert, rows, token, classify=self.inserter.classify)
        except PartialInsertError as partial:
            done = partial.done
            error = partial.error
            transient = self.inserter.classify(error) is Fault.TRANSIENT
            reason = "delivery_failed" if transient else "permanent_error"
            self._failed(partial.unsent, token, error, reason, outcome)
        outcome.sent += done.sent
        for _, error in done.refused:  # one refused row costs that row only
            message = self._describe(error)
            outcome.error = message
            outcome.failed_batches += 1
            outcome.dropped["bad_row"] += 1
            text = f"1 record not delivered (the destination refused this row): {message}"
            outcome.notes.append(Note("bad_row", text))

    def _failed(
        self, rows: Sequence[Row], token: str, error: BaseException, reason: str, outcome: Outcome
    ) -> None:
        message = self._describe(error)
        outcome.error = message
        outcome.failed_batches += 1
        outcome.permanent = outcome.permanent or reason == "permanent_error"
        spooled = self._store(rows, token, reason, outcome)
        where = "spooled to disk" if spooled else "not delivered"
        outcome.notes.append(
            Note(reason, f"{len(rows)} records {where} ({_FAILURE_KINDS[reason]}): {message}")
        )

    def _write_in_parts(
        self, spool: Spool, rows: Sequence[Row], token: str, offset: int, written: list[int]
    ) -> int:
        """Write ``rows``; a batch larger than the cap (the queue left at ``close()``) in
        parts of an eighth of the cap, so eviction keeps nearly a cap's worth of the newest
        rows. Parts keep the batch identity, with their offset. Returns the rows evicted
        to make room; adds the rows written to ``written[0]`` (a failure midway counts
        what is on disk)."""
        try:
            evicted = spool.write(rows, token, offset=offset)
        except BatchTooLargeError as too_large:
            if len(rows) < 2:
                raise
            parts = min(len(rows), -(-too_large.size * _PARTS_PER_CAP // too_large.cap))
        else:
            written[0] += len(rows)
            return evicted
        step = -(-len(rows) // parts)
        evicted = 0
        for start in range(0, len(rows), step):
            part = rows[start : start + step]
            evicted += self._write_in_parts(spool, part, token, offset + start, written)
        return evicted

    def spool(self, batch: Batch[Row], reason: str) -> Outcome:
        """Put ``batch`` on disk without trying the server (overflow, shutdown, rescue)."""
        outcome = Outcome()
        if not self._store(batch.rows, batch.id, reason, outcome) and self._spool is None:
            outcome.notes.append(
                Note(reason, f"{len(batch.rows)} records not delivered ({reason})", force=True)
            )
        return outcome

    def _store(self, rows: Sequence[Row], token: str, reason: str, outcome: Outcome) -> bool:
        """Write rows to the spool; count them as ``reason`` when there is none."""
        if self._spool is None:
            outcome.dropped[reason] += len(rows)
            return False
        written = [0]
        try:
            evicted = self._write_in_parts(self._spool, rows, token, 0, written)
        except OSError as error:
            lost = len(rows) - written[0]
            outcome.spooled += written[0]
            outcome.spool["written_rows"] += written[0]
            outcome.dropped["spool_failed"] += lost
            outcome.spool["write_failures"] += 1
            outcome.error = f"spool: {error}"
            outcome.notes.append(
                Note("spool_failed", f"{lost} records could not be spooled: {error}")
            )
            return False
        outcome.spooled += len(rows)
        outcome.spool["written_rows"] += len(rows)
        if evicted:
            outcome.spool["evicted_rows"] += evicted
            outcome.notes.append(
                Note("spool_evicted", f"spool full: {evicted} oldest spooled records evicted")
            )
        return True

    def close(self) -> None:
        self.inserter.close()
