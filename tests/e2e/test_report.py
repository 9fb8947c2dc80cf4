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

from genesis_logging.report import IterationLine, SpecReport, state
from tests.support.fakes import OUTSIDE_CHECKOUT, clean_env, cli_command
from tests.support.fakes import run_cli as cli
from tests.support.server import LocalServer, Target

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
        assert (
            text.splitlines()[-1]
            .strip()
            .startswith("iteration 3 is green; first green after 3 iterations")
        )

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

        typo = cli("report", "flpi", "--html", str(tmp_path / "typo.html"), env=store_env)
        assert typo.returncode != 0
        assert "no runs for spec 'flpi'" in typo.stderr
        assert "did you mean flip" in typo.stderr
        assert not (tmp_path / "typo.html").exists()


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


def calc_project(tmp_path: Path, env: dict[str, str]) -> Path:
    """Two iterations of a project whose fix changes one file, adds one and removes one."""
    project = tmp_path / "calc"
    project.mkdir()
    (project / "calc.py").write_text("def add(a, b):\n    return a - b\n")
    (project / "legacy.py").write_text("OLD = 1\n")
    (project / "test_calc.py").write_text(
        "from calc import add\n\ndef test_add():\n    assert add(2, 3) == 5\n"
    )
    for _ in range(2):
        cli(
            "run", "--spec", "calc", "--iteration", "auto", "--snapshot", str(project),
            "--", sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(project),
            env=env,
        )  # fmt: skip
        (project / "calc.py").write_text("def add(a, b):\n    return a + b\n")
        (project / "legacy.py").unlink(missing_ok=True)
        (project / "helpers.py").write_text("def double(x):\n    return add(x, x)\n")
    return project


# What a person sees: the text of each table cell that is rendered and has a size (a cell
# hidden by CSS or squeezed to nothing is null), the headings, the page's visible text.
SEEN = """(() => {
  const seen = el => el.checkVisibility() && el.getBoundingClientRect().width > 0
    && el.getBoundingClientRect().height > 0;
  const text = el => seen(el) ? el.innerText.trim() : null;
  const table = sel => [...document.querySelectorAll(sel + ' tr')].map(
    tr => [...tr.cells].map(text));
  return JSON.stringify({
    grid: table('table.grid'), failures: table('table.failures'), rows: table('table.rows'),
    summary: [...document.querySelectorAll('.summary')].map(text),
    files: [...document.querySelectorAll('h3')].map(text),
    diff: [...document.querySelectorAll('pre.diff')].map(text),
    inView: [...document.querySelectorAll('table.grid tr.iteration td')].filter(td => {
      const box = td.getBoundingClientRect();
      return box.left >= 0 && box.right <= window.innerWidth; }).map(text),
    body: document.body.innerText});
})()"""


def render(page: Path, profile: Path) -> tuple[dict[str, Any], list[str], bytes]:
    """The page in headless Chromium: what is seen, what was fetched, a screenshot."""
    browser = Browser(page.as_uri(), profile)
    try:
        found = browser.call("Runtime.evaluate", expression=SEEN, returnByValue=True)
        shot = browser.call("Page.captureScreenshot", format="png")
    finally:
        browser.close()
    requests = [
        e["params"]["request"]["url"]
        for e in browser.events
        if e.get("method") == "Network.requestWillBeSent"
    ]
    return json.loads(found["result"]["value"]), requests, base64.b64decode(shot["data"])


class TestPage:
    """The page in a real browser: what matters is visible text, and it fetches nothing."""

    def test_rendered_offline(self, tmp_path: Path) -> None:
        env = {"GENESIS_LOG_DIR": str(tmp_path / "logs")}
        three_iterations(tmp_path, env)
        page = tmp_path / "flip.html"
        assert cli("report", "flip", "--html", str(page), env=env).returncode == 0
        data = json.loads(cli("report", "flip", "--format", "json", env=env).stdout)
        seen, requests, png = render(page, tmp_path / "profile")
        assert requests == [page.as_uri()]  # the page itself, nothing else
        assert png.startswith(b"\x89PNG")
        assert len(png) > 10_000
        (tmp_path / "report.png").write_bytes(png)

        # Every iteration labelled with its number and its duration, as text.
        grid = {row[0]: row[1:] for row in seen["grid"]}
        assert grid["iteration"] == ["1", "2", "3"]
        assert seen["inView"] == ["1", "2", "3"]
        assert grid["duration"] == [
            f"{line['duration_ms'] / 1000:.1f} s" for line in data["iterations"]
        ]
        assert grid["exit code"] == [str(line["exit_code"]) for line in data["iterations"]]
        assert grid["failing tests"] == ["2", "1", "0"]
        # The code did not change while the outcomes did: flaky, said in words.
        assert grid["flaky"] == ["flaky" if line["flaky"] else "" for line in data["iterations"]]
        assert "flaky" in grid["flaky"]
        # Tests x iterations: the tests that ever failed, the most recently failing first.
        tests = [row for row in seen["grid"] if row[0] and "::" in row[0]]
        assert [(row[0].split("::")[1], row[1:]) for row in tests] == [
            ("test_gets_fixed", ["✘", "✘", "✔"]),
            ("test_also_fixed", ["✘", "✔", "✔"]),
        ]
        assert "1 test never failed (not shown)" in seen["body"]
        assert "✔ passed" in seen["body"]
        assert "✘ failed" in seen["body"]
        # Each failing test's assertion line, with the iterations it failed in.
        assert [(row[0].split("::")[-1], row[1], row[2]) for row in seen["failures"]] == [
            ("test", "iterations", "assertion"),
            ("test_gets_fixed", "1–2", "AssertionError: only 1 attempts so far"),
            ("test_also_fixed", "1", "assert 0 >= 1"),
        ]
        # The pass rate with its number.
        assert seen["summary"] == [
            "iteration 3 is green; first green after 3 iterations; 3 iterations, "
            f"{data['total_ms'] / 1000:.1f} s in all; "
            "pass rate 33% (1 of 3 runs passed)"
        ]
        assert data["pass_rate"] == pytest.approx(1 / 3)
        assert "(the code is equal)" in seen["body"]  # the test file did not change

    def test_changes_per_file(self, tmp_path: Path) -> None:
        env = {"GENESIS_LOG_DIR": str(tmp_path / "logs")}
        project = calc_project(tmp_path, env)
        page = tmp_path / "calc.html"
        assert cli("report", "calc", "--html", str(page), env=env).returncode == 0
        seen, requests, _ = render(page, tmp_path / "profile")
        assert requests == [page.as_uri()]
        assert "What changed from red iteration 1 to green iteration 2" in seen["body"]
        assert f"3 files changed, 1 unchanged in {project}." in seen["body"]
        assert seen["files"] == [
            "calc.py changed: +1 −1",
            "helpers.py added: 2 lines",
            "legacy.py removed: 1 line",
        ]
        assert seen["diff"][0].splitlines() == [
            "@@ -1,2 +1,2 @@",
            " def add(a, b):",
            "-    return a - b",
            "+    return a + b",
        ]
        assert "@@ -7114" not in seen["body"]
        data = json.loads(cli("report", "calc", "--format", "json", env=env).stdout)
        assert [(c["path"], c["status"]) for c in data["changed_files"]] == [
            (str(project / "calc.py"), "changed"),
            (str(project / "helpers.py"), "added"),
            (str(project / "legacy.py"), "removed"),
        ]

    def test_all_specs_pass_rate(self, tmp_path: Path) -> None:
        env = {"GENESIS_LOG_DIR": str(tmp_path / "logs")}
        three_iterations(tmp_path, env)
        cli("run", "--spec", "never", "--iteration", "1", "--",
            sys.executable, "-c", "raise SystemExit('boom: no config')", env=env)  # fmt: skip
        page = tmp_path / "all.html"
        assert cli("report", "--all", "--html", str(page), env=env).returncode == 0
        seen, requests, _ = render(page, tmp_path / "profile")
        assert requests == [page.as_uri()]
        assert [(row[0], row[3]) for row in seen["rows"]] == [
            ("spec", "pass rate"),
            ("flip", "33% (1 of 3 runs)"),
            ("never", "0% (0 of 1 runs)"),
        ]
        # A red run without per-test records: the line of its own output.
        data = json.loads(cli("report", "never", "--format", "json", env=env).stdout)
        assert data["failures"] == [{"test": "", "line": "boom: no config", "iterations": [1]}]


def large_store(directory: Path, iterations: int, failing: int, green: int) -> None:
    """Records as the loop writes them: ``failing`` tests that each fail once, ``green``
    tests that never fail, and a failing record of another kind (a subtest)."""
    from genesis_logging._codec import row_to_json_line

    directory.mkdir()
    started = 1_764_300_000_000
    with open(directory / "genesis-big-1.jsonl", "w", encoding="utf-8") as out:
        for i in range(1, iterations + 1):
            names = [f"test_f{t:02}" for t in range(failing)] + [
                f"test_g{t}" for t in range(green)
            ]
            for t, name in enumerate(names):
                failed = t < failing and i == 1 + t % iterations
                out.write(row_to_json_line({
                    "timestamp": started + i * 1000 + t, "spec_id": "big", "iteration": i,
                    "logger": "genesis.pytest", "duration_ms": 5, "message": name,
                    "stderr": f"E   assert {t} == -1" if failed else "",
                    "attributes": {"kind": "test", "test": f"test_big.py::{name}",
                                   "outcome": "failed" if failed else "passed", "code_hash": ""},
                }))  # fmt: skip
            out.write(row_to_json_line({
                "timestamp": started + i * 1000 + 900, "spec_id": "big", "iteration": i,
                "logger": "genesis.pytest", "duration_ms": 1, "message": "subtest",
                "stderr": "E   assert 1 == 2",
                "attributes": {"kind": "subtest", "test": "test_big.py::test_sub [x=1]",
                               "outcome": "failed", "code_hash": ""},
            }))  # fmt: skip
            out.write(row_to_json_line({
                "timestamp": started + i * 1000 + 999, "spec_id": "big", "iteration": i,
                "logger": "genesis.run", "exit_code": int(i <= failing), "message": "run",
                "duration_ms": 1000 + 12 * i, "attributes": {"code_hash": ""},
            }))  # fmt: skip


def test_large_spec_is_bounded(tmp_path: Path) -> None:
    """A long loop on a large suite: capped columns and rows, each cut said in words."""
    env = {"GENESIS_LOG_DIR": str(tmp_path / "logs")}
    large_store(tmp_path / "logs", iterations=75, failing=50, green=10)
    page = tmp_path / "big.html"
    done = cli("report", "big", "--html", str(page), env=env)
    assert done.returncode == 0, done.stderr
    seen, _, _ = render(page, tmp_path / "profile")
    grid = {row[0]: row[1:] for row in seen["grid"]}
    assert grid["iteration"] == [
        *(str(i) for i in range(1, 11)),
        "… 15 …",
        *(str(i) for i in range(26, 76)),
    ]
    assert grid["duration"][:2] == ["1.0 s", "1.0 s"]
    # The grid scrolls sideways and opens on the latest iterations.
    assert seen["inView"][-1] == "75"
    assert "1" not in seen["inView"]
    assert grid["duration"][-1] == "1.9 s"
    tests = [row for row in seen["grid"] if row[0] and row[0].startswith("test_big.py::")]
    # The 40 that failed most recently; test_f49 failed in iteration 50.
    assert [row[0] for row in tests] == [f"test_big.py::test_f{t:02}" for t in range(49, 9, -1)]
    assert tests[0][1 + 10 + 1 + (50 - 26)] == "✘"
    assert "10 more tests failed at least once" in seen["body"]
    assert "10 tests never failed (not shown)" in seen["body"]
    assert "15 iterations between 10 and the latest 50 not shown" in seen["body"]
    assert len(seen["failures"]) == 1 + 30
    assert seen["failures"][1][1:] == ["50", "assert 49 == -1"]
    assert "20 more failures not shown." in seen["body"]


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


class TestState:
    """The summary says the latest iteration's outcome first (the e2e user read "green
    after 1 iterations" for a spec that was green, red, then green)."""

    @staticmethod
    def spec(*passed: bool) -> SpecReport:
        lines = [
            IterationLine(n, ok, 0 if ok else 1, 10, None, False) for n, ok in enumerate(passed, 1)
        ]
        return SpecReport("s", lines)

    def test_green_red_green(self) -> None:
        assert state(self.spec(True, False, True)) == (
            "iteration 3 is green; first green after 1 iteration"
        )

    def test_red_after_green(self) -> None:
        assert (
            state(self.spec(True, True, False)) == "iteration 3 is red; last green at iteration 2"
        )

    def test_never_green(self) -> None:
        assert state(self.spec(False, False)) == "iteration 2 is red; never green yet"
