"""genesis-logging: every run of an AI-driven TDD loop as a structured log record.

JSON lines on the console with zero infrastructure, and the same records in ClickHouse.
"""

import importlib
from typing import TYPE_CHECKING, Any

from ._version import __version__

if TYPE_CHECKING:  # for type checkers and IDEs; at run time each name loads on first use
    from .asgi import DeliverOnShutdown
    from .attach import attach_handler
    from .backend import Backend, Fault
    from .configure import setup_logging
    from .context import ContextFilter, current_context, log_context
    from .errors import ConfigurationError, DeliveryWarning, GenesisLoggingWarning
    from .formatter import GenesisJsonFormatter
    from .handler import ClickHouseHandler
    from .local_store import LocalStoreHandler
    from .runner import RunResult, log_step, run_and_log
    from .schema import FIELDS, Field
    from .settings import ConnectionSettings
    from .signals import exit_on_sigterm, flush_handlers, install_drain_hooks
    from .transport import ClickHouseInserter, Inserter

#: Where each public name lives. Loaded on first use (PEP 562), so that the console track —
#: or pytest loading our plugin — does not import the ClickHouse driver.
_EXPORTS: dict[str, str] = {
    "Backend": ".backend",
    "Fault": ".backend",
    "ClickHouseHandler": ".handler",
    "ClickHouseInserter": ".transport",
    "ConfigurationError": ".errors",
    "ConnectionSettings": ".settings",
    "ContextFilter": ".context",
    "DeliverOnShutdown": ".asgi",
    "DeliveryWarning": ".errors",
    "FIELDS": ".schema",
    "Field": ".schema",
    "GenesisJsonFormatter": ".formatter",
    "GenesisLoggingWarning": ".errors",
    "Inserter": ".transport",
    "LocalStoreHandler": ".local_store",
    "RunResult": ".runner",
    "attach_handler": ".attach",
    "current_context": ".context",
    "exit_on_sigterm": ".signals",
    "flush_handlers": ".signals",
    "install_drain_hooks": ".signals",
    "log_context": ".context",
    "log_step": ".runner",
    "run_and_log": ".runner",
    "setup_logging": ".configure",
}


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(module, __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(__all__)


__all__ = [
    "FIELDS",
    "Backend",
    "ClickHouseHandler",
    "ClickHouseInserter",
    "ConfigurationError",
    "ConnectionSettings",
    "ContextFilter",
    "DeliverOnShutdown",
    "DeliveryWarning",
    "Fault",
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
    "flush_handlers",
    "install_drain_hooks",
    "log_context",
    "log_step",
    "run_and_log",
    "setup_logging",
]
