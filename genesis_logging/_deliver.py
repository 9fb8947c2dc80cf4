"""Delivering one batch: insert with the retry policy, isolate poisoned rows, spool on failure.

The deliverer answers with an :class:`~._queue.Outcome` and touches no counter: the queue
counts, the reporter warns.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence

from ._batch import Batch, Note, Outcome
from ._codec import Row
from ._faults import is_row_error, is_transient
from ._policies import RetryPolicy
from .spool import Spool
from .transport import Inserter

__all__ = ["Deliverer"]

_FAILURE_KINDS = {
    "delivery_failed": "gave up after retries",
    "permanent_error": "permanent error, not retried",
}


class Deliverer:
    """Inserts batches through ``inserter``; what cannot be delivered goes to ``spool``.

    Args:
        inserter: the seam to the database.
        retry: the retry policy for transient errors.
        spool: where undeliverable rows go (``None``: they are dropped, with a reason).
        abort: set at shutdown; cuts retries and backoffs short.
        describe: turns an error into one line without secrets.
        on_retry: called before each retry's pause with the error.
    """

    def __init__(
        self,
        inserter: Inserter,
        retry: RetryPolicy,
        spool: Spool | None,
        abort: threading.Event,
        describe: Callable[[BaseException], str],
        on_retry: Callable[[BaseException], None],
    ) -> None:
        self.inserter = inserter
        self._retrying = retry.retrying(abort, on_retry)
        self._spool = spool
        self._describe = describe

    def deliver(self, batch: Batch) -> Outcome:
        """Insert ``batch``; never raises."""
        outcome = Outcome()
        self._insert(batch.rows, batch.id, outcome)
        missing = getattr(self.inserter, "missing_columns", None)
        if missing:
            outcome.notes.append(
                Note(
                    "missing_columns",
                    f"the table has no column for {', '.join(missing)}: those fields are not stored",
                    once=True,
                )
            )
        return outcome

    def _insert(self, rows: list[Row], token: str, outcome: Outcome) -> None:
        try:
            self._retrying(self.inserter.insert, rows, token)
        except Exception as error:
            if not is_row_error(error):
                transient = is_transient(error)
                self._failed(
                    rows,
                    token,
                    error,
                    "delivery_failed" if transient else "permanent_error",
                    outcome,
                )
            elif len(rows) > 1:  # some rows poison the batch: split until only they are left out
                middle = len(rows) // 2
                self._insert(rows[:middle], f"{token}a", outcome)
                self._insert(rows[middle:], f"{token}b", outcome)
            else:
                message = self._describe(error)
                outcome.error = message
                outcome.failed_batches += 1
                outcome.dropped["bad_row"] += 1
                outcome.notes.append(
                    Note(
                        "bad_row",
                        f"1 record not delivered (the server refused this row): {message}",
                    )
                )
        else:
            outcome.sent += len(rows)

    def _failed(
        self, rows: list[Row], token: str, error: Exception, reason: str, outcome: Outcome
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

    def spool(self, batch: Batch, reason: str) -> Outcome:
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
        try:
            evicted = self._spool.write(rows, token)
        except OSError as error:
            outcome.dropped["spool_failed"] += len(rows)
            outcome.spool["write_failures"] += 1
            outcome.error = f"spool: {error}"
            outcome.notes.append(
                Note("spool_failed", f"{len(rows)} records could not be spooled: {error}")
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
