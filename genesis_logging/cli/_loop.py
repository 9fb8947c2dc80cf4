"""``genesis-logging run|query|tail|show|load``: the TDD loop."""

from __future__ import annotations

import argparse
import io
import logging
import os
import signal
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final, TextIO

from genesis_logging.errors import ConfigurationError
from genesis_logging.schema import FIELDS, SHOW_FIELDS, TAIL_FIELDS, Source
from genesis_logging.store import (
    LocalStore,
    LocalStoreHandler,
    Store,
    local_log_dir,
    reserve_iteration,
)

from ._common import (
    CommandError,
    add_format_option,
    add_url_option,
    connection_settings,
    describe,
    open_log_store,
    require_spec,
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
        f"SELECT {', '.join(f'{store.column(name)} AS {name}' for name in TAIL_FIELDS)} "
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


#: What ``show`` prints of each text by default; ``--max-chars 0`` prints everything.
SHOW_MAX_CHARS: Final = 4000
#: Files of a snapshot listed by default (names and sizes, never their text).
SHOW_MAX_FILES: Final = 40


def _cap(text: str, limit: int) -> str:
    """``text`` within about ``limit`` characters: its start, a marker saying what was cut
    and how to see it, its end; cut at line ends where there are some.

    The end gets three quarters: pytest puts the failures and its summary last.
    """
    if limit <= 0 or len(text) <= limit:
        return text
    head = text[: limit // 4]
    if "\n" in head:
        head = head[: head.rindex("\n") + 1]
    tail = text[len(text) - (limit - limit // 4) :]
    if "\n" in tail[:-1]:
        tail = tail[tail.index("\n") + 1 :]
    cut = len(text) - len(head) - len(tail)
    gap = "" if not head or head.endswith("\n") else "\n"
    return (
        f"{head}{gap}[… {cut} of {len(text)} characters cut here; --max-chars 0 shows all …]\n"
        f"{tail}"
    )


def _snapshot_files(code: str) -> dict[str, str]:
    from genesis_logging.runner import split_snapshot

    return {} if not code else split_snapshot(code)


def _short_names(paths: list[str]) -> tuple[str, dict[str, str]]:
    """The folder all ``paths`` share, and each path relative to it (for a short list)."""
    try:
        common = os.path.commonpath(paths) if len(paths) > 1 else ""
    except ValueError:  # absolute and relative mixed
        common = ""
    if common in paths:  # one file's own path: keep the name
        common = os.path.dirname(common)
    start = len(common) + 1 if common else 0
    return common, {path: path[start:] for path in paths}


def _pick_files(files: dict[str, str], wanted: list[str]) -> dict[str, str]:
    """The files asked for by ``--file``: a stored path, or the end of one if it is unique."""
    if list(files) == [""]:
        raise CommandError("this snapshot is one text without file names: --code prints it")
    picked = {}
    for name in wanted:
        if name in files:
            picked[name] = files[name]
            continue
        ends = [path for path in files if path.endswith("/" + name.lstrip("./"))]
        if len(ends) == 1:
            picked[ends[0]] = files[ends[0]]
            continue
        import difflib

        near = ends or difflib.get_close_matches(name, list(files), n=3, cutoff=0.3)
        hint = f"; did you mean {', '.join(near[:3])}?" if near else ""
        raise CommandError(
            f"no file {name!r} in this run's snapshot ({len(files)} files){hint}"
            f"{'' if hint else ' (show without --file lists them)'}"
        )
    return picked


def _file_list(files: dict[str, str], limit: int) -> list[dict[str, Any]]:
    shown = list(files.items()) if limit == 0 else list(files.items())[:SHOW_MAX_FILES]
    return [{"path": path, "chars": len(text)} for path, text in shown]


def _fetch_run(args: argparse.Namespace, store: Store) -> dict[str, Any]:
    """The latest (or the asked) run record of the spec with its output; plain words if none."""
    require_spec(store, args.spec)
    has_output = " OR ".join(f"{store.column(name)} != ''" for name in _RUN_TEXT)
    where = f"spec_id = {{spec:String}} AND ({has_output})"
    params: dict[str, Any] = {"spec": args.spec}
    if args.iteration is not None:
        where += " AND iteration = {iteration:UInt32}"
        params["iteration"] = args.iteration
    selected = ", ".join(f"{store.column(c)} AS {c}" for c in [*SHOW_FIELDS, *_RUN_TEXT])
    sql = f"SELECT {selected} FROM {store.logs} WHERE {where} ORDER BY timestamp DESC LIMIT 1"
    try:
        result = store.query(sql, params)
        if result.rows:
            return result.dicts()[0]
        known = store.query(
            f"SELECT DISTINCT iteration FROM {store.logs} WHERE spec_id = {{spec:String}} "
            f"AND ({has_output}) ORDER BY iteration DESC LIMIT 10",
            {"spec": args.spec},
        )
    except Exception as error:
        raise CommandError(f"query failed on {store.name}: {describe(error)}") from None
    iterations = ", ".join(str(row[0]) for row in known.rows) or "none"
    raise CommandError(
        f"no run recorded for spec {args.spec!r}"
        + (f" iteration {args.iteration}" if args.iteration is not None else "")
        + f" (latest iterations with a run: {iterations})"
    )


def cmd_show(args: argparse.Namespace, out: TextIO) -> int:
    store = open_log_store(args)
    try:
        run = _fetch_run(args, store)
    finally:
        store.close()
    limit = args.max_chars
    code = run.pop("code_snapshot", "") or ""
    files = _snapshot_files(code)
    picked = _pick_files(files, args.file) if args.file else {}
    for name in ("message", "stdout", "stderr"):
        run[name] = _cap(run.get(name) or "", limit)
    if args.format != "table":
        run.update(code_chars=len(code), code_file_count=len(files) if code else 0)
        run["code_files"] = _file_list(files, limit) if code else []
        if args.code:
            run["code_snapshot"] = _cap(code, limit)
        if picked:
            run["files"] = {path: _cap(text, limit) for path, text in picked.items()}
        render(list(run), [tuple(run.values())], args.format, out)
        return 0
    out.write(
        f"spec {args.spec} · iteration {run['iteration']} · exit code {run['exit_code']} · "
        f"{run['duration_ms']} ms · {run['timestamp']}\n{run['message']}\n"
    )
    if picked:  # only the files asked for
        for path, text in picked.items():
            _section(out, f"file {path} ({len(text)} characters)", _cap(text, limit))
        return 0
    for name in ("stdout", "stderr"):
        _section(out, name, run[name] or "(empty)")
    if args.code:
        _section(out, f"code_snapshot ({len(code)} characters)", _cap(code, limit) or "(none)")
    else:
        _write_file_list(out, files, code, limit)
    return 0


def _section(out: TextIO, title: str, text: str) -> None:
    out.write(f"\n----- {title} -----\n{text}{'' if text.endswith(chr(10)) else chr(10)}")


def _write_file_list(out: TextIO, files: dict[str, str], code: str, limit: int) -> None:
    """The snapshot as names and sizes: what ``--code`` / ``--file`` would print."""
    if not code:
        out.write("\n----- code: none recorded (run --snapshot PATH records it) -----\n")
        return
    if list(files) == [""]:
        out.write(f"\n----- code: one text, {len(code)} characters (--code prints it) -----\n")
        return
    common, short = _short_names(list(files))
    where = f" under {common}" if common else ""
    out.write(
        f"\n----- code: {len(files)} files{where}, {len(code)} characters "
        "(--code prints it, --file PATH one file) -----\n"
    )
    listed = _file_list(files, limit)
    width = max(len(str(entry["chars"])) for entry in listed)
    for entry in listed:
        out.write(f"{entry['chars']:>{width}}  {short[entry['path']]}\n")
    if len(listed) < len(files):
        out.write(f"… and {len(files) - len(listed)} more files (--max-chars 0 lists all)\n")


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


def _text(what: str) -> Callable[[str], str]:
    """A parser type refusing an empty value: ``--spec ""`` is a mistake, not an id."""

    def check(value: str) -> str:
        if not value.strip():
            raise argparse.ArgumentTypeError(f"{what} must not be empty")
        return value

    return check


def _iteration(value: str) -> str:
    if value == "auto" or (value.isdigit() and value.isascii()):
        return value
    raise argparse.ArgumentTypeError(f"{value!r} is not a whole number >= 0 or 'auto'")


def _number(kind: Callable[[str], float], least: float, what: str) -> Callable[[str], Any]:
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
        type=_text("the spec id"),
        help="the spec being worked on (spec_id)",
    )
    run.add_argument(
        "--iteration",
        required=True,
        type=_iteration,
        help="a number, or 'auto' for the spec's last one + 1",
    )
    run.add_argument("--sprint", type=_text("the sprint id"), help="sprint_id of the run")
    run.add_argument("--task", type=_text("the task id"), help="task_id of the run")
    run.add_argument(
        "--snapshot", nargs="*", help="files or directories with the code that is run"
    )
    run.add_argument(
        "--timeout",
        type=_number(float, 0.001, "a number of seconds > 0"),
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


def _add_show(commands: Any, reads: argparse.ArgumentParser) -> None:
    show = commands.add_parser(
        "show",
        parents=[reads],
        help="stdout, stderr and the code's file list of one run",
        description="One run of a spec: its stdout and stderr (each cut to --max-chars with a "
        "marker saying so) and the names and sizes of the files in its code snapshot.",
    )
    add_format_option(show)
    show.add_argument("spec", type=_text("the spec id"), help="spec_id")
    show.add_argument(
        "--iteration",
        type=_number(int, 0, "a whole number >= 0"),
        help="this iteration (default: the latest)",
    )
    show.add_argument("--code", action="store_true", help="print the code snapshot too")
    show.add_argument(
        "--file",
        action="append",
        metavar="PATH",
        help="print this file of the code snapshot (its path or the end of it; repeatable)",
    )
    show.add_argument(
        "--max-chars",
        type=_number(int, 0, "a whole number >= 0"),
        default=SHOW_MAX_CHARS,
        help=f"longest text printed, cut in the middle with a marker (default {SHOW_MAX_CHARS}; "
        "0 = everything, every file listed)",
    )
    show.set_defaults(handler=cmd_show)


def add_loop_commands(commands: Any) -> None:
    """Register the loop's commands on the top-level sub-parser."""
    reads, writes = store_options(writes=False), store_options(writes=True)
    _add_run(commands, writes)

    query = commands.add_parser("query", parents=[reads], help="run read-only SQL on genesis.logs")
    add_format_option(query)
    query.add_argument(
        "sql", type=_text("the query"), help="the query; the logs are the table genesis.logs"
    )
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

    _add_show(commands, reads)

    load = commands.add_parser("load", help="insert console JSON lines into a server")
    add_url_option(load, writes=True)
    load.add_argument("files", nargs="+", help="JSON-lines files written by the console track")
    load.add_argument(
        "--table", type=_text("the table"), default="logs", help="table inside the database"
    )
    load.add_argument(
        "--batch-size",
        type=_number(int, 1, "a whole number >= 1"),
        default=5000,
        help="rows per insert",
    )
    load.set_defaults(handler=cmd_load)
