"""``genesis-logging mcp-config``: the client configuration of the official ClickHouse MCP server."""

from __future__ import annotations

import argparse
import json
import os
import shlex
import sys
from typing import Any, TextIO

from genesis_logging._chdb import prepare_mcp_data_path
from genesis_logging.local_store import local_log_dir
from genesis_logging.settings import ConnectionSettings

from ._common import CommandError, connection_settings

__all__ = ["MCP_PACKAGE", "add_mcp_commands", "server_command"]

MCP_PACKAGE = "mcp-clickhouse>=0.4"
"""The official server; 0.4 is the first release with the ``chdb`` extra."""

PYTHON_REQUEST = ">=3.10"
"""mcp-clickhouse's own ``Requires-Python``: any installed interpreter that satisfies it."""

UV_ENV = {"UV_SYSTEM_CERTS": "true", "UV_NATIVE_TLS": "true"}
"""uv trusts the machine's certificate store, as pip does, instead of its bundled roots.

An MCP client starts the server with a bare environment (no ``SSL_CERT_FILE``), so behind a
proxy that only the system store trusts uv could not reach the package index. The second
name is the older uv's; together neither warns.
"""

_HTTP_PORTS = {False: 8123, True: 8443}  # the server's HTTP(S) ports, by TLS
PASSWORD_PLACEHOLDER = "<password of {user}: fill in, or rerun with --with-password>"


def server_command(*, chdb: bool) -> list[str]:
    """``uvx`` and its arguments, started exactly like this from any folder.

    ``uvx`` (``uv tool run``) builds a cached environment of its own: unlike ``uv run`` it
    never makes the current folder's ``pyproject.toml`` its project, so it writes no
    ``.venv`` or ``uv.lock`` there. A folder's ``.python-version`` may name an interpreter
    that is not installed: ``--no-python-downloads`` with a ``--python`` range keeps uv to
    the installed ones, since a machine that reaches only the package index cannot
    download one. The ``chdb`` extra is what makes the server register
    ``run_chdb_select_query``; ``chdb>=4.1`` is the first chdb on chdb-core, the engine
    that prepared the local store's chDB path (4.0 bundles an engine of its own).
    """
    package = (
        MCP_PACKAGE.replace("mcp-clickhouse", "mcp-clickhouse[chdb]") if chdb else MCP_PACKAGE
    )
    extra = ["--with", "chdb>=4.1"] if chdb else []
    return [
        "uvx",
        "--no-python-downloads",
        "--python",
        PYTHON_REQUEST,
        "--from",
        package,
        *extra,
        "mcp-clickhouse",
    ]


def cmd_mcp_config(args: argparse.Namespace, out: TextIO) -> int:
    env = {**(_local_env(args) if args.local else _server_env(args)), **UV_ENV}
    command = server_command(chdb=args.local)
    if args.format == "claude":
        options = [item for key, value in env.items() for item in ("-e", f"{key}={value}")]
        words = ["claude", "mcp", "add", "clickhouse", *options, "--", *command]
        out.write(shlex.join(words) + "\n")
    else:
        server = {"command": command[0], "args": command[1:], "env": env}
        out.write(json.dumps({"mcpServers": {"clickhouse": server}}, indent=2) + "\n")
    return 0


def _local_env(args: argparse.Namespace) -> dict[str, str]:
    directory = local_log_dir(args.log_dir)
    if directory is None:
        raise CommandError("--local needs --log-dir or GENESIS_LOG_DIR")
    directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    data_path, prepared = prepare_mcp_data_path(directory)
    if not prepared:
        sys.stderr.write(
            f"genesis-logging: {data_path} is in use by a running MCP server; "
            "it was prepared before that server started and is left as it is\n"
        )
    return {
        "CHDB_ENABLED": "true",
        "CHDB_DATA_PATH": str(data_path),
        "CLICKHOUSE_ENABLED": "false",
    }


def _server_env(args: argparse.Namespace) -> dict[str, str]:
    """The server's environment from ``--url``/``$CLICKHOUSE_URL`` (native protocol), over HTTP.

    Our URL names the native port (9000, 9440 with TLS); the MCP server speaks HTTP(S), so
    the port becomes 8123 (8443 with TLS) unless ``--port`` says otherwise. The password is
    written only with ``--with-password``.
    """
    configured = args.url or os.environ.get("CLICKHOUSE_URL") or os.environ.get("CLICKHOUSE_HOST")
    if not (configured or args.host):
        raise CommandError(
            "no ClickHouse server configured: pass --url clickhouses://USER@HOST/DATABASE "
            "(or set CLICKHOUSE_URL), or --local for the local store"
        )
    settings = connection_settings(args.url)
    host = args.host or settings.host
    user = args.readonly_user or settings.user
    port = args.port or _HTTP_PORTS[settings.secure]
    sys.stderr.write(
        f"genesis-logging: the MCP server speaks HTTP{'S' if settings.secure else ''}: "
        f"{host}:{port} "
        + ("(--port)" if args.port else f"(for the native port {settings.port}; --port overrides)")
        + "\n"
    )
    env = {
        "CLICKHOUSE_HOST": host,
        "CLICKHOUSE_PORT": str(port),
        "CLICKHOUSE_USER": user,
        "CLICKHOUSE_PASSWORD": _password(args, settings, user),
        "CLICKHOUSE_DATABASE": settings.database,
        "CLICKHOUSE_SECURE": "true" if settings.secure else "false",
        "CLICKHOUSE_VERIFY": "true" if settings.verify else "false",
        "CHDB_ENABLED": "false",
    }
    if settings.ca_certs and settings.secure and settings.verify:
        env["CLICKHOUSE_CA_CERT"] = settings.ca_certs
    return env


def _password(args: argparse.Namespace, settings: ConnectionSettings, user: str) -> str:
    if not args.with_password:
        return PASSWORD_PLACEHOLDER.format(user=user)
    if user != settings.user:
        raise CommandError(
            f"--with-password writes the password configured for {settings.user!r}, "
            f"not one for {user!r}: put {user!r} and its password in the URL instead"
        )
    return settings.password


def add_mcp_commands(commands: Any) -> None:
    """Register ``mcp-config`` on the top-level sub-parser."""
    mcp = commands.add_parser(
        "mcp-config",
        help="client configuration for the official ClickHouse MCP server",
        description="Print the configuration that starts the official ClickHouse MCP server "
        "(mcp-clickhouse, through uvx) over the local store (--local) or a ClickHouse server "
        "(--url or $CLICKHOUSE_URL). The password is written only with --with-password.",
    )
    mcp.add_argument("--local", action="store_true", help="chDB mode over the local store")
    mcp.add_argument("--log-dir", help="the local store (default: $GENESIS_LOG_DIR)")
    mcp.add_argument(
        "--url",
        help="the server, as for every command: clickhouse[s]://USER[:PASSWORD]@HOST[:PORT]/DB "
        "(default: $CLICKHOUSE_URL, then $CLICKHOUSE_HOST, _USER, _SECURE, _DATABASE)",
    )
    mcp.add_argument("--host", help="the server's host (overrides the URL's)")
    mcp.add_argument(
        "--port",
        type=int,
        help="the server's HTTP(S) port (default: 8443 with TLS, 8123 without; "
        "the URL's native port is not the one the MCP server needs)",
    )
    mcp.add_argument(
        "--readonly-user", help="the user the assistant connects as (default: the URL's user)"
    )
    mcp.add_argument(
        "--with-password",
        action="store_true",
        help="write the URL's (or $CLICKHOUSE_PASSWORD's) password into the configuration "
        "(default: a placeholder)",
    )
    mcp.add_argument(
        "--format",
        choices=("json", "claude"),
        default="json",
        help="json: the mcpServers block of an MCP client's configuration; "
        "claude: the 'claude mcp add' command line",
    )
    mcp.set_defaults(handler=cmd_mcp_config)
