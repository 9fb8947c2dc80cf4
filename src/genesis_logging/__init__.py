"""genesis-logging: every run of an AI-driven TDD loop as a structured log record.

JSON lines on the console with zero infrastructure, and the same records in ClickHouse.
"""

from ._version import __version__
from .attach import attach_handler
from .context import ContextFilter, current_context, log_context
from .formatter import GenesisJsonFormatter
from .schema import FIELDS, Field

__all__ = [
    "FIELDS",
    "ContextFilter",
    "Field",
    "GenesisJsonFormatter",
    "__version__",
    "attach_handler",
    "current_context",
    "log_context",
]
