"""``genesis-logging query|tail|show``: the store's records, as SQL, the latest, one run."""

from __future__ import annotations

import argparse
import io
import os
import time
from typing import TYPE_CHECKING, Any, Final, TextIO

from genesis_logging.schema import FIELDS, SHOW_FIELDS, TAIL_FIELDS, Source
from genesis_logging.store import LocalStore, Store

from ._common import (
    CommandError,
    add_format_option,
    describe,
    number_argument,
    open_log_store,
    require_spec,
    show_result,
    store_options,
    text_argument,
)
from ._output import render

if TYPE_CHECKING:
    pass

__all__ = ["LEVEL_CHOICES", "SHOW_MAX_CHARS", "add_read_commands"]

#: The text a captured run leaves: stdout, stderr and the code snapshot.
_RUN_TEXT = tuple(f.name for f in FIELDS if f.source is Source.RUN and f.bulky)


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


def _add_show(commands: Any, reads: argparse.ArgumentParser) -> None:
    show = commands.add_parser(
        "show",
        parents=[reads],
        help="stdout, stderr and the code's file list of one run",
        description="One run of a spec: its stdout and stderr (each cut to --max-chars with a "
        "marker saying so) and the names and sizes of the files in its code snapshot.",
    )
    add_format_option(show)
    show.add_argument("spec", type=text_argument("the spec id"), help="spec_id")
    show.add_argument(
        "--iteration",
        type=number_argument(int, 0, "a whole number >= 0"),
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
        type=number_argument(int, 0, "a whole number >= 0"),
        default=SHOW_MAX_CHARS,
        help=f"longest text printed, cut in the middle with a marker (default {SHOW_MAX_CHARS}; "
        "0 = everything, every file listed)",
    )
    show.set_defaults(handler=cmd_show)


def add_read_commands(commands: Any) -> None:
    """Register ``query``, ``tail`` and ``show`` on the top-level sub-parser."""
    reads = store_options(writes=False)
    query = commands.add_parser("query", parents=[reads], help="run read-only SQL on genesis.logs")
    add_format_option(query)
    query.add_argument(
        "sql",
        type=text_argument("the query"),
        help="the query; the logs are the table genesis.logs",
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
