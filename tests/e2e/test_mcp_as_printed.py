"""The assistant's server started exactly as ``mcp-config --local`` prints it (issue 19.5).

Not a substitute: the printed ``command`` and ``args`` with the printed ``env``, started the
way an MCP client starts them (``stdio_client``), from a folder that is a Python project of
its own. uv fetches ``mcp-clickhouse[chdb]`` from the package index on the first run (about
200 MB: chdb, pyarrow, pandas), hence the generous timeout. uv missing is a failure.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import shutil
import sys
from pathlib import Path

from mcp import ClientSession, StdioServerParameters
from mcp.client.stdio import stdio_client

from tests.support.fakes import run_cli

FIRST_START_TIMEOUT = 1200.0  # seconds: a cold uv cache downloads the server's environment

USER_PROJECT = """\
[project]
name = "someone-elses-project"
version = "0.1.0"
requires-python = ">=3.10"
dependencies = ["requests"]

[tool.uv]
package = false
"""

FAILING = "import sys; print('collecting'); sys.exit('TypeError: x is not a function (line 15)')"


def tree(folder: Path) -> dict[str, str]:
    """Every file and folder under ``folder`` with its content's hash: what "unchanged" means."""
    entries: dict[str, str] = {}
    for path in sorted(folder.rglob("*")):
        relative = str(path.relative_to(folder))
        if path.is_dir():
            entries[relative + "/"] = ""
        else:
            entries[relative] = hashlib.sha256(path.read_bytes()).hexdigest()
    return entries


async def ask(
    server: dict[str, object], cwd: Path, queries: list[str]
) -> tuple[list[str], list[str]]:
    """The server's tools and its answers to ``queries`` through ``run_chdb_select_query``."""
    params = StdioServerParameters(
        command=str(server["command"]),
        args=[str(arg) for arg in server["args"]],  # type: ignore[attr-defined]
        env={str(k): str(v) for k, v in server["env"].items()},  # type: ignore[attr-defined]
        cwd=cwd,
    )
    async with stdio_client(params) as (read, write), ClientSession(read, write) as session:
        await session.initialize()
        tools = [tool.name for tool in (await session.list_tools()).tools]
        answers = []
        for query in queries:
            result = await session.call_tool("run_chdb_select_query", {"query": query})
            answers.append(result.content[0].text if result.content else "")  # type: ignore[union-attr]
        return tools, answers


def rows_of(answer: str) -> list[dict[str, object]]:
    """The rows of a tool's answer; its text when it is an error instead."""
    try:
        rows = json.loads(answer)
    except ValueError:
        raise AssertionError(f"the server answered: {answer}") from None
    assert isinstance(rows, list), answer
    return rows


def test_the_printed_local_server_answers_about_the_loop_and_leaves_the_folder_alone(
    tmp_path: Path,
) -> None:
    log_dir = tmp_path / "logs"
    project = tmp_path / "project"
    project.mkdir()
    (project / "pyproject.toml").write_text(USER_PROJECT)
    (project / "app.py").write_text("print('hello')\n")

    store = {"GENESIS_LOG_DIR": str(log_dir)}
    failed = run_cli(
        "run", "--spec", "spec_042", "--iteration", "1", "--",
        sys.executable, "-c", FAILING, env=store,
    )  # fmt: skip
    assert failed.returncode == 1, failed.stderr
    passed = run_cli(
        "run", "--spec", "spec_042", "--iteration", "2", "--",
        sys.executable, "-c", "print('fixed')", env=store,
    )  # fmt: skip
    assert passed.returncode == 0, passed.stderr

    printed = run_cli("mcp-config", "--local", env=store)
    assert printed.returncode == 0, printed.stderr
    server = json.loads(printed.stdout)["mcpServers"]["clickhouse"]
    command = shutil.which(server["command"], path=os.environ.get("PATH"))
    assert command is not None, (
        f"{server['command']!r} is not on PATH: the printed configuration needs uv "
        "(pip install uv); this test never skips"
    )
    assert "--python" not in server["args"] or "--no-python-downloads" in server["args"]

    before = tree(project)
    tools, (failures, last) = asyncio.run(
        asyncio.wait_for(
            ask(
                server,
                project,
                [
                    "SELECT iteration, exit_code, stderr FROM genesis.logs "
                    "WHERE spec_id = 'spec_042' AND exit_code != 0 ORDER BY timestamp DESC LIMIT 10",
                    "SELECT spec_id, last_iteration, exit_code FROM genesis.last_iterations "
                    "WHERE spec_id = 'spec_042' LIMIT 5",
                ],
            ),
            FIRST_START_TIMEOUT,
        )
    )

    assert "run_chdb_select_query" in tools
    rows = rows_of(failures)
    assert [(row["iteration"], row["exit_code"]) for row in rows] == [(1, 1)]
    assert rows[0]["stderr"] == "TypeError: x is not a function (line 15)\n"
    assert rows_of(last) == [{"spec_id": "spec_042", "last_iteration": 2, "exit_code": 0}]
    after = tree(project)
    assert after == before  # no .venv, no uv.lock, nothing else
    assert not (project / ".venv").exists()
    assert not (project / "uv.lock").exists()
