"""What a delivery error means, in the words every backend shares.

A backend sorts its own errors into three kinds (:meth:`Backend.classify
<genesis_logging.backend.Backend.classify>`); retries, bisection, the spool and the replayer
act on the kind only. ClickHouse's codes live in its inserter (``transport.py``).
"""

from __future__ import annotations

import enum
from collections.abc import Callable

__all__ = ["Classify", "Fault", "classify_by_type"]


class Fault(enum.Enum):
    """The three answers the pipeline acts on."""

    #: Try again later: the network, a timeout, an overloaded or full destination.
    TRANSIENT = "transient"
    #: Some rows of the batch can never be stored, the others can: split the batch.
    REFUSED_ROWS = "refused_rows"
    #: Retrying adds only load (a bad password, no such table): spool or drop at once.
    PERMANENT = "permanent"


Classify = Callable[[BaseException], Fault]


def classify_by_type(error: BaseException) -> Fault:
    """The default of every backend: network and timeout errors are transient; the rest
    permanent (no backend-specific knowledge; no row is blamed)."""
    if isinstance(error, (OSError, EOFError, TimeoutError)):
        return Fault.TRANSIENT
    return Fault.PERMANENT
