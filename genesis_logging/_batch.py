"""A batch and its outcome: what the queue hands out and what it is told back."""

from __future__ import annotations

import uuid
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Generic, NamedTuple, TypeVar

__all__ = ["Batch", "Note", "Outcome", "new_batch"]

T = TypeVar("T", covariant=True)


@dataclass(frozen=True)
class Batch(Generic[T]):
    """Items delivered together, with the identity that makes retries idempotent.

    ``Batch[Snapshot]`` in the queue (what callers captured), ``Batch[Row]`` once the
    worker made its rows (a ``list``, or a ``ColumnBlock``: rows held column-wise).
    """

    id: str
    rows: Sequence[T]


def new_batch(rows: Sequence[T]) -> Batch[T]:
    return Batch(uuid.uuid4().hex, rows)


class Note(NamedTuple):
    """Something a person should hear about (a warning), with how often."""

    kind: str
    text: str
    force: bool = False  # every time, not once per interval
    once: bool = False  # once for the pipeline's life


@dataclass
class Outcome:
    """What became of a batch's rows; the deliverer fills it, the queue counts it."""

    sent: int = 0
    spooled: int = 0
    dropped: Counter[str] = field(default_factory=Counter)
    failed_batches: int = 0
    spool: Counter[str] = field(default_factory=Counter)  # written_rows, evicted_rows, ...
    notes: list[Note] = field(default_factory=list)
    error: str | None = None  # the last error met, described
    permanent: bool = False  # a permanent (not retried) error: cool down

    def accounted(self) -> int:
        return self.sent + self.spooled + sum(self.dropped.values())
