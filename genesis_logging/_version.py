"""The package version: the one place it is written (read by the build and at runtime)."""

__version__ = "0.1.0"
