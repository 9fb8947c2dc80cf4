"""``genesis-logging schema|init|doctor``: the table, for the infra team."""

from __future__ import annotations

import argparse
import os
from typing import Any, TextIO

from genesis_logging.ddl import (
    PROFILES,
    TableSpec,
    quote_identifier,
    readonly_user_statements,
    render_statements,
)
from genesis_logging.operations import Features, diagnose, missing_features
from genesis_logging.settings import ConnectionSettings

from ._common import CommandError, add_url_option, connection_settings, describe

__all__ = ["add_ops_commands"]


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

    settings = connection_settings(args.url)
    kwargs = {**settings.client_kwargs(), "database": "default"}
    client = Client(**kwargs)
    try:
        client.execute("SELECT 1")
    except Exception as error:
        raise CommandError(
            f"cannot connect to {settings.redacted_url()}: {describe(error, settings)}"
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
                    f"failed: {display.splitlines()[0]}: {describe(error, settings)}"
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
                return describe(error, settings)
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
    parser.add_argument("--database", default="genesis", help="database of the logs table")
    parser.add_argument("--table", default="logs", help="the logs table")
    if ddl:
        parser.add_argument(
            "--profile", choices=list(PROFILES), default="default", help="table design"
        )
        parser.add_argument("--ttl-days", type=int, default=90, help="days a record is kept")
        parser.add_argument(
            "--cluster", help="render ON CLUSTER, ReplicatedMergeTree and a Distributed table"
        )


def add_ops_commands(commands: Any) -> None:
    schema = commands.add_parser("schema", help="print the DDL of genesis.logs")
    _add_table_options(schema, ddl=True)
    schema.add_argument("--readonly-user", help="also print the read-only user's statements")
    schema.set_defaults(handler=cmd_schema)

    init = commands.add_parser(
        "init", help="create the database and table on a server (idempotent)"
    )
    add_url_option(init, writes=True)
    _add_table_options(init, ddl=True)
    init.add_argument("--readonly-user", help="create this read-only user for the assistant")
    init.add_argument("--readonly-password-env", help="environment variable holding its password")
    init.set_defaults(handler=cmd_init)

    doctor = commands.add_parser("doctor", help="check a server and table, say what to fix")
    add_url_option(doctor, writes=False)
    _add_table_options(doctor, ddl=False)
    doctor.set_defaults(handler=cmd_doctor)
