"""How rows go into an insert function: in chunks with their own tokens, and with the rows
a destination refuses isolated by bisection. Shared by the live path, the spool replayer
and ``genesis-logging load``; pure functions over ``insert(rows, token)`` and the
backend's ``classify``, which says which errors blame rows.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field

from ._codec import Row
from ._faults import Classify, Fault, classify_by_type

__all__ = [
    "Insert",
    "Inserted",
    "PartialInsertError",
    "chunks",
    "insert_in_chunks",
    "insert_isolating",
]

Insert = Callable[[Sequence[Row], "str | None"], None]


@dataclass
class Inserted:
    """Rows committed, and rows the server refused (each with its error)."""

    sent: int = 0
    refused: list[tuple[Row, BaseException]] = field(default_factory=list)


class PartialInsertError(Exception):
    """An error that is not about rows stopped the insert; ``unsent`` were not tried."""

    def __init__(
        self, error: BaseException, done: Inserted, unsent: list[Row], offset: int = 0
    ) -> None:
        super().__init__(str(error))
        self.error = error
        self.done = done
        self.unsent = unsent
        self.offset = offset  # where the unsent rows start, in the batch's numbering


def insert_isolating(
    insert: Insert,
    rows: Sequence[Row],
    token: str,
    done: Inserted | None = None,
    *,
    classify: Classify = classify_by_type,
) -> Inserted:
    """Insert ``rows``; when ``classify`` blames rows (``Fault.REFUSED_ROWS``), split until
    only the refused ones are left out.

    Halves get the tokens ``<token>a`` / ``<token>b`` (and so on), so a retried half is
    recognised by servers that deduplicate.

    Raises:
        PartialInsertError: an error that is not about rows (the server went away); it says
            what was committed and which rows were not tried.
    """
    done = done if done is not None else Inserted()
    pending = [(0, len(rows), token)]  # a stack: the next range to try is on top
    while pending:
        low, high, part = pending.pop()
        try:
            insert(rows if high - low == len(rows) else rows[low:high], part)
        except Exception as error:
            if classify(error) is not Fault.REFUSED_ROWS:
                unsent = [
                    row for a, b, _ in [(low, high, part), *reversed(pending)] for row in rows[a:b]
                ]
                raise PartialInsertError(error, done, unsent) from error
            if high - low == 1:
                done.refused.append((rows[low], error))
                continue
            middle = (low + high) // 2
            pending += [(middle, high, f"{part}b"), (low, middle, f"{part}a")]
        else:
            done.sent += high - low
    return done


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


def insert_in_chunks(
    insert: Insert,
    rows: Iterable[Row],
    size: int,
    token: str,
    *,
    offset: int = 0,
    classify: Classify = classify_by_type,
) -> Inserted:
    """Insert ``rows`` ``size`` at a time, isolating refused rows in each chunk.

    Rows that fit in one chunk (at ``offset`` 0) keep ``token`` itself, the token of the
    live attempt; otherwise each chunk's token is ``<token>-<offset of its first row>``,
    so a chunk retried after a fault is recognised and different rows never share one.

    Raises:
        PartialInsertError: with every row not committed, this chunk's and the later ones'.
    """
    done = Inserted()
    pending = chunks(rows, size)
    chunk = next(pending, None)
    position = offset
    while chunk is not None:
        following = next(pending, None)
        single = position == 0 and following is None
        try:
            part = token if single else f"{token}-{position}"
            insert_isolating(insert, chunk, part, done, classify=classify)
        except PartialInsertError as partial:
            rest = [row for later in ([following] if following else []) for row in later]
            rest += [row for later in pending for row in later]
            unsent = partial.unsent + rest
            raise PartialInsertError(partial.error, done, unsent, position) from partial.error
        position += len(chunk)
        chunk = following
    return done
