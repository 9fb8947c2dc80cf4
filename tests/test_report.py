"""``genesis-logging report``: the numbers equal SQL over the same store; the page renders
in a real headless browser and fetches nothing (issue 15)."""

from __future__ import annotations

import base64
import json
import os
import pty
import re
import shutil
import subprocess
import sys
import textwrap
import time
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from .clickhouse_server import LocalServer, Target
from .fakes import OUTSIDE_CHECKOUT, clean_env, cli_command
from .fakes import run_cli as cli

FLIPPING = textwrap.dedent(
    """
    import os, pathlib

    STATE = pathlib.Path(os.environ["STATE_FILE"])

    def test_stable():
        assert True

    def test_gets_fixed():
        n = int(STATE.read_text()) if STATE.exists() else 0
        assert n >= 2, f"only {n} attempts so far"

    def test_also_fixed():
        n = int(STATE.read_text()) if STATE.exists() else 0
        STATE.write_text(str(n + 1))
        assert n >= 1
    """
)


def three_iterations(tmp_path: Path, env: dict[str, str]) -> None:
    project = tmp_path / "project"
    project.mkdir()
    (project / "test_flip.py").write_text(FLIPPING)
    env = {**env, "STATE_FILE": str(tmp_path / "state")}
    for _ in range(3):
        cli(
            "run", "--spec", "flip", "--iteration", "auto", "--snapshot", str(project),
            "--", sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(project),
            env=env,
        )  # fmt: skip


def sql(env: dict[str, str], query: str) -> list[dict[str, Any]]:
    done = cli("query", query, "--format", "json", env=env)
    assert done.returncode == 0, done.stderr
    return [json.loads(line) for line in done.stdout.splitlines()]


def logs(env: dict[str, str]) -> tuple[str, str]:
    if "GENESIS_LOG_DIR" in env:
        return "genesis.logs", "attributes['outcome']"
    return env["CLICKHOUSE_URL"].rsplit("/", 1)[
        1
    ] + ".logs", "visitParamExtractString(attributes, 'outcome')"


@pytest.mark.integration
class TestNumbers:
    """What the report says is what SQL over the same store says."""

    def test_terminal_json_and_page_equal_sql(
        self, store_env: dict[str, str], tmp_path: Path
    ) -> None:
        three_iterations(tmp_path, store_env)
        table, outcome = logs(store_env)
        expected = sql(
            store_env,
            f"SELECT iteration, argMax(exit_code, timestamp) AS exit_code, "
            f"argMax(duration_ms, timestamp) AS duration_ms FROM {table} "
            "WHERE spec_id = 'flip' AND logger = 'genesis.run' GROUP BY iteration ORDER BY iteration",
        )
        failing = {
            int(r["iteration"]): int(r["n"])
            for r in sql(
                store_env,
                f"SELECT iteration, countIf({outcome} IN ('failed', 'error')) AS n FROM {table} "
                "WHERE spec_id = 'flip' AND logger = 'genesis.pytest' GROUP BY iteration",
            )
        }
        assert [int(r["exit_code"]) != 0 for r in expected] == [True, True, False]

        data = json.loads(cli("report", "flip", "--format", "json", env=store_env).stdout)
        assert [
            (line["iteration"], line["exit_code"], line["duration_ms"], line["failing_tests"])
            for line in data["iterations"]
        ] == [
            (
                int(r["iteration"]),
                int(r["exit_code"]),
                int(r["duration_ms"]),
                failing[int(r["iteration"])],
            )
            for r in expected
        ]
        assert data["iterations_to_green"] == 3
        assert data["total_ms"] == sum(int(r["duration_ms"]) for r in expected)

        text = cli("report", "flip", env=store_env).stdout
        lines = [line for line in text.splitlines() if re.match(r"\s+[✔✘]", line)]
        assert len(lines) == 3
        for line, row in zip(lines, expected, strict=True):
            assert f"exit {int(row['exit_code']):>3}" in line
            assert f"{failing[int(row['iteration'])]} failing tests" in line
            assert ("✔" in line) == (int(row["exit_code"]) == 0)
        assert "\033[" not in text  # no colour off a terminal
        assert text.splitlines()[-1].strip().startswith("green after 3 iterations")

        page_file = tmp_path / "flip.html"
        cli("report", "flip", "--html", str(page_file), env=store_env)
        page = page_file.read_text()
        for row in expected:
            seconds = f"{int(row['duration_ms']) / 1000:.1f} s"
            assert f"iteration {row['iteration']}: exit {row['exit_code']}, {seconds}" in page
        assert "test_gets_fixed" in page  # among the tests that took longest to go green

    def test_all_specs(self, store_env: dict[str, str], tmp_path: Path) -> None:
        three_iterations(tmp_path, store_env)
        cli(
            "run",
            "--spec",
            "never",
            "--iteration",
            "1",
            "--",
            sys.executable,
            "-c",
            "raise SystemExit(1)",
            env=store_env,
        )
        data = json.loads(cli("report", "--all", "--format", "json", env=store_env).stdout)
        assert [(d["spec"], d["iterations"], d["first_green"], d["pass_rate"]) for d in data] == [
            ("flip", 3, 3, pytest.approx(1 / 3)),
            ("never", 1, None, 0.0),
        ]
        text = cli("report", "--all", env=store_env).stdout
        assert re.search(r"flip\s+3\s+3\s+33%", text)


def chromium() -> str:
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    assert found, "chromium is not installed (.ci/run installs Debian's chromium)"
    return found


class Browser:
    """Headless Chromium, driven over the DevTools protocol (no JavaScript in the page)."""

    def __init__(self, url: str, profile: Path) -> None:
        self.process = subprocess.Popen(
            [chromium(), "--headless=new", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
             "--remote-debugging-port=0", f"--user-data-dir={profile}", "--window-size=1000,900",
             "about:blank"],
            stderr=subprocess.PIPE, text=True,
        )  # fmt: skip
        assert self.process.stderr is not None
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            line = self.process.stderr.readline()
            match = re.search(r"DevTools listening on (ws://\S+)", line)
            if match:
                break
        else:
            raise AssertionError("chromium did not start")
        port = match.group(1).split(":")[2].split("/")[0]
        targets = json.load(
            urllib.request.urlopen(f"http://127.0.0.1:{port}/json/list", timeout=10)
        )
        page = next(t for t in targets if t["type"] == "page")
        from websockets.sync.client import connect

        self.socket = connect(page["webSocketDebuggerUrl"], max_size=None)
        self.next_id = 0
        self.events: list[dict[str, Any]] = []
        self.call("Network.enable")
        self.call("Page.enable")
        self.call("Page.navigate", url=url)
        self.wait_for("Page.loadEventFired")

    def call(self, method: str, **params: Any) -> dict[str, Any]:
        self.next_id += 1
        self.socket.send(json.dumps({"id": self.next_id, "method": method, "params": params}))
        while True:
            message = json.loads(self.socket.recv(timeout=30))
            if message.get("id") == self.next_id:
                assert "error" not in message, message
                return dict(message.get("result", {}))
            self.events.append(message)

    def wait_for(self, event: str) -> None:
        deadline = time.monotonic() + 30
        while not any(e.get("method") == event for e in self.events):
            assert time.monotonic() < deadline, f"no {event}"
            self.events.append(json.loads(self.socket.recv(timeout=30)))

    def close(self) -> None:
        self.socket.close()
        self.process.kill()
        self.process.wait(30)


class TestPage:
    """The page in a real browser: it renders, its SVG has a size, it fetches nothing."""

    def test_rendered_offline(self, tmp_path: Path) -> None:
        env = {"GENESIS_LOG_DIR": str(tmp_path / "logs")}
        three_iterations(tmp_path, env)
        page = tmp_path / "flip.html"
        assert cli("report", "flip", "--html", str(page), env=env).returncode == 0
        browser = Browser(page.as_uri(), tmp_path / "profile")
        try:
            found = browser.call(
                "Runtime.evaluate",
                expression="JSON.stringify(document.querySelector('svg').getBoundingClientRect())",
                returnByValue=True,
            )
            box = json.loads(found["result"]["value"])
            shot = browser.call("Page.captureScreenshot", format="png")
        finally:
            browser.close()
        assert box["width"] > 0
        assert box["height"] > 0
        requests = [
            e["params"]["request"]["url"]
            for e in browser.events
            if e.get("method") == "Network.requestWillBeSent"
        ]
        assert requests == [page.as_uri()]  # the page itself, nothing else
        png = base64.b64decode(shot["data"])
        assert png.startswith(b"\x89PNG")
        assert len(png) > 10_000
        (tmp_path / "report.png").write_bytes(png)


@pytest.mark.integration
def test_load_shows_a_progress_bar_on_a_terminal(
    running_local_server: LocalServer, tmp_path: Path
) -> None:
    target = Target("local", running_local_server.host, running_local_server.port)
    target.create_logs_table("report_load", "logs")
    lines = tmp_path / "console.jsonl"
    lines.write_text("".join(
        json.dumps({"timestamp": "2026-11-28T10:00:00.000Z", "level": "info", "message": f"m{i}"}) + "\n"
        for i in range(50)
    ))  # fmt: skip
    leader, follower = pty.openpty()
    done = subprocess.run(
        cli_command("load", str(lines), "--url", target.url("report_load"), "--batch-size", "10"),
        stdout=subprocess.PIPE, stderr=follower, text=True, timeout=120,
        env=clean_env(), cwd=OUTSIDE_CHECKOUT,
    )  # fmt: skip
    os.close(follower)
    shown = os.read(leader, 65536).decode()
    os.close(leader)
    assert done.returncode == 0, done.stdout
    assert "[##############################] 100%  50 records loaded" in shown
