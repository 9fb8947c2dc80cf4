"""Which delivery errors are worth retrying."""

from __future__ import annotations

import socket
import struct
from typing import Final

from clickhouse_driver import errors

__all__ = ["is_row_error", "is_transient"]

#: Server error codes that say "try again later", not "this can never work".
TRANSIENT_SERVER_CODES: Final = frozenset(
    {
        3,  # UNEXPECTED_END_OF_FILE
        32,  # ATTEMPT_TO_READ_AFTER_EOF
        159,  # TIMEOUT_EXCEEDED
        173,  # CANNOT_ALLOCATE_MEMORY
        202,  # TOO_MANY_SIMULTANEOUS_QUERIES
        203,  # NO_FREE_CONNECTION
        209,  # SOCKET_TIMEOUT
        210,  # NETWORK_ERROR
        236,  # ABORTED
        241,  # MEMORY_LIMIT_EXCEEDED
        242,  # TABLE_IS_READ_ONLY
        252,  # TOO_MANY_PARTS
        279,  # ALL_CONNECTION_TRIES_FAILED
        285,  # TOO_FEW_LIVE_REPLICAS
        319,  # UNKNOWN_STATUS_OF_INSERT
        394,  # QUERY_WAS_CANCELLED
        425,  # SYSTEM_ERROR
        439,  # CANNOT_SCHEDULE_TASK
        999,  # KEEPER_EXCEPTION
    }
)

_TRANSIENT_TYPES: Final = (
    EOFError,  # the driver's answer to a connection closed mid-query
    OSError,  # ConnectionError, socket.timeout, refused, reset, unreachable
    socket.timeout,
    errors.NetworkError,
    errors.SocketTimeoutError,
    errors.UnexpectedPacketFromServerError,
    errors.UnknownPacketFromServerError,
)


def is_transient(error: BaseException) -> bool:
    """True for network failures, timeouts and server overload; False for the rest.

    Authentication failures, unknown databases or tables and type mismatches are
    permanent: retrying them only adds load.
    """
    if isinstance(error, _TRANSIENT_TYPES):
        return True
    if isinstance(error, errors.Error):
        return error.code in TRANSIENT_SERVER_CODES
    return False


#: Server error codes that blame the data of some rows, not the connection or the table.
ROW_ERROR_SERVER_CODES: Final = frozenset({6, 26, 27, 38, 41, 53, 69, 70, 72, 117, 131, 349})


def is_row_error(error: BaseException) -> bool:
    """True when some rows of a batch cannot be inserted but others could be.

    The driver raises plain Python errors while serialising a value its column type
    cannot hold (a table column narrower than the record's); the server names bad data
    with its own codes. Splitting the batch isolates the offending rows.
    """
    if isinstance(error, (TypeError, ValueError, OverflowError, UnicodeError, struct.error)):
        return not isinstance(error, errors.Error)
    if isinstance(error, errors.Error):
        return error.code in ROW_ERROR_SERVER_CODES
    return False
