"""The ``genesis-logging`` command line (also ``python -m genesis_logging``)."""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Sequence
from dataclasses import asdict
from typing import Any, TextIO

from ._faults import is_transient
from ._loop_cli import LoopCommandError, add_loop_commands
from .ddl import PROFILES, TableSpec, quote_identifier, readonly_user_statements, render_statements
from .errors import ConfigurationError
from .operations import Features, diagnose, missing_features
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


# -- schema, init, doctor ------------------------------------------------------------------


def _spec_from(args: argparse.Namespace) -> TableSpec:
    try:
        return TableSpec(args.database, args.table, args.profile, args.ttl_days, args.cluster)
    except ValueError as error:
        raise CommandError(str(error)) from None


def cmd_schema(args: argparse.Namespace, out: TextIO) -> int:
    statements = render_statements(_spec_from(args))
    if args.readonly_user:
        statements += readonly_user_statements(
            args.readonly_user, "<password from the environment>", args.database, args.cluster
        )
    out.write("".join(f"{statement};\n\n" for statement in statements))
    return 0


def _connect(args: argparse.Namespace) -> tuple[Any, ConnectionSettings]:
    """A client on the server (``default`` database, so a missing one can be diagnosed)."""
    from clickhouse_driver import Client

    try:
        settings = ConnectionSettings.resolve(url=args.url)
    except ConfigurationError as error:
        raise CommandError(str(error)) from None
    kwargs = {**settings.client_kwargs(), "database": "default"}
    client = Client(**kwargs)
    try:
        client.execute("SELECT 1")
    except Exception as error:
        raise CommandError(
            f"cannot connect to {settings.redacted_url()}: {_describe(error, settings)}"
        ) from None
    return client, settings


def _server_version(client: Any) -> str:
    return str(client.execute("SELECT version()")[0][0])


def cmd_init(args: argparse.Namespace, out: TextIO) -> int:
    spec = _spec_from(args)
    password = None
    if args.readonly_user:
        if not args.readonly_password_env:
            raise CommandError(
                "--readonly-user needs --readonly-password-env VAR (never a password on the command line)"
            )
        password = os.environ.get(args.readonly_password_env)
        if not password:
            raise CommandError(
                f"environment variable {args.readonly_password_env} is empty or not set"
            )
    client, settings = _connect(args)
    try:
        features = Features.from_version(_server_version(client))
        lacking = missing_features(features, spec.profile, users=bool(args.readonly_user))
        if lacking:
            raise CommandError(
                f"refusing to init: server {features.version} at {settings.redacted_url()} lacks "
                f"{', '.join(lacking)}, needed by the {spec.profile} profile"
                f"{' and the read-only user' if args.readonly_user else ''}. Nothing was changed. "
                "Run 'genesis-logging doctor' to see what this server can do."
            )
        statements = render_statements(spec)
        shown = list(statements)
        if args.readonly_user and password is not None:
            statements += readonly_user_statements(
                args.readonly_user, password, spec.database, spec.cluster
            )
            shown += readonly_user_statements(
                args.readonly_user, "***", spec.database, spec.cluster
            )
        for statement, display in zip(statements, shown, strict=True):
            try:
                client.execute(statement)
            except Exception as error:
                raise CommandError(
                    f"failed: {display.splitlines()[0]}: {_describe(error, settings)}"
                ) from None
            out.write(f"applied: {display.splitlines()[0]}\n")
        out.write(f"ready: {spec.target} ({spec.profile} profile) on {settings.redacted_url()}\n")
        return 0
    finally:
        client.disconnect()


def cmd_doctor(args: argparse.Namespace, out: TextIO) -> int:
    client, settings = _connect(args)
    try:
        out.write(
            f"genesis-logging doctor: {settings.redacted_url()} table {args.database}.{args.table}\n"
        )
        out.write(f"  OK   connected and authenticated as {settings.user}\n")
        target = f"{quote_identifier(args.database)}.{quote_identifier(args.table)}"

        def can_insert() -> str | None:
            try:
                # An INSERT with no rows: the server checks the right to insert, stores nothing.
                client.execute(f"INSERT INTO {target} (timestamp) VALUES", [])
            except Exception as error:
                return _describe(error, settings)
            return None

        report = diagnose(
            lambda sql: client.execute(sql),
            _server_version(client),
            args.database,
            args.table,
            can_insert=can_insert,
        )
        out.write(report.render())
        return 0 if report.usable else 1
    finally:
        client.disconnect()


def _add_table_options(parser: argparse.ArgumentParser, *, ddl: bool) -> None:
    parser.add_argument("--database", default="genesis")
    parser.add_argument("--table", default="logs")
    if ddl:
        parser.add_argument("--profile", choices=list(PROFILES), default="default")
        parser.add_argument("--ttl-days", type=int, default=90)
        parser.add_argument(
            "--cluster", help="render ON CLUSTER, ReplicatedMergeTree and a Distributed table"
        )


def _add_url_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--url",
        help="ClickHouse URL (default: $CLICKHOUSE_URL, then $CLICKHOUSE_HOST, _PORT, ...)",
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="genesis-logging",
        description="Structured logs of AI-driven TDD loops: console JSON and ClickHouse.",
    )
    commands = parser.add_subparsers(dest="command", required=True)

    schema = commands.add_parser("schema", help="print the DDL of genesis.logs")
    _add_table_options(schema, ddl=True)
    schema.add_argument("--readonly-user", help="also print the read-only user's statements")
    schema.set_defaults(handler=cmd_schema)

    init = commands.add_parser(
        "init", help="create the database and table on a server (idempotent)"
    )
    _add_url_option(init)
    _add_table_options(init, ddl=True)
    init.add_argument("--readonly-user", help="create this read-only user for the assistant")
    init.add_argument("--readonly-password-env", help="environment variable holding its password")
    init.set_defaults(handler=cmd_init)

    doctor = commands.add_parser("doctor", help="check a server and table, say what to fix")
    _add_url_option(doctor)
    _add_table_options(doctor, ddl=False)
    doctor.set_defaults(handler=cmd_doctor)

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

    add_loop_commands(commands, _add_url_option)
    return parser


def main(argv: Sequence[str] | None = None, out: TextIO | None = None) -> int:
    """Run the command line; returns the exit status."""
    args = build_parser().parse_args(argv)
    stream = out if out is not None else sys.stdout
    try:
        return int(args.handler(args, stream))
    except (CommandError, LoopCommandError) as error:
        sys.stderr.write(f"genesis-logging: {error}\n")
        return 1
