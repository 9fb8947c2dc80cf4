"""``genesis-logging run|load``: what writes records — a command run and logged, console
JSON lines inserted into a server.

Writing imports the handlers and the ClickHouse driver inside its command: the read
commands start without them.
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final, TextIO

from genesis_logging.errors import ConfigurationError
from genesis_logging.local_store import LocalStoreHandler, local_log_dir, reserve_iteration
from genesis_logging.store import LocalStore

from ._common import (
    CommandError,
    add_url_option,
    connection_settings,
    describe,
    iteration_argument,
    number_argument,
    open_log_store,
    store_options,
    text_argument,
)

if TYPE_CHECKING:
    from genesis_logging._codec import Row

__all__ = ["NO_STORE", "add_run_commands"]


# -- run ---------------------------------------------------------------------------------


#: Said before anything runs when ``run`` has nowhere to log (exit status 2).
NO_STORE: Final = """genesis-logging: no log store is configured, so this run would not be recorded.
Configure one of the two, then run again:
  local store (a folder):  export GENESIS_LOG_DIR=.genesis/logs   or   run --log-dir DIR ...
  ClickHouse server:       export CLICKHOUSE_URL=clickhouse://USER@HOST:9000/genesis   or   run --url URL ...
or pass --no-log to run the command without recording it.
"""


def _next_iteration(args: argparse.Namespace) -> int:
    """The spec's last run's iteration + 1 (the local store answers from its index, and
    reserves the number: concurrent runs of one spec get distinct ones)."""
    store = open_log_store(args)
    try:
        runs = store.select(args.spec, "genesis.run", ["iteration"])
    except Exception as error:
        raise CommandError(f"query failed on {store.name}: {describe(error)}") from None
    finally:
        store.close()
    recorded = max((int(run["iteration"]) for run in runs), default=0)
    if isinstance(store, LocalStore):
        return reserve_iteration(store.directory, args.spec, recorded)
    return recorded + 1


def _server_configured(args: argparse.Namespace) -> bool:
    return bool(args.url or os.environ.get("CLICKHOUSE_URL") or os.environ.get("CLICKHOUSE_HOST"))


def _handlers(
    args: argparse.Namespace, log_dir: Path | None, server: bool
) -> list[logging.Handler]:
    """Where the record goes: the configured stores, and stderr only with --print-record."""
    from genesis_logging.configure import setup_logging  # the handlers: only to write

    options: dict[str, Any] = {"url": args.url} if args.url else {}
    try:
        handlers = setup_logging(
            stream=sys.stderr, console=args.print_record, clickhouse=server, **options
        )
    except ConfigurationError as error:
        raise CommandError(str(error)) from None
    if log_dir is not None:
        store_handler = LocalStoreHandler(log_dir)
        store_handler.set_name("genesis-local-store")
        logging.getLogger().addHandler(store_handler)
        handlers.append(store_handler)
    return handlers


def _where_logged(handlers: list[logging.Handler], log_dir: Path | None) -> str:
    """Where the record went, in a few words; a server that did not take it is said so."""
    from genesis_logging.handler import ClickHouseHandler

    logged = [str(log_dir)] if log_dir is not None else []
    missed = []
    for handler in handlers:
        if isinstance(handler, ClickHouseHandler):
            url = handler.config.connection.redacted_url()
            stats = handler.stats()
            if stats.get("sent"):
                logged.append(url)
            elif stats.get("spooled"):
                logged.append(f"the spool of {url} (sent when the server is back)")
            else:
                missed.append(url)
    said = [f"logged to {' and '.join(logged)}"] if logged else []
    if missed:
        said.append(f"NOT logged to {' and '.join(missed)} (see the warnings above)")
    return "; ".join(said)


def cmd_run(args: argparse.Namespace, out: TextIO) -> int:
    from genesis_logging.runner import run_and_log  # writing: not loaded by the read commands

    command = [part for part in args.cmd if part != "--"] if args.cmd else []
    if not command:
        raise CommandError("nothing to run: give the command after --, e.g. run ... -- pytest -q")
    log_dir = local_log_dir(args.log_dir)
    server = _server_configured(args)
    if log_dir is None and not server and not args.no_log:
        sys.stderr.write(NO_STORE)
        return 2
    if log_dir is not None and not args.no_log:
        log_dir.mkdir(mode=0o700, parents=True, exist_ok=True)  # records are private
        os.environ["GENESIS_LOG_DIR"] = str(log_dir)  # the command logs there too
    if args.iteration != "auto":
        iteration = int(args.iteration)
    elif log_dir is not None or server:
        iteration = _next_iteration(args)
    else:
        iteration = 1
    handlers = [] if args.no_log else _handlers(args, log_dir, server)
    log = logging.getLogger("genesis.run")
    log.setLevel(logging.INFO)  # LOG_LEVEL=error must not lose the run
    if args.no_log:  # not even logging's last resort may print it
        log.addHandler(logging.NullHandler())
        log.propagate = False
    snapshot = [Path(p) for p in args.snapshot] if args.snapshot else None
    try:
        result = run_and_log(
            command,
            spec_id=args.spec,
            iteration=iteration,
            sprint_id=args.sprint,
            task_id=args.task,
            code_snapshot=snapshot,
            timeout=args.timeout,
            logger=log,
            echo=True,
        )
    finally:
        for handler in handlers:
            handler.flush()
            handler.close()
            logging.getLogger().removeHandler(handler)
    where = "not logged (--no-log)" if args.no_log else _where_logged(handlers, log_dir)
    outcome = f"exit {result.exit_code}"
    if result.timed_out:
        outcome += " (timed out)"
    elif result.interrupted:
        outcome += f" (interrupted by {signal.Signals(result.interrupted).name})"
    elif not result.started:  # the reason was never on the terminal: say it
        outcome += f" (not started: {result.stderr[:300]})"
    sys.stderr.write(
        f"genesis-logging: {args.spec} iteration {iteration} · {outcome} · "
        f"{result.duration_ms / 1000:.1f} s · {where}\n"
    )
    return result.exit_code if 0 <= result.exit_code <= 255 else 1


class _Progress:
    """A progress bar on stderr when it is a terminal; silent otherwise."""

    def __init__(self, files: list[str]) -> None:
        self.stream = sys.stderr if sys.stderr.isatty() else None
        self.total = sum(os.path.getsize(f) for f in files if os.path.isfile(f)) or 1
        self.read = 0

    def show(self, loaded: int) -> None:
        if self.stream is None:
            return
        share = min(1.0, self.read / self.total)
        bar = "#" * round(30 * share)
        self.stream.write(f"\r[{bar:<30}] {share:4.0%}  {loaded} records loaded")
        self.stream.flush()

    def done(self) -> None:
        if self.stream is not None:
            self.stream.write("\n")


def _rows_of(
    files: list[str], out: TextIO, malformed: list[int], progress: _Progress
) -> Iterator[Row]:
    """The records of console JSON-lines files; malformed lines are reported and counted."""
    from genesis_logging._codec import row_from_json_line

    for name in files:
        try:
            handle = open(name, encoding="utf-8", errors="replace")  # noqa: SIM115 - closed by the with below
        except OSError as error:
            raise CommandError(f"{name}: {error.strerror}") from None
        with handle:
            for number, line in enumerate(handle, 1):
                progress.read += len(line)
                if not line.strip():
                    continue
                try:
                    row = row_from_json_line(line)
                    if "timestamp" not in row or "message" not in row:
                        raise ValueError("not a genesis record (no timestamp or message)")
                except ValueError as error:
                    malformed[0] += 1
                    out.write(f"{name}:{number}: skipped malformed line: {error}\n")
                    continue
                yield row


def cmd_load(args: argparse.Namespace, out: TextIO) -> int:
    from genesis_logging._inserts import PartialInsertError, insert_in_chunks
    from genesis_logging.transport import ClickHouseInserter

    if not _server_configured(args):
        raise CommandError(
            "no server to load into: pass --url clickhouse://USER@HOST:9000/genesis "
            "or set CLICKHOUSE_URL (or CLICKHOUSE_HOST)"
        )
    missing = [name for name in args.files if not os.path.isfile(name)]
    if missing:
        raise CommandError(f"no such file: {', '.join(missing)} (nothing was loaded)")
    settings = connection_settings(args.url)
    inserter = ClickHouseInserter(settings, args.table)
    malformed = [0]
    loaded = 0
    progress = _Progress(args.files)

    def insert(rows: Any, token: str | None) -> None:
        nonlocal loaded
        inserter.insert(rows, token)
        loaded += len(rows)
        progress.show(loaded)

    try:
        rows = _rows_of(args.files, out, malformed, progress)
        done = insert_in_chunks(
            insert, rows, args.batch_size, uuid.uuid4().hex, classify=inserter.classify
        )
    except PartialInsertError as partial:
        raise CommandError(
            f"insert into {settings.redacted_url()} failed after {loaded} records: "
            f"{describe(partial.error, settings)}"
        ) from None
    finally:
        inserter.close()
        progress.done()
    for row, error in done.refused:
        out.write(f"refused by the server: {row.get('message', '')!r}: {describe(error)}\n")
    out.write(
        f"loaded {loaded} records into {settings.redacted_url()} table {args.table}; "
        f"{malformed[0]} malformed lines skipped; {len(done.refused)} refused\n"
    )
    return 0


def _add_run(commands: Any, writes: argparse.ArgumentParser) -> None:
    run = commands.add_parser(
        "run",
        parents=[writes],
        help="run a command and log the run",
        description="Run a command, show its output live, and log the run as one record; "
        "exit with the command's status. Prints one summary line to stderr.",
    )
    run.add_argument(
        "--spec",
        required=True,
        type=text_argument("the spec id"),
        help="the spec being worked on (spec_id)",
    )
    run.add_argument(
        "--iteration",
        required=True,
        type=iteration_argument,
        help="a number, or 'auto' for the spec's last one + 1",
    )
    run.add_argument("--sprint", type=text_argument("the sprint id"), help="sprint_id of the run")
    run.add_argument("--task", type=text_argument("the task id"), help="task_id of the run")
    run.add_argument(
        "--snapshot", nargs="*", help="files or directories with the code that is run"
    )
    run.add_argument(
        "--timeout",
        type=number_argument(float, 0.001, "a number of seconds > 0"),
        help="seconds before the command is killed",
    )
    run.add_argument(
        "--print-record",
        action="store_true",
        help="also print the whole record (code snapshot included) to stderr as a JSON line",
    )
    run.add_argument(
        "--no-log",
        action="store_true",
        help="run the command without recording it (needed when no store is configured)",
    )
    run.add_argument("cmd", nargs=argparse.REMAINDER, help="the command, after --")
    run.set_defaults(handler=cmd_run)


def add_run_commands(commands: Any) -> None:
    """Register ``run`` and ``load`` on the top-level sub-parser."""
    _add_run(commands, store_options(writes=True))

    load = commands.add_parser("load", help="insert console JSON lines into a server")
    add_url_option(load, writes=True)
    load.add_argument("files", nargs="+", help="JSON-lines files written by the console track")
    load.add_argument(
        "--table",
        type=text_argument("the table"),
        default="logs",
        help="table inside the database",
    )
    load.add_argument(
        "--batch-size",
        type=number_argument(int, 1, "a whole number >= 1"),
        default=5000,
        help="rows per insert",
    )
    load.set_defaults(handler=cmd_load)
