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


class TestLiveSession:
    """The assistant stays connected for the whole chat while the loop runs (issue 14.1)."""

    def test_the_loop_runs_and_is_seen_while_the_mcp_session_is_open(self, tmp_path: Path) -> None:
        log_dir = tmp_path / "logs"
        config = json.loads(genesis("mcp-config", "--local", log_dir=log_dir).stdout)
        env = {**os.environ, **config["mcpServers"]["clickhouse"]["env"]}
        asyncio.run(asyncio.wait_for(self._loop_with_live_session(env, log_dir), 300))

    async def _loop_with_live_session(self, env: dict[str, str], log_dir: Path) -> None:
        params = StdioServerParameters(
            command=sys.executable, args=["-m", "mcp_clickhouse.main"], env=env
        )
        script = "import sys; n = int(sys.argv[1]); print('iteration', n); sys.exit(3 - n)"
        async with stdio_client(params) as (read, write), ClientSession(read, write) as session:
            await session.initialize()
            for expected in (1, 2, 3):
                # the CLI in a thread: the event loop keeps serving the MCP session meanwhile
                ran = await asyncio.to_thread(
                    genesis,
                    "run", "--spec", "live", "--iteration", "auto", "--",
                    sys.executable, "-c", script, str(expected),
                    log_dir=log_dir,
                )  # fmt: skip
                assert ran.returncode == 3 - expected, ran.stderr
                assert f"iteration {expected}" in ran.stdout
                for command in (
                    ("failures", "live"),
                    ("tail", "--spec", "live", "-n", "5"),
                    ("show", "live"),
                    ("query", "SELECT count() FROM genesis.logs"),
                    ("mcp-config", "--local"),  # again, for a second client
                ):
                    done = await asyncio.to_thread(genesis, *command, log_dir=log_dir)
                    assert done.returncode == 0, (command, done.stderr)
                    assert "Cannot lock" not in done.stdout + done.stderr
                seen = await self._ask_until(session, expected)
                assert seen == expected

    @staticmethod
    async def _ask_until(session: ClientSession, iteration: int) -> int:
        """The run's iteration as the assistant sees it, asked until it appears (≤ 2 s)."""
        query = "SELECT max(iteration) AS last FROM genesis.logs WHERE spec_id = 'live'"
        deadline = asyncio.get_running_loop().time() + 2.0
        while True:
            result = await session.call_tool("run_chdb_select_query", {"query": query})
            text = result.content[0].text if result.content else ""  # type: ignore[union-attr]
            rows = json.loads(text)
            assert isinstance(rows, list), text
            last = int(rows[0]["last"])
            if last >= iteration or asyncio.get_running_loop().time() > deadline:
                return last
            await asyncio.sleep(0.1)
