"""The seam to a destination: :class:`Backend`, with every optional capability defaulted.

A new destination is one class: subclass :class:`Backend`, write ``insert`` (and ``close``
if it holds resources), and override only the hooks it has something to say in. The
pipeline calls every hook unconditionally, so nothing is looked up by name. An object
with only ``insert`` and ``close`` (the :class:`~genesis_logging.transport.Inserter`
protocol) still works: the pipeline wraps it (:func:`~genesis_logging.transport.as_backend`).
Sentry's ``Transport`` is built the same way.
"""

from __future__ import annotations

import abc
from collections.abc import Sequence

from ._codec import Row
from ._faults import Fault, classify_by_type

__all__ = ["Backend", "Fault"]


class Backend(abc.ABC):
    """Delivers batches of rows. Called from one thread only (the handler's worker).

    Attributes:
        missing_columns: record fields the destination does not store (a table without
            their columns); the deliverer warns once. Default: none.
    """

    missing_columns: Sequence[str] = ()

    @abc.abstractmethod
    def insert(self, rows: Sequence[Row], token: str | None = None) -> None:
        """Store all of ``rows`` or none of them, else raise (:meth:`classify` judges).

        ``rows`` is a sequence of row dicts (from the handler a ``ColumnBlock``, whose
        ``column(name)`` gives a field's values without making rows). ``token``
        identifies the batch across retries and replays: a destination that can
        deduplicate stores a repeated batch once.
        """

    def close(self) -> None:  # noqa: B027 - optional: a default, not abstract
        """Release connections or files; more ``insert`` calls may follow. Default: nothing."""

    def classify(self, error: BaseException) -> Fault:
        """What an error raised by :meth:`insert` means: retry it, split the batch to leave
        out the refused rows, or give up. Default: ``OSError``, ``EOFError`` and
        timeouts are transient, anything else permanent."""
        return classify_by_type(error)

    def limit_time(self, deadline: float) -> None:  # noqa: B027 - optional: a default
        """Let no wait of the next inserts outlast ``deadline`` (``time.monotonic()``;
        ``math.inf`` lifts the limit). Called before each batch; at interpreter exit the
        handler has a deadline. Default: nothing (an insert that cannot block)."""

    def renew(self) -> Backend:
        """The backend a forked child delivers through. Called in the child, right after
        ``fork()``; the parent's connections must be abandoned there, not closed (closing
        would cut the parent's). Default: this object (nothing to renew)."""
        return self
