"""``genesis-logging mcp-config``: the client configuration of the official ClickHouse MCP server."""

from __future__ import annotations

import argparse
import json
import os
import sys
from typing import Any, TextIO

from genesis_logging.store import local_log_dir, prepare_mcp_data_path

from ._common import CommandError

__all__ = ["add_mcp_commands"]


def cmd_mcp_config(args: argparse.Namespace, out: TextIO) -> int:
    command = {
        "command": "uv",
        "args": ["run", "--with", "mcp-clickhouse", "--python", "3.12", "mcp-clickhouse"],
    }
    if args.local:
        directory = local_log_dir(args.log_dir)
        if directory is None:
            raise CommandError("--local needs --log-dir or GENESIS_LOG_DIR")
        directory.mkdir(parents=True, exist_ok=True)
        data_path, prepared = prepare_mcp_data_path(directory)
        if not prepared:
            sys.stderr.write(
                f"genesis-logging: {data_path} is in use by a running MCP server; "
                "it was prepared before that server started and is left as it is\n"
            )
        env = {
            "CHDB_ENABLED": "true",
            "CHDB_DATA_PATH": str(data_path),
            "CLICKHOUSE_ENABLED": "false",
        }
    else:
        host = args.host or os.environ.get("CLICKHOUSE_HOST") or "clickhouse.example.com"
        env = {
            "CLICKHOUSE_HOST": host,
            "CLICKHOUSE_PORT": str(args.port),
            "CLICKHOUSE_USER": args.readonly_user,
            "CLICKHOUSE_PASSWORD": "<the read-only user's password>",
            "CLICKHOUSE_SECURE": "true" if args.port in (8443, 443) else "false",
            "CLICKHOUSE_VERIFY": "true",
            "CLICKHOUSE_DATABASE": "genesis",
        }
    out.write(json.dumps({"mcpServers": {"clickhouse": {**command, "env": env}}}, indent=2) + "\n")
    return 0


def add_mcp_commands(commands: Any) -> None:
    """Register ``mcp-config`` on the top-level sub-parser."""
    mcp = commands.add_parser(
        "mcp-config", help="client configuration for the official ClickHouse MCP server"
    )
    mcp.add_argument("--local", action="store_true", help="chDB mode over the local store")
    mcp.add_argument("--log-dir", help="the local store (default: $GENESIS_LOG_DIR)")
    mcp.add_argument(
        "--readonly-user", default="genesis_readonly", help="the server user the assistant uses"
    )
    mcp.add_argument("--host", help="the server's host (default: $CLICKHOUSE_HOST)")
    mcp.add_argument("--port", type=int, default=8443, help="the server's HTTP(S) port")
    mcp.set_defaults(handler=cmd_mcp_config)
