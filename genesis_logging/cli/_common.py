"""What every command shares: the error type, connection and store options, rendering."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable
from typing import Any, TextIO

from genesis_logging._warnings import describe_error
from genesis_logging.errors import ConfigurationError
from genesis_logging.settings import ConnectionSettings
from genesis_logging.store import QueryResult, ServerStore, Store, open_store

from ._output import render

__all__ = [
    "CommandError",
    "add_format_option",
    "add_url_option",
    "connection_settings",
    "describe",
    "iteration_argument",
    "number_argument",
    "open_log_store",
    "query_once",
    "require_spec",
    "show_result",
    "store_options",
    "text_argument",
    "warn_if_password_in_argv",
]


class CommandError(Exception):
    """A failure to report in plain words, with exit status 1 (never a traceback)."""


def describe(error: BaseException, settings: ConnectionSettings | None = None) -> str:
    """One line about ``error``, without a server stack trace or the password."""
    return describe_error(error, secret=settings.password if settings is not None else "")


def add_url_option(parser: argparse.ArgumentParser, *, writes: bool) -> None:
    action = "write to" if writes else "read from"
    parser.add_argument(
        "--url",
        help=f"{action} this ClickHouse server (default: $CLICKHOUSE_URL, then "
        "$CLICKHOUSE_HOST, _PORT, _USER, _PASSWORD, _SECURE, _DATABASE)",
    )


def connection_settings(url: str | None) -> ConnectionSettings:
    """The server of ``--url`` (else the environment); a password in ``--url`` is warned
    about: every user of the machine can read a command line."""
    try:
        settings = ConnectionSettings.resolve(url=url)
    except ConfigurationError as error:
        raise CommandError(str(error)) from None
    warn_if_password_in_argv(url)
    return settings


def warn_if_password_in_argv(url: str | None) -> None:
    """Every user of the machine can read a command line: say so when ``--url`` holds a
    password (the password itself is never printed)."""
    from urllib.parse import urlsplit

    try:
        has_password = bool(url and urlsplit(url).password)
    except ValueError:
        has_password = False
    if has_password:
        sys.stderr.write(
            "genesis-logging: warning: the password in --url is visible in the process list "
            "to every user of this machine; pass it in CLICKHOUSE_PASSWORD (or the whole URL "
            "in CLICKHOUSE_URL) instead\n"
        )


def store_options(*, writes: bool) -> argparse.ArgumentParser:
    """``--url`` / ``--log-dir`` for commands that read (or, for ``run``, write) logs."""
    options = argparse.ArgumentParser(add_help=False)
    add_url_option(options, writes=writes)
    action = "write the run to" if writes else "read"
    options.add_argument(
        "--log-dir", help=f"{action} the local store in this directory (default: $GENESIS_LOG_DIR)"
    )
    return options


def add_format_option(parser: argparse.ArgumentParser, *choices: str) -> None:
    formats = choices or ("table", "json", "csv")
    parser.add_argument(
        "--format", choices=formats, default=formats[0], help="how to print the result"
    )


def open_log_store(args: argparse.Namespace) -> Store:
    """The store of ``--url`` / ``--log-dir`` (or the environment), ready to read.

    A server is asked once for its table's columns: a refusal is a plain-words error; a
    table that lacks columns is read degraded, and what that costs (with the ``ALTER``
    statements that add them) is said once, on stderr.
    """
    warn_if_password_in_argv(getattr(args, "url", None))
    try:
        store = open_store(url=getattr(args, "url", None), log_dir=getattr(args, "log_dir", None))
    except ConfigurationError as error:
        raise CommandError(str(error)) from None
    except Exception as error:
        raise CommandError(f"cannot open the log store: {describe(error)}") from None
    if isinstance(store, ServerStore):
        try:
            store.check()
            notice = store.notice()
        except ConfigurationError as error:
            store.close()
            raise CommandError(str(error)) from None
        except Exception as error:
            store.close()
            raise CommandError(f"query failed on {store.name}: {describe(error)}") from None
        if notice:
            sys.stderr.write(notice + "\n")
    return store


def require_spec(store: Store, spec: str) -> None:
    """Raise "no runs for spec X" with the nearest known names when ``spec`` is unknown."""
    import difflib

    try:
        known = store.specs()
    except Exception as error:
        raise CommandError(f"query failed on {store.name}: {describe(error)}") from None
    if spec in known:
        return
    near = difflib.get_close_matches(spec, known, n=3, cutoff=0.5)
    hint = f"; did you mean {', '.join(near)}?" if near else ""
    shown = f"known specs: {', '.join(known[:10])}{' …' if len(known) > 10 else ''}"
    raise CommandError(
        f"no runs for spec {spec!r} in {store.name}{hint} ({shown if known else 'the store is empty'})"
    )


def query_once(
    store: Store, sql: str, params: dict[str, Any], *, readonly: bool = False
) -> QueryResult:
    """Run one query and close the store; a failure is a plain-words error."""
    try:
        return store.query(sql, params, readonly=readonly)
    except Exception as error:
        raise CommandError(f"query failed on {store.name}: {describe(error)}") from None
    finally:
        store.close()


def show_result(
    args: argparse.Namespace,
    out: TextIO,
    store: Store,
    sql: str,
    params: dict[str, Any],
    *,
    readonly: bool = False,
) -> int:
    result = query_once(store, sql, params, readonly=readonly)
    render(result.columns, result.rows, args.format, out, colour=out.isatty())
    return 0


def spool_directory(explicit: str | None) -> str:
    directory = explicit or os.environ.get("GENESIS_SPOOL_DIR")
    if not directory:
        raise CommandError("no spool directory: pass --spool-dir or set GENESIS_SPOOL_DIR")
    if not os.path.isdir(directory):
        raise CommandError(f"spool directory {directory} does not exist")
    return directory


def text_argument(what: str) -> Callable[[str], str]:
    """A parser type refusing an empty value: ``--spec ""`` is a mistake, not an id."""

    def check(value: str) -> str:
        if not value.strip():
            raise argparse.ArgumentTypeError(f"{what} must not be empty")
        return value

    return check


def iteration_argument(value: str) -> str:
    if value == "auto" or (value.isdigit() and value.isascii()):
        return value
    raise argparse.ArgumentTypeError(f"{value!r} is not a whole number >= 0 or 'auto'")


def number_argument(kind: Callable[[str], float], least: float, what: str) -> Callable[[str], Any]:
    """A parser type for a number of at least ``least``."""

    def check(value: str) -> Any:
        try:
            number: float | None = kind(value)
        except ValueError:
            number = None
        if number is None or number < least or number != number:  # NaN
            raise argparse.ArgumentTypeError(f"{value!r} is not {what}")
        return number

    return check
