"""The ``genesis-logging`` command line (also ``python -m genesis_logging``)."""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Sequence
from dataclasses import asdict
from typing import TextIO

from ._faults import is_transient
from .errors import ConfigurationError
from .settings import ConnectionSettings
from .spool import Spool
from .transport import ClickHouseInserter

__all__ = ["main"]


class CommandError(Exception):
    """A failure to report in plain words, with exit status 1 (never a traceback)."""


def _spool_from(args: argparse.Namespace) -> Spool:
    directory = args.spool_dir or os.environ.get("GENESIS_SPOOL_DIR")
    if not directory:
        raise CommandError("no spool directory: pass --spool-dir or set GENESIS_SPOOL_DIR")
    if not os.path.isdir(directory):
        raise CommandError(f"spool directory {directory} does not exist")
    return Spool(directory)


def _describe(error: BaseException, settings: ConnectionSettings | None) -> str:
    text = " ".join(f"{type(error).__name__}: {error}".split("Stack trace:")[0].split())
    return settings.scrub(text) if settings is not None else text


def cmd_spool_status(args: argparse.Namespace, out: TextIO) -> int:
    status = _spool_from(args).status()
    if args.format == "json":
        out.write(json.dumps(asdict(status)) + "\n")
        return 0
    age = "-" if status.oldest_age_seconds is None else f"{status.oldest_age_seconds:.0f}s"
    out.write(
        f"spool {status.directory}\n"
        f"  waiting: {status.files} files, {status.rows} records, {status.bytes} bytes "
        f"(oldest {age})\n"
        f"  being replayed: {status.claimed_files} files\n"
        f"  dead letters: {status.dead_files} files, {status.dead_rows} records\n"
    )
    return 0


def cmd_spool_purge(args: argparse.Namespace, out: TextIO) -> int:
    if not args.yes:
        raise CommandError("purge deletes spooled records for good: add --yes to confirm")
    removed = _spool_from(args).purge(dead=True)
    out.write(f"purged {removed} records\n")
    return 0


def cmd_spool_replay(args: argparse.Namespace, out: TextIO) -> int:
    spool = _spool_from(args)
    try:
        settings = ConnectionSettings.resolve(url=args.url)
    except ConfigurationError as error:
        raise CommandError(str(error)) from None
    if args.dead:
        out.write(f"revived {spool.revive_dead()} dead-letter records\n")
    spool.recover_stale_claims()
    total_files = spool.pending_files()
    inserter = ClickHouseInserter(settings, args.table)
    done_files = done_rows = 0
    try:
        while (entry := spool.claim()) is not None:
            rows, unreadable = spool.read(entry)
            try:
                for start in range(0, len(rows), args.batch_size):
                    chunk = rows[start : start + args.batch_size]
                    token = (
                        entry.batch_id
                        if len(rows) <= args.batch_size
                        else f"{entry.batch_id}-{start}"
                    )
                    inserter.insert(chunk, token)
            except Exception as error:
                spool.release(entry, retry_in=0, failed=not is_transient(error))
                out.write(f"stopped: {_describe(error, settings)}\n")
                out.write(f"replayed {done_files}/{total_files} files ({done_rows} records)\n")
                return 1
            spool.complete(entry)
            done_files += 1
            done_rows += len(rows)
            skipped = f", {unreadable} unreadable lines skipped" if unreadable else ""
            out.write(
                f"replayed {done_files}/{total_files} files ({done_rows} records{skipped})\n"
            )
            out.flush()
    finally:
        inserter.close()
    out.write(
        f"done: {done_rows} records delivered to {settings.redacted_url()} table {args.table}\n"
    )
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="genesis-logging",
        description="Structured logs of AI-driven TDD loops: console JSON and ClickHouse.",
    )
    commands = parser.add_subparsers(dest="command", required=True)

    spool = commands.add_parser("spool", help="inspect, replay or purge the disk spool")
    spool_commands = spool.add_subparsers(dest="spool_command", required=True)
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--spool-dir", help="spool directory (default: $GENESIS_SPOOL_DIR)")

    status = spool_commands.add_parser("status", parents=[common], help="what the spool holds")
    status.add_argument("--format", choices=["table", "json"], default="table")
    status.set_defaults(handler=cmd_spool_status)

    replay = spool_commands.add_parser(
        "replay", parents=[common], help="deliver spooled records now, oldest first"
    )
    replay.add_argument(
        "--url", help="ClickHouse URL (default: $CLICKHOUSE_URL, $CLICKHOUSE_HOST ...)"
    )
    replay.add_argument("--table", default="logs")
    replay.add_argument("--batch-size", type=int, default=1000)
    replay.add_argument("--dead", action="store_true", help="retry the dead letters too")
    replay.set_defaults(handler=cmd_spool_replay)

    purge = spool_commands.add_parser("purge", parents=[common], help="delete spooled records")
    purge.add_argument("--yes", action="store_true", help="confirm")
    purge.set_defaults(handler=cmd_spool_purge)
    return parser


def main(argv: Sequence[str] | None = None, out: TextIO | None = None) -> int:
    """Run the command line; returns the exit status."""
    args = build_parser().parse_args(argv)
    stream = out if out is not None else sys.stdout
    try:
        return int(args.handler(args, stream))
    except CommandError as error:
        sys.stderr.write(f"genesis-logging: {error}\n")
        return 1
