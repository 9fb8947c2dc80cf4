"""``genesis-logging run|query|tail|show|load``: the TDD loop."""

from __future__ import annotations

import argparse
import io
import logging
import os
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

from genesis_logging.schema import FIELDS, Source
from genesis_logging.store import LocalStore, LocalStoreHandler, Store, local_log_dir

from ._common import (
    CommandError,
    add_format_option,
    add_url_option,
    connection_settings,
    describe,
    open_log_store,
    query_once,
    show_result,
    store_options,
)
from ._output import render

if TYPE_CHECKING:
    from genesis_logging._codec import Row

# Writing (run, load) imports the handlers and the ClickHouse driver inside its command:
# the read commands start without them.

__all__ = ["add_loop_commands"]


#: The text a captured run leaves: stdout, stderr and the code snapshot.
_RUN_TEXT = tuple(f.name for f in FIELDS if f.source is Source.RUN and f.bulky)


# -- run ---------------------------------------------------------------------------------


def _next_iteration(args: argparse.Namespace) -> int:
    store = open_log_store(args)
    result = query_once(
        store,
        f"SELECT max(iteration) AS last FROM {store.logs} WHERE spec_id = {{spec:String}}",
        {"spec": args.spec},
    )
    last = result.rows[0][0] if result.rows and result.rows[0][0] is not None else 0
    return int(last) + 1


def cmd_run(args: argparse.Namespace, out: TextIO) -> int:
    from genesis_logging.configure import setup_logging
    from genesis_logging.runner import run_and_log

    command = [part for part in args.cmd if part != "--"] if args.cmd else []
    if not command:
        raise CommandError("nothing to run: give the command after --")
    log_dir = local_log_dir(args.log_dir)
    if log_dir is not None:
        log_dir.mkdir(parents=True, exist_ok=True)
        os.environ["GENESIS_LOG_DIR"] = str(log_dir.resolve())  # the command logs there too
    try:
        iteration = _next_iteration(args) if args.iteration == "auto" else int(args.iteration)
    except ValueError:
        raise CommandError("--iteration must be a whole number >= 0 or 'auto'") from None
    if iteration < 0:
        raise CommandError("--iteration must be a whole number >= 0 or 'auto'")
    handlers = setup_logging(stream=sys.stderr)
    if log_dir is not None:
        store_handler = LocalStoreHandler(log_dir)
        store_handler.set_name("genesis-local-store")
        logging.getLogger().addHandler(store_handler)
        handlers.append(store_handler)
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
            echo=True,
        )
    finally:
        for handler in handlers:
            handler.flush()
            handler.close()
            logging.getLogger().removeHandler(handler)
    return result.exit_code if 0 <= result.exit_code <= 255 else 1


# -- queries -----------------------------------------------------------------------------


def cmd_query(args: argparse.Namespace, out: TextIO) -> int:
    return show_result(args, out, open_log_store(args), args.sql, {}, readonly=True)


#: ``tail --level``'s choices: the levels a record is written with.
LEVEL_CHOICES = ("debug", "info", "warning", "error", "critical")


def _tail_query(
    args: argparse.Namespace, store: Store, since: Any | None
) -> tuple[str, dict[str, Any]]:
    where, params = [], {"limit": args.limit}
    if args.spec:
        where.append("spec_id = {spec:String}")
        params["spec"] = args.spec
    if args.level:
        where.append("level = {level:String}")
        params["level"] = args.level.lower()
    if since is not None:
        where.append("timestamp > {since:DateTime64(3)}")
        params["since"] = since
    condition = f"WHERE {' AND '.join(where)} " if where else ""
    sql = (
        "SELECT timestamp, level, spec_id, iteration, exit_code, message "
        f"FROM {store.logs} {condition}ORDER BY timestamp DESC LIMIT {{limit:UInt32}}"
    )
    return sql, params


def _tail_rows(
    args: argparse.Namespace, store: Store, since: Any | None
) -> tuple[list[str], list[tuple[Any, ...]]]:
    """The newest records after ``since``, oldest first: from the local store's index
    when it has one (no chDB), else by SQL."""
    try:
        result = None
        if isinstance(store, LocalStore):
            level = args.level.lower() if args.level else None
            result = store.latest(args.limit, spec=args.spec or None, level=level, since=since)
        if result is None:
            sql, params = _tail_query(args, store, since)
            result = store.query(sql, params)
    except Exception as error:
        raise CommandError(f"query failed on {store.name}: {describe(error)}") from None
    return result.columns, list(reversed(result.rows))


def _print_rows(
    args: argparse.Namespace, columns: list[str], rows: list[Any], out: TextIO, first: bool
) -> None:
    """Rows as ``render`` writes them; when following, the header only the first time and
    no row count (the rows go on)."""
    buffer = io.StringIO()
    render(columns, rows, args.format, buffer, colour=out.isatty())
    lines = buffer.getvalue().splitlines(keepends=True)
    if args.follow and args.format == "table":
        lines = lines[:-1] if first else lines[2:-1]  # the "(N rows)" line; the header
    elif args.follow and args.format == "csv" and not first:
        lines = lines[1:]
    out.writelines(lines)
    out.flush()


def cmd_tail(args: argparse.Namespace, out: TextIO) -> int:
    store = open_log_store(args)
    since = None
    first = True
    try:
        while True:
            columns, rows = _tail_rows(args, store, since)
            if rows or first:
                _print_rows(args, columns, rows, out, first)
                first = False
            if rows:
                since = rows[-1][0]
            if not args.follow:
                return 0
            time.sleep(args.interval)
            if hasattr(store, "ensure_view"):
                store.ensure_view()  # new files of new processes
    except KeyboardInterrupt:
        return 0
    finally:
        store.close()


def cmd_show(args: argparse.Namespace, out: TextIO) -> int:
    has_output = " OR ".join(f"{name} != ''" for name in _RUN_TEXT)
    where = f"spec_id = {{spec:String}} AND ({has_output})"
    params: dict[str, Any] = {"spec": args.spec}
    if args.iteration is not None:
        where += " AND iteration = {iteration:UInt32}"
        params["iteration"] = args.iteration
    store = open_log_store(args)
    sql = (
        f"SELECT timestamp, level, iteration, exit_code, duration_ms, message, {', '.join(_RUN_TEXT)} "
        f"FROM {store.logs} WHERE {where} ORDER BY timestamp DESC LIMIT 1"
    )
    result = query_once(store, sql, params)
    if not result.rows:
        raise CommandError(
            f"no run recorded for spec {args.spec!r}"
            + (f" iteration {args.iteration}" if args.iteration is not None else "")
        )
    if args.format != "table":
        render(result.columns, result.rows, args.format, out)
        return 0
    run = result.dicts()[0]
    out.write(
        f"spec {args.spec} · iteration {run['iteration']} · exit code {run['exit_code']} · "
        f"{run['duration_ms']} ms · {run['timestamp']}\n{run['message']}\n"
    )
    for name in _RUN_TEXT:
        out.write(f"\n----- {name} -----\n{run[name]}\n")
    return 0


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
        done = insert_in_chunks(insert, rows, args.batch_size, uuid.uuid4().hex)
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


def add_loop_commands(commands: Any) -> None:
    """Register the loop's commands on the top-level sub-parser."""
    reads, writes = store_options(writes=False), store_options(writes=True)

    run = commands.add_parser("run", parents=[writes], help="run a command and log the run")
    run.add_argument("--spec", required=True, help="the spec being worked on (spec_id)")
    run.add_argument(
        "--iteration", required=True, help="a number, or 'auto' for the spec's last one + 1"
    )
    run.add_argument("--sprint", help="sprint_id of the run")
    run.add_argument("--task", help="task_id of the run")
    run.add_argument(
        "--snapshot", nargs="*", help="files or directories with the code that is run"
    )
    run.add_argument("--timeout", type=float, help="seconds before the command is killed")
    run.add_argument("cmd", nargs=argparse.REMAINDER, help="the command, after --")
    run.set_defaults(handler=cmd_run)

    query = commands.add_parser("query", parents=[reads], help="run read-only SQL on genesis.logs")
    add_format_option(query)
    query.add_argument("sql", help="the query; the logs are the table genesis.logs")
    query.set_defaults(handler=cmd_query)

    tail = commands.add_parser("tail", parents=[reads], help="the latest records")
    add_format_option(tail)
    tail.add_argument("--spec", help="only this spec_id")
    tail.add_argument(
        "--level",
        type=str.lower,
        choices=LEVEL_CHOICES,
        help=f"only this level: {', '.join(LEVEL_CHOICES)} (any case)",
    )
    tail.add_argument("--limit", "-n", type=int, default=20, help="how many records (default 20)")
    tail.add_argument("--follow", "-f", action="store_true", help="keep printing new records")
    tail.add_argument("--interval", type=float, default=1.0, help=argparse.SUPPRESS)
    tail.set_defaults(handler=cmd_tail)

    show = commands.add_parser("show", parents=[reads], help="stdout, stderr and code of one run")
    add_format_option(show)
    show.add_argument("spec", help="spec_id")
    show.add_argument("--iteration", type=int, help="this iteration (default: the latest)")
    show.set_defaults(handler=cmd_show)

    load = commands.add_parser("load", help="insert console JSON lines into a server")
    add_url_option(load, writes=True)
    load.add_argument("files", nargs="+", help="JSON-lines files written by the console track")
    load.add_argument("--table", default="logs", help="table inside the database")
    load.add_argument("--batch-size", type=int, default=5000, help="rows per insert")
    load.set_defaults(handler=cmd_load)
