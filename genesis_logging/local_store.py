"""Writing the local store: a directory of JSON-lines files, one per process.

Where the directory is (:func:`local_log_dir`, relative to the project's root), the
handler that writes it (:class:`LocalStoreHandler`), and the iteration numbers handed
out to concurrent runs (:func:`reserve_iteration`). Reading it is :mod:`genesis_logging.store`.
"""

from __future__ import annotations

import logging
import logging.handlers
import os
import socket
from pathlib import Path
from typing import Any, Final

from .errors import ConfigurationError

__all__ = [
    "PROJECT_MARKERS",
    "LocalStoreHandler",
    "local_log_dir",
    "project_root",
    "reserve_iteration",
]

#: What marks a project's root folder: a relative ``GENESIS_LOG_DIR`` starts there.
PROJECT_MARKERS: Final = ("pyproject.toml", "setup.cfg", "setup.py", ".git")


def project_root(start: str | os.PathLike[str] | None = None) -> Path:
    """The nearest folder from ``start`` (default the cwd) up holding a project marker.

    Markers are :data:`PROJECT_MARKERS`; with none up to ``/``, ``start`` itself, so a
    relative store path means the same folder from anywhere inside one project.
    """
    here = Path(start if start is not None else os.getcwd()).absolute()
    for folder in (here, *here.parents):
        if any((folder / marker).exists() for marker in PROJECT_MARKERS):
            return folder
    return here


def local_log_dir(explicit: str | os.PathLike[str] | None = None) -> Path | None:
    """``explicit``, else ``$GENESIS_LOG_DIR``, else ``None``; always absolute.

    An explicit (``--log-dir``) relative path is relative to the cwd, as any command-line
    path is. A relative ``$GENESIS_LOG_DIR`` is relative to :func:`project_root`, so an
    ``export GENESIS_LOG_DIR=.genesis/logs`` names one store from every subfolder of
    the project (the CLI, :class:`LocalStoreHandler` and the pytest plugin agree).
    """
    if explicit:
        return Path(explicit).absolute()
    value = os.environ.get("GENESIS_LOG_DIR")
    if not value:
        return None
    path = Path(value).expanduser()
    return path if path.is_absolute() else project_root() / path


class LocalStoreHandler(logging.handlers.RotatingFileHandler):
    """Append genesis JSON lines to ``<log_dir>/genesis-<host>-<pid>.jsonl``, rotated by size.

    Args:
        log_dir: the store's directory (default ``$GENESIS_LOG_DIR``); created if missing.
        max_bytes: size at which a file is rotated (``.1``, ``.2`` … are kept).
        backup_count: rotated files kept per process.
        service, version: as for :class:`GenesisJsonFormatter`.
    """

    def __init__(
        self,
        log_dir: str | os.PathLike[str] | None = None,
        *,
        max_bytes: int = 64 * 1024 * 1024,
        backup_count: int = 10,
        service: str | None = None,
        version: str | None = None,
    ) -> None:
        directory = local_log_dir(log_dir)
        if directory is None:
            raise ConfigurationError("LocalStoreHandler needs log_dir or GENESIS_LOG_DIR")
        try:
            directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        except OSError as error:
            raise ConfigurationError(f"log_dir {directory}: {error}") from None
        name = f"genesis-{socket.gethostname()}-{os.getpid()}.jsonl"
        super().__init__(
            directory / name,
            maxBytes=max_bytes,
            backupCount=backup_count,
            encoding="utf-8",
            delay=True,
        )
        from .formatter import GenesisJsonFormatter  # here: the readers do not need it

        self.setFormatter(GenesisJsonFormatter(service=service, version=version))

    def _open(self) -> Any:
        """The file, private to its user (``0600``): records carry output, tracebacks,
        code and environment fragments."""
        descriptor = os.open(self.baseFilename, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        return open(descriptor, "a", encoding=self.encoding, errors=self.errors)


def reserve_iteration(directory: Path, spec: str, recorded: int) -> int:
    """The next iteration of ``spec`` in a local store, reserved for the caller.

    A run writes its record when it ends, so two runs started together would both see
    the same last iteration; the numbers handed out are kept in ``.index/iterations.json``
    under an ``flock``, and the next one is past both the recorded and the reserved.
    """
    import fcntl
    import json

    folder = directory / ".index"
    folder.mkdir(mode=0o700, parents=True, exist_ok=True)
    path = folder / "iterations.json"
    descriptor = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    with open(descriptor, "r+", encoding="utf-8") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)  # released when the file is closed
        try:
            reserved = json.loads(handle.read() or "{}")
        except ValueError:
            reserved = {}
        if not isinstance(reserved, dict):
            reserved = {}
        last = reserved.get(spec)
        number = max(recorded, last if isinstance(last, int) else 0) + 1
        reserved[spec] = number
        handle.seek(0)
        handle.truncate()
        handle.write(json.dumps(reserved))
    return number
