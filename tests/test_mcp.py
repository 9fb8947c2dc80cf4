"""The official ClickHouse MCP server answers the specification's §4 from the local store."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from pathlib import Path

from mcp import ClientSession, StdioServerParameters
from mcp.client.stdio import stdio_client

from .fakes import run_cli

SECTION_4 = (
    "SELECT timestamp, level, stderr, exit_code, duration_ms FROM genesis.logs "
    "WHERE spec_id = 'spec_001' AND exit_code != 0 ORDER BY timestamp DESC LIMIT 10"
)


def genesis(*args: str, log_dir: Path) -> subprocess.CompletedProcess[str]:
    return run_cli(*args, env={"GENESIS_LOG_DIR": str(log_dir)})


async def ask_mcp_server(env: dict[str, str], query: str) -> tuple[list[str], str]:
    params = StdioServerParameters(
        command=sys.executable, args=["-m", "mcp_clickhouse.main"], env=env
    )
    async with stdio_client(params) as (read, write), ClientSession(read, write) as session:
        await session.initialize()
        tools = [tool.name for tool in (await session.list_tools()).tools]
        result = await session.call_tool("run_chdb_select_query", {"query": query})
        text = result.content[0].text if result.content else ""  # type: ignore[union-attr]
        return tools, text


def test_mcp_server_finds_the_failing_run(tmp_path: Path) -> None:
    log_dir = tmp_path / "logs"
    failing = [
        sys.executable,
        "-c",
        "import sys; sys.exit('TypeError: x is not a function (line 15)')",
    ]
    passing = [sys.executable, "-c", "print('ok')"]
    assert (
        genesis(
            "run", "--spec", "spec_001", "--iteration", "1", "--", *failing, log_dir=log_dir
        ).returncode
        == 1
    )
    assert (
        genesis(
            "run", "--spec", "spec_001", "--iteration", "2", "--", *passing, log_dir=log_dir
        ).returncode
        == 0
    )
    assert (
        genesis(
            "run", "--spec", "spec_009", "--iteration", "1", "--", *failing, log_dir=log_dir
        ).returncode
        == 1
    )

    config = json.loads(genesis("mcp-config", "--local", log_dir=log_dir).stdout)
    server_env = config["mcpServers"]["clickhouse"]["env"]
    genesis(
        "failures", "spec_001", log_dir=log_dir
    )  # the CLI creates genesis.logs in the chDB path
    env = {**os.environ, **server_env}
    tools, text = asyncio.run(asyncio.wait_for(ask_mcp_server(env, SECTION_4), 120))

    assert tools == ["run_chdb_select_query"]  # the tool this server exposes in chDB mode
    rows = json.loads(text)
    assert len(rows) == 1
    assert rows[0]["level"] == "error"
    assert rows[0]["exit_code"] == 1
    assert rows[0]["stderr"] == "TypeError: x is not a function (line 15)\n"
