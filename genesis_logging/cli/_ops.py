"""``genesis-logging schema|init|doctor``: the table, for the infra team."""

from __future__ import annotations

import argparse
import os
import shlex
from typing import Any, TextIO

from genesis_logging.ddl import (
    PROFILES,
    TableSpec,
    quote_identifier,
    readonly_user_statements,
    render_statements,
)
from genesis_logging.operations import (
    LEGACY_PROFILE,
    Features,
    best_profile,
    diagnose,
    missing_features,
)
from genesis_logging.settings import ConnectionSettings
from genesis_logging.store import server_error_cause

from ._common import CommandError, add_url_option, connection_settings, describe

__all__ = ["add_ops_commands"]


def _spec_from(args: argparse.Namespace, profile: str | None = None) -> TableSpec:
    try:
        return TableSpec(
            args.database,
            args.table,
            profile or args.profile or "default",
            args.ttl_days,
            args.cluster,
        )
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
    """A client on the server: in the URL's database (a user may be allowed there only),
    else in ``default`` (so a database that does not exist yet can be diagnosed or made)."""
    from clickhouse_driver import Client

    settings = connection_settings(args.url)
    first: BaseException | None = None
    for database in dict.fromkeys((settings.database, "default")):
        client = Client(**{**settings.client_kwargs(), "database": database})
        try:
            client.execute("SELECT 1")
        except Exception as error:
            client.disconnect()
            first = first or error
            if getattr(error, "code", None) in (192, 193, 194, 195, 210, 516):
                break  # the login itself failed: another database changes nothing
            continue
        return client, settings
    assert first is not None
    cause = server_error_cause(first, settings, f"{args.database}.{args.table}")
    raise CommandError(f"cannot connect to {settings.redacted_url()}: {cause}") from None


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
        if args.profile is None:
            spec = _spec_from(args, best_profile(features))
            if spec.profile == "legacy":
                out.write(
                    f"server {features.version} lacks "
                    f"{', '.join(missing_features(features, 'default'))}: using the legacy "
                    f"profile ({LEGACY_PROFILE})\n"
                )
        _check_init(spec, features, settings, bool(args.readonly_user))
        if spec.cluster:
            _check_cluster(client, spec.cluster, settings)
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


def _check_init(
    spec: TableSpec, features: Features, settings: ConnectionSettings, readonly_user: bool
) -> None:
    """Refuse, before changing anything, what this server cannot hold, with a way that works."""
    lacking = missing_features(features, spec.profile)
    if lacking:
        raise CommandError(
            f"refusing to init: server {features.version} at {settings.redacted_url()} lacks "
            f"{', '.join(lacking)}, needed by the {spec.profile} profile. Nothing was changed. "
            f"On this server run: {_init_command(settings, spec, 'legacy')}"
        )
    if readonly_user and not features.has("users"):
        raise CommandError(
            f"refusing to init: server {features.version} has no CREATE USER (20.5+). Nothing "
            "was changed. Run init without --readonly-user, and give the reader a users.xml "
            f"entry with <profile>readonly</profile> and <allow_databases><database>"
            f"{spec.database}</database></allow_databases>"
        )


def _check_cluster(client: Any, cluster: str, settings: ConnectionSettings) -> None:
    """Refuse a cluster this server does not know, before any ``ON CLUSTER`` statement
    waits for hosts that will never answer."""
    known = sorted({str(row[0]) for row in client.execute("SELECT cluster FROM system.clusters")})
    if cluster not in known:
        raise CommandError(
            f"refusing to init: {settings.redacted_url()} has no cluster {cluster!r} in its "
            f"remote_servers (it has: {', '.join(known) or 'none'}). Nothing was changed."
        )


def _init_command(settings: ConnectionSettings, spec: TableSpec, profile: str | None) -> str:
    """The ``genesis-logging init`` line for this server and table (without the password)."""
    parts = ["genesis-logging init", f"--url {shlex.quote(settings.redacted_url())}"]
    if spec.database != "genesis":
        parts.append(f"--database {quote_identifier(spec.database)}")
    if spec.table != "logs":
        parts.append(f"--table {quote_identifier(spec.table)}")
    if profile is not None:
        parts.append(f"--profile {profile}")
    if settings.password:
        parts.append("(with the password in CLICKHOUSE_PASSWORD)")
    return " ".join(parts)


def cmd_doctor(args: argparse.Namespace, out: TextIO) -> int:
    client, settings = _connect(args)
    try:
        out.write(
            f"genesis-logging doctor: {settings.redacted_url()} table {args.database}.{args.table}\n"
        )
        out.write(f"  OK   connected and authenticated as {settings.user}\n")
        if settings.alt_hosts:
            connection = client.connection
            out.write(
                f"  OK   host in use: {connection.host}:{connection.port} "
                f"(of {', '.join(settings.hosts)}"
                f"{', round robin' if settings.round_robin else ', in this order'})\n"
            )
        target = f"{quote_identifier(args.database)}.{quote_identifier(args.table)}"

        def can_insert() -> str | None:
            try:
                # An INSERT with no rows: the server checks the right to insert, stores nothing.
                client.execute(f"INSERT INTO {target} (timestamp) VALUES", [])
            except Exception as error:
                return describe(error, settings)
            return None

        out.write(_distributed_note(client, args.database, args.table))
        version = _server_version(client)
        spec = TableSpec(args.database, args.table)
        profile = best_profile(Features.from_version(version))
        report = diagnose(
            lambda sql: client.execute(sql),
            version,
            args.database,
            args.table,
            can_insert=can_insert,
            init_command=_init_command(settings, spec, None if profile == "default" else profile),
        )
        out.write(report.render())
        return 0 if report.usable else 1
    finally:
        client.disconnect()


def _distributed_note(client: Any, database: str, table: str) -> str:
    """For a ``Distributed`` table: whether a retried batch can be stored twice (a
    ``rand()`` sharding key splits the repeat differently, so no shard sees a repeat)."""
    try:
        rows = client.execute(
            "SELECT engine, engine_full FROM system.tables WHERE database = %(d)s AND name = %(t)s",
            {"d": database, "t": table},
        )
    except Exception:
        return ""  # no system.tables for this user: the rest of the checks still tell
    if not rows or rows[0][0] != "Distributed":
        return ""
    where = f"{database}.{table}"
    if "rand()" in str(rows[0][1]):
        return (
            f"  WARN {where} is Distributed, sharded by rand(): a retried batch is split "
            "differently and stored twice; shard by a key computed from the row "
            "('genesis-logging schema --cluster NAME' shows one)\n"
        )
    return (
        f"  OK   {where} is Distributed, sharded by a key computed from the row: inserts are "
        "synchronous, and a retried batch splits into the same blocks, which replicated "
        "shards store once\n"
    )


def _add_table_options(parser: argparse.ArgumentParser, *, ddl: bool) -> None:
    parser.add_argument("--database", default="genesis", help="database of the logs table")
    parser.add_argument("--table", default="logs", help="the logs table")
    if ddl:
        parser.add_argument(
            "--profile",
            choices=list(PROFILES),
            help="table design (default: 'default'; init picks 'legacy' on a server "
            "without DateTime64, Map or LowCardinality)",
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
