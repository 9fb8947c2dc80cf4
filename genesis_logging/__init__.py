"""genesis-logging: every run of an AI-driven TDD loop as a structured log record.

JSON lines on the console with zero infrastructure, and the same records in ClickHouse.
"""

from ._version import __version__
from .attach import attach_handler
from .configure import setup_logging
from .context import ContextFilter, current_context, log_context
from .errors import ConfigurationError, DeliveryWarning, GenesisLoggingWarning
from .formatter import GenesisJsonFormatter
from .handler import ClickHouseHandler
from .runner import RunResult, log_step, run_and_log
from .schema import FIELDS, Field
from .settings import ConnectionSettings
from .signals import exit_on_sigterm
from .store import LocalStoreHandler
from .transport import ClickHouseInserter, Inserter

__all__ = [
    "FIELDS",
    "ClickHouseHandler",
    "ClickHouseInserter",
    "ConfigurationError",
    "ConnectionSettings",
    "ContextFilter",
    "DeliveryWarning",
    "Field",
    "GenesisJsonFormatter",
    "GenesisLoggingWarning",
    "Inserter",
    "LocalStoreHandler",
    "RunResult",
    "__version__",
    "attach_handler",
    "current_context",
    "exit_on_sigterm",
    "log_context",
    "log_step",
    "run_and_log",
    "setup_logging",
]
