"""``genesis-logging spool status|replay|purge``."""

from __future__ import annotations

import argparse
import json
from dataclasses import asdict
from typing import TYPE_CHECKING, Any, TextIO

if TYPE_CHECKING:
    from genesis_logging.spool import Spool

from ._common import CommandError, add_url_option, connection_settings, describe, spool_directory

__all__ = ["add_spool_commands"]


def _spool(args: argparse.Namespace) -> Spool:
    from genesis_logging.spool import Spool

    return Spool(spool_directory(args.spool_dir))


def cmd_status(args: argparse.Namespace, out: TextIO) -> int:
    status = _spool(args).status()
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


def cmd_purge(args: argparse.Namespace, out: TextIO) -> int:
    if not args.yes:
        raise CommandError("purge deletes spooled records for good: add --yes to confirm")
    out.write(f"purged {_spool(args).purge(dead=True)} records\n")
    return 0


def cmd_replay(args: argparse.Namespace, out: TextIO) -> int:
    """Replay this destination's files now, oldest first, whatever their retry time; a
    failing file is skipped. Exits 1 naming every file left behind."""
    from genesis_logging._policies import IMMEDIATE
    from genesis_logging._replay import SpoolReplayer  # the driver: only for a replay
    from genesis_logging.spool import Spool
    from genesis_logging.transport import ClickHouseInserter

    settings = connection_settings(args.url)
    directory = spool_directory(args.spool_dir)
    spool = Spool(directory, destination=(settings.database, args.table))
    if args.dead:
        out.write(f"revived {spool.revive_dead()} dead-letter records\n")
    spool.recover_stale_claims()
    inserter = ClickHouseInserter(settings, args.table)
    replayer = SpoolReplayer(spool, inserter.insert, batch_size=args.batch_size, backoff=IMMEDIATE)
    done_files = done_rows = 0
    failed: set[str] = set()
    try:
        while (report := replayer.replay_one(skip=frozenset(failed), due_only=False)) is not None:
            done_rows += report.rows
            if report.refused:
                out.write(f"{report.refused} records refused by the server: set aside in dead/\n")
            if report.error is not None:
                failed.add(report.file.batch_id)
                out.write(
                    f"failed, skipped: {report.file.batch_id}: {describe(report.error, settings)}\n"
                )
                continue
            done_files += 1
            skipped = (
                f", {report.unreadable} unreadable lines skipped" if report.unreadable else ""
            )
            out.write(f"replayed {done_files} files ({done_rows} records{skipped})\n")
            out.flush()
    finally:
        inserter.close()
    where = f"{settings.redacted_url()} table {args.table}"
    left = spool.waiting()
    if left:
        out.write(
            f"stopped: {done_rows} records delivered to {where}; "
            f"left in the spool: {len(left)} files, {sum(f.rows for f in left)} records\n"
        )
        out.writelines(f"  {f.path.name}\n" for f in left[:20])
        if len(left) > 20:
            out.write(f"  … and {len(left) - 20} more ('genesis-logging spool status')\n")
        return 1
    out.write(f"done: {done_rows} records delivered to {where}\n")
    return 0


def add_spool_commands(commands: Any) -> None:
    spool = commands.add_parser("spool", help="inspect, replay or purge the disk spool")
    spool_commands = spool.add_subparsers(dest="spool_command", required=True)
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--spool-dir", help="spool directory (default: $GENESIS_SPOOL_DIR)")

    status = spool_commands.add_parser("status", parents=[common], help="what the spool holds")
    status.add_argument("--format", choices=["table", "json"], default="table", help="output")
    status.set_defaults(handler=cmd_status)

    replay = spool_commands.add_parser(
        "replay", parents=[common], help="deliver spooled records now, oldest first"
    )
    add_url_option(replay, writes=True)
    replay.add_argument("--table", default="logs", help="table inside the database")
    replay.add_argument("--batch-size", type=int, default=1000, help="rows per insert")
    replay.add_argument("--dead", action="store_true", help="retry the dead letters too")
    replay.set_defaults(handler=cmd_replay)

    purge = spool_commands.add_parser("purge", parents=[common], help="delete spooled records")
    purge.add_argument("--yes", action="store_true", help="confirm")
    purge.set_defaults(handler=cmd_purge)
