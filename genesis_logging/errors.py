"""Exceptions and warnings of the package."""

from __future__ import annotations

__all__ = ["ConfigurationError", "DeliveryWarning", "GenesisLoggingWarning"]


class ConfigurationError(ValueError):
    """An option is invalid; raised when a handler is built, never in a logging call."""


class GenesisLoggingWarning(UserWarning):
    """Base class of every warning this package issues."""


class DeliveryWarning(GenesisLoggingWarning):
    """Records could not be delivered (yet): server down, permanent error, drops."""
