"""The official ClickHouse MCP server answers the specification's §4 from the local store."""

from __future__ import annotations

import asyncio
import base64
import http.server
import json
import os
import shlex
import subprocess
import sys
import threading
import urllib.parse
from pathlib import Path
from typing import Any, ClassVar

from mcp import ClientSession, StdioServerParameters
from mcp.client.stdio import stdio_client

from tests.support.fakes import run_cli

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


def mcp_config(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return run_cli("mcp-config", *args, env=env)


def printed_server(done: subprocess.CompletedProcess[str]) -> dict[str, Any]:
    assert done.returncode == 0, done.stderr
    server: dict[str, Any] = json.loads(done.stdout)["mcpServers"]["clickhouse"]
    return server


class TestPrintedCommand:
    """What ``mcp-config`` prints starts the official server without touching the folder.

    ``tests/e2e/test_mcp_as_printed.py`` starts it exactly as printed; these check its shape.
    """

    def test_local_mode_runs_the_chdb_extra_as_a_tool_not_in_the_folders_project(
        self, tmp_path: Path
    ) -> None:
        server = printed_server(mcp_config("--local", "--log-dir", str(tmp_path / "logs")))
        assert server["command"] == "uvx"  # uv tool run: its own cached environment
        args = server["args"]
        assert args[args.index("--from") + 1] == "mcp-clickhouse[chdb]>=0.4"
        assert args[-1] == "mcp-clickhouse"
        assert "run" not in args  # `uv run` makes the folder's pyproject.toml its project
        assert "--no-python-downloads" in args
        assert args[args.index("--python") + 1] == ">=3.10"  # any installed interpreter
        assert server["env"]["CHDB_DATA_PATH"] == str((tmp_path / "logs" / ".chdb").resolve())

    def test_docs_show_the_command_printed_today(self, tmp_path: Path) -> None:
        docs = (Path(__file__).parents[2] / "docs" / "mcp.md").read_text()
        local = printed_server(mcp_config("--local", "--log-dir", str(tmp_path / "logs")))
        assert shlex.join([local["command"], *local["args"]]) in docs
        assert json.dumps(local["args"], indent=2).replace("\n", "\n      ") in docs
        server = printed_server(mcp_config("--url", "clickhouses://reader@h/genesis"))
        assert json.dumps(server["args"], indent=2).replace("\n", "\n      ") in docs

    def test_server_mode_does_not_download_the_chdb_engine(self) -> None:
        server = printed_server(mcp_config("--url", "clickhouses://reader@ch.internal/genesis"))
        args = server["args"]
        assert args[args.index("--from") + 1] == "mcp-clickhouse>=0.4"
        assert not any(arg.startswith("chdb") for arg in args)
        assert server["env"]["CHDB_ENABLED"] == "false"

    def test_the_claude_command_line_is_the_same_server(self, tmp_path: Path) -> None:
        log_dir = str(tmp_path / "logs")
        server = printed_server(mcp_config("--local", "--log-dir", log_dir))
        done = mcp_config("--local", "--log-dir", log_dir, "--format", "claude")
        assert done.returncode == 0, done.stderr
        words = shlex.split(done.stdout)
        assert words[:4] == ["claude", "mcp", "add", "clickhouse"]
        split = words.index("--")
        assert words[split + 1 :] == [server["command"], *server["args"]]
        options = words[4:split]
        assert options[0::2] == ["-e"] * len(server["env"])
        assert dict(item.split("=", 1) for item in options[1::2]) == server["env"]


class TestServerMode:
    """Host, port, user, database and TLS come from the URL; the password only when asked."""

    URL = "clickhouses://reader:s3cr%40t-pw@ch.internal:9440/loopdb"
    SECRET = "s3cr@t-pw"

    def test_the_url_configures_the_server_over_https(self) -> None:
        done = mcp_config("--url", self.URL)
        env = printed_server(done)["env"]
        assert {k: v for k, v in env.items() if not k.startswith("UV_")} == {
            "CLICKHOUSE_HOST": "ch.internal",
            "CLICKHOUSE_PORT": "8443",  # the native TLS port 9440 → the HTTPS port
            "CLICKHOUSE_USER": "reader",
            "CLICKHOUSE_PASSWORD": "<password of reader: fill in, or rerun with --with-password>",
            "CLICKHOUSE_DATABASE": "loopdb",
            "CLICKHOUSE_SECURE": "true",
            "CLICKHOUSE_VERIFY": "true",
            "CHDB_ENABLED": "false",
        }
        assert "native port 9440" in done.stderr
        assert self.SECRET not in done.stdout + done.stderr
        assert "s3cr%40t" not in done.stdout + done.stderr
        assert "example.com" not in done.stdout

    def test_clickhouse_url_from_the_environment(self) -> None:
        url = "clickhouse://loop@10.1.2.3:9000/genesis?verify=false"
        env = printed_server(mcp_config(env={"CLICKHOUSE_URL": url}))["env"]
        assert env["CLICKHOUSE_HOST"] == "10.1.2.3"
        assert env["CLICKHOUSE_PORT"] == "8123"  # plain native 9000 → plain HTTP
        assert env["CLICKHOUSE_SECURE"] == "false"
        assert env["CLICKHOUSE_USER"] == "loop"
        assert env["CLICKHOUSE_DATABASE"] == "genesis"

    def test_port_host_and_user_can_be_overridden(self) -> None:
        done = mcp_config(
            "--port", "443", "--host", "proxy.internal", "--readonly-user", "genesis_readonly",
            env={"CLICKHOUSE_URL": self.URL},
        )  # fmt: skip
        env = printed_server(done)["env"]
        assert (env["CLICKHOUSE_HOST"], env["CLICKHOUSE_PORT"]) == ("proxy.internal", "443")
        assert env["CLICKHOUSE_USER"] == "genesis_readonly"
        assert env["CLICKHOUSE_SECURE"] == "true"
        assert "--port" in done.stderr
        assert self.SECRET not in done.stdout + done.stderr

    def test_the_password_is_written_only_when_asked(self) -> None:
        env = printed_server(mcp_config("--url", self.URL, "--with-password"))["env"]
        assert env["CLICKHOUSE_PASSWORD"] == self.SECRET
        from_env = printed_server(
            mcp_config(
                "--with-password",
                env={"CLICKHOUSE_URL": "clickhouse://reader@h/db", "CLICKHOUSE_PASSWORD": "pw2"},
            )
        )["env"]
        assert from_env["CLICKHOUSE_PASSWORD"] == "pw2"
        unasked = mcp_config(
            env={"CLICKHOUSE_URL": "clickhouse://reader@h/db", "CLICKHOUSE_PASSWORD": "pw2"}
        )
        assert "pw2" not in unasked.stdout + unasked.stderr

    def test_another_users_password_is_not_written(self) -> None:
        done = mcp_config("--url", self.URL, "--with-password", "--readonly-user", "someone")
        assert done.returncode == 1
        assert "'reader'" in done.stderr
        assert self.SECRET not in done.stdout + done.stderr

    def test_a_malformed_url_is_refused_without_its_password(self) -> None:
        for url in (
            "clickhouse://reader:s3cr%40t-pw@ch.internal:port/db",
            "http://reader:s3cr%40t-pw@ch.internal/db",
            "clickhouse://reader:s3cr%40t-pw@ch.internal/db/x",
        ):
            done = mcp_config("--url", url, "--with-password")
            assert done.returncode == 1, url
            assert done.stdout == ""
            assert "ClickHouse URL" in done.stderr
            assert "Traceback" not in done.stderr
            assert "s3cr" not in done.stderr

    def test_without_a_server_it_says_how_to_name_one(self) -> None:
        done = mcp_config()
        assert done.returncode == 1
        assert done.stdout == ""
        assert "no ClickHouse server configured" in done.stderr
        for hint in ("--url", "CLICKHOUSE_URL", "--local"):
            assert hint in done.stderr


class _Recorder(http.server.BaseHTTPRequestHandler):
    """Answers every request with a ClickHouse error, after noting where it went and as whom."""

    seen: ClassVar[list[dict[str, str]]] = []

    def do_GET(self) -> None:
        self._record()

    def do_POST(self) -> None:
        self._record()

    def _record(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length).decode(errors="replace")
        query = urllib.parse.parse_qs(urllib.parse.urlsplit(self.path).query)
        auth = self.headers.get("Authorization", "")
        user, password = "", ""
        if auth.startswith("Basic "):
            user, _, password = base64.b64decode(auth[6:]).decode().partition(":")
        self.seen.append(
            {
                "user": user or self.headers.get("X-ClickHouse-User", ""),
                "password": password or self.headers.get("X-ClickHouse-Key", ""),
                "database": query.get("database", [""])[0],
                "sql": body + " ".join(query.get("query", [])),
            }
        )
        if "version()" in self.seen[-1]["sql"]:  # the client's first question: who are you?
            self._answer(200, b"24.8.1.1\tUTC\n")
        else:
            self._answer(500, b"Code: 516. DB::Exception: stopped by the test")

    def _answer(self, status: int, message: bytes) -> None:
        self.send_response(status)
        self.send_header("Content-Length", str(len(message)))
        self.end_headers()
        self.wfile.write(message)

    def log_message(self, format: str, *args: object) -> None:
        """Quiet."""


def test_the_official_server_goes_where_the_printed_configuration_says(tmp_path: Path) -> None:
    """The printed env is read by mcp-clickhouse as meant: its HTTP requests name our user,
    password (asked for) and database, at the host and port the URL and ``--port`` give."""
    _Recorder.seen.clear()
    listener = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Recorder)
    port = listener.server_address[1]
    threading.Thread(target=listener.serve_forever, daemon=True).start()
    try:
        url = "clickhouse://reader:pa%3Ass@127.0.0.1:9000/loopdb"
        server = printed_server(mcp_config("--url", url, "--port", str(port), "--with-password"))
        env = {**os.environ, **server["env"]}
        asyncio.run(asyncio.wait_for(_ask_server_mode(env), 120))
    finally:
        listener.shutdown()
        listener.server_close()
    assert _Recorder.seen, "the MCP server never reached the configured host and port"
    first = _Recorder.seen[0]
    assert (first["user"], first["password"]) == ("reader", "pa:ss")
    assert all(request["database"] in ("", "loopdb") for request in _Recorder.seen)
    assert any(request["database"] == "loopdb" for request in _Recorder.seen), _Recorder.seen


async def _ask_server_mode(env: dict[str, str]) -> None:
    params = StdioServerParameters(
        command=sys.executable, args=["-m", "mcp_clickhouse.main"], env=env
    )
    async with stdio_client(params) as (read, write), ClientSession(read, write) as session:
        await session.initialize()
        tools = [tool.name for tool in (await session.list_tools()).tools]
        assert "run_query" in tools
        await session.call_tool("run_query", {"query": "SELECT 1"})
