"""The whole loop on a real project's own suite, as an assistant lives it (issue 19, "Done when").

more-itertools' sdist, fetched from the package index now (never copied into our repo), is
the project: its unittest suite has thousands of ``self.subTest`` cases. The official MCP
server is started exactly as ``mcp-config --local`` prints it and stays connected while a
bug is put into ``split_at`` and taken out again. Each iteration's counts in the store must
equal pytest's own summary line, subtests included; ``run`` must add at most 4 KiB of its
own; ``failures`` must open with the latest state; ``verify`` must notice an added file.

Nothing here skips: no uv, no package index or no sdist is a failure. The bytes every
command printed are printed at the end (``pytest -rP`` shows them; ``docs/tdd-loop.md``
quotes them).
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import shutil
import subprocess
import sys
import tarfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

from mcp import ClientSession, StdioServerParameters
from mcp.client.stdio import stdio_client

from tests.support.fakes import clean_env

PROJECT: Final = "more-itertools"
VERSION: Final = "11.2.1"  # pinned: the bug below is a line of this version's split_at
PACKAGE: Final = "more_itertools"  # the snapshotted source tree
SPEC: Final = "mi_split_at"
#: The project's own module of tests, less five slow ones (~75 % of its CPU time) so that
#: three iterations fit in the e2e budget; 612 tests and ~3 500 subtests remain.
PYTEST_ARGS: Final = (
    "-m", "pytest", "-q", "tests/test_more.py",
    "-k", "not test_roundtrip and not test_concurrent and not test_all_orderings"
    " and not test_lcg_mitigation and not test_early_free",
)  # fmt: skip
#: The bug: ``split_at`` counts each split twice, so ``maxsplit`` stops being honoured. It
#: fails one plain test (``test_combination``) and two subtests of ``test_maxsplit``.
CORRECT_LINE: Final = "            maxsplit -= 1\n"
BUGGY_LINE: Final = "            maxsplit -= 2\n"
RUN_OWN_OUTPUT_LIMIT: Final = 4 * 1024  # bytes `run` may add to the command's own output
SESSION_TIMEOUT: Final = 1500.0  # seconds; a cold uv cache downloads the server's packages
COMMAND_TIMEOUT: Final = 600.0

_SUMMARY: Final = re.compile(
    r"^=*\s*(?P<counts>\d+ [a-z].*?) in \d+(?:\.\d+)?s(?: \([0-9:]+\))?\s*=*$", re.MULTILINE
)
_FAILED_TEST: Final = re.compile(r"^(?:FAILED|ERROR) (\S+)", re.MULTILINE)
_FAILED_SUBTEST: Final = re.compile(r"^SUBFAILED(?:\[.*?\])?\((.*?)\) (\S+)", re.MULTILINE)
_NOUNS: Final = {"errors": "error", "warning": "warnings"}  # pytest's plurals, as the store names


@dataclass
class Printed:
    """What one command printed, in bytes, and how long it took (measured, not asserted)."""

    command: str
    stdout: int
    stderr: int
    seconds: float


@dataclass
class User:
    """A developer at a terminal in the project folder, with the local store configured."""

    project: Path
    log_dir: Path
    printed: list[Printed] = field(default_factory=list)

    def genesis(self, *args: str, label: str = "") -> subprocess.CompletedProcess[str]:
        """``genesis-logging ARGS`` as installed (the console script), from the project folder."""
        script = Path(sys.executable).with_name("genesis-logging")
        assert script.exists(), f"{script} is missing: genesis-logging is not installed here"
        env = clean_env({"GENESIS_LOG_DIR": str(self.log_dir)})
        env.pop("PYTHONDONTWRITEBYTECODE", None)  # a user's tree gets __pycache__ folders
        started = time.monotonic()
        done = subprocess.run(
            [str(script), *args],
            cwd=self.project,
            env=env,
            capture_output=True,
            text=True,
            timeout=COMMAND_TIMEOUT,
        )
        self.printed.append(
            Printed(
                label or " ".join(args),
                len(done.stdout.encode()),
                len(done.stderr.encode()),
                time.monotonic() - started,
            )
        )
        return done

    def table(self) -> str:
        lines = [f"{'command':<44} {'stdout B':>9} {'stderr B':>9} {'seconds':>8}"]
        lines += [
            f"{p.command[:44]:<44} {p.stdout:>9} {p.stderr:>9} {p.seconds:>8.1f}"
            for p in self.printed
        ]
        return "\n".join(lines)


def fetch_project(tmp_path: Path) -> Path:
    """The sdist from the package index, unpacked: a project folder with its own pyproject."""
    downloads = tmp_path / "downloads"
    done = subprocess.run(
        [
            sys.executable, "-m", "pip", "download", "--no-binary", ":all:", "--no-deps",
            "--dest", str(downloads), f"{PROJECT}=={VERSION}",
        ],
        capture_output=True, text=True, timeout=COMMAND_TIMEOUT,
    )  # fmt: skip
    assert done.returncode == 0, f"cannot fetch {PROJECT}=={VERSION}: {done.stderr[-2000:]}"
    (archive,) = downloads.glob("*.tar.gz")
    with tarfile.open(archive) as sdist:
        sdist.extractall(tmp_path, filter="data")
    (project,) = (p for p in tmp_path.iterdir() if p.is_dir() and p.name != "downloads")
    assert (project / "pyproject.toml").is_file()
    assert (project / "tests" / "test_more.py").is_file(), "the sdist no longer ships its tests"
    return project


def summary_counts(stdout: str) -> dict[str, int]:
    """pytest's own closing line, as ``tests_<category>`` counts (the store's names)."""
    lines = _SUMMARY.findall(stdout)
    assert lines, f"no pytest summary line in:\n{stdout[-3000:]}"
    counts: dict[str, int] = {}
    for part in lines[-1].split(", "):
        number, noun = part.split(" ", 1)
        counts["tests_" + _NOUNS.get(noun, noun).replace(" ", "_")] = int(number)
    return counts


def failing_node_ids(stdout: str) -> set[str]:
    """The tests pytest's short summary names as failed, errored or with a failed subtest."""
    return set(_FAILED_TEST.findall(stdout)) | {n for _, n in _FAILED_SUBTEST.findall(stdout)}


def rows(done: subprocess.CompletedProcess[str]) -> list[dict[str, Any]]:
    """The rows of ``query --format json`` (one JSON object a line)."""
    assert done.returncode == 0, done.stderr
    return [json.loads(line) for line in done.stdout.splitlines() if line.strip()]


def stored_counts(user: User, iteration: int) -> dict[str, int]:
    """The non-zero ``tests_*`` counts of the iteration's test_summary record in the store."""
    found = rows(
        user.genesis(
            "query",
            "SELECT attributes FROM genesis.logs "
            f"WHERE spec_id = '{SPEC}' AND iteration = {iteration} "
            "AND attributes['kind'] = 'test_summary'",
            "--format",
            "json",
            label=f"query (test_summary of iteration {iteration})",
        )
    )
    assert len(found) == 1, f"iteration {iteration}: {len(found)} test_summary records"
    attributes = found[0]["attributes"]
    return {
        key: int(value)
        for key, value in attributes.items()
        if key.startswith("tests_") and key != "tests_collected" and int(value)
    }


async def answer(session: ClientSession, sql: str) -> list[dict[str, Any]]:
    """The MCP server's rows for ``sql``, through the tool it registers for chDB."""
    result = await session.call_tool("run_chdb_select_query", {"query": sql})
    text = result.content[0].text if result.content else ""  # type: ignore[union-attr]
    try:
        parsed = json.loads(text)
    except ValueError:
        raise AssertionError(f"the MCP server answered: {text[:2000]}") from None
    assert isinstance(parsed, list), text[:2000]
    return parsed


async def last_iteration_seen(session: ClientSession, expected: int) -> int:
    """The spec's last iteration as the assistant sees it, asked until it arrives (≤ 5 s)."""
    sql = f"SELECT max(iteration) AS last FROM genesis.logs WHERE spec_id = '{SPEC}'"
    deadline = time.monotonic() + 5.0
    while True:
        seen = int((await answer(session, sql))[0]["last"])
        if seen >= expected or time.monotonic() > deadline:
            return seen
        await asyncio.sleep(0.2)


def put_in_the_bug(source: Path) -> str:
    """Make ``split_at`` count each split twice; returns the original text."""
    original = source.read_text()
    start = original.index("\ndef split_at(")
    end = original.index("\ndef ", start + 1)
    body = original[start:end]
    assert body.count(CORRECT_LINE) == 1, "split_at changed: pick the bug's line again"
    source.write_text(original[:start] + body.replace(CORRECT_LINE, BUGGY_LINE) + original[end:])
    return original


@dataclass
class Iteration:
    number: int
    done: subprocess.CompletedProcess[str]

    @property
    def counts(self) -> dict[str, int]:
        return summary_counts(self.done.stdout)


class Assistant:
    """The loop as the assistant drives it, with the MCP session open throughout."""

    def __init__(self, user: User, session: ClientSession) -> None:
        self.user = user
        self.session = session

    async def genesis(self, *args: str, label: str = "") -> subprocess.CompletedProcess[str]:
        # In a thread: the event loop keeps serving the MCP session meanwhile.
        return await asyncio.to_thread(self.user.genesis, *args, label=label)

    async def iterate(self, number: int, *, green: bool) -> Iteration:
        done = await self.genesis(
            "run", "--spec", SPEC, "--iteration", "auto", "--snapshot", PACKAGE,
            "--", sys.executable, *PYTEST_ARGS,
            label=f"run (iteration {number}, {'green' if green else 'red'})",
        )  # fmt: skip
        run = Iteration(number, done)
        assert (done.returncode == 0) is green, (done.returncode, done.stdout[-3000:], done.stderr)
        # run's own output: everything on stderr (pytest itself writes only to stdout)
        assert len(done.stderr.encode()) <= RUN_OWN_OUTPUT_LIMIT, (
            f"run printed {len(done.stderr.encode())} bytes of its own:\n{done.stderr[:3000]}"
        )
        assert run.counts.get("tests_subtests_passed", 0) > 0, "no subtests ran: the point is lost"
        assert stored_counts(self.user, number) == run.counts, done.stdout[-1000:]
        assert await last_iteration_seen(self.session, number) == number
        return run

    async def red(self) -> Iteration:
        """Iteration 2, with the bug: ``failures`` names what pytest named; ``show`` is bounded."""
        red = await self.iterate(2, green=False)
        assert _FAILED_SUBTEST.findall(red.done.stdout), "the bug must fail subtests too"
        assert red.counts.get("tests_failed", 0) >= 2

        failures = await self.genesis("failures", SPEC, label="failures (red)")
        assert failures.returncode == 0, failures.stderr
        for node_id in failing_node_ids(red.done.stdout):
            assert node_id in failures.stdout, (node_id, failures.stdout)

        shown = await self.genesis("show", SPEC, "--iteration", "2", label="show (iteration 2)")
        assert shown.returncode == 0, shown.stderr
        assert "def split_at(" not in shown.stdout  # the code only when asked
        return red

    async def green_again(self) -> None:
        """Iteration 3, fixed: green first, ``diff`` per file, ``verify`` on the whole tree."""
        await self.iterate(3, green=True)

        diff = await self.genesis("diff", SPEC, "2", "3", label="diff 2 3")
        assert diff.returncode == 0, diff.stderr
        assert "more.py" in diff.stdout, diff.stdout[:3000]  # per file, with its name
        assert BUGGY_LINE.strip() in diff.stdout, diff.stdout[:3000]

        failures = await self.genesis("failures", SPEC, label="failures (green)")
        assert failures.returncode == 0, failures.stderr
        first = failures.stdout.splitlines()[0] if failures.stdout else ""
        assert "iteration 3" in first, failures.stdout[:2000]
        assert "green" in first.lower(), failures.stdout[:2000]

        verified = await self.genesis("verify", SPEC, label="verify (unchanged)")
        assert verified.returncode == 0, verified.stdout + verified.stderr

        (self.user.project / PACKAGE / "extra.py").write_text("def helper():\n    return 1\n")
        changed = await self.genesis("verify", SPEC, label="verify (a file added)")
        assert changed.returncode != 0, changed.stdout + changed.stderr
        assert "extra.py" in changed.stdout + changed.stderr

    async def ask_about(self, red: Iteration) -> None:
        """The same MCP session, about iteration 2: pytest's count, names and subtests."""
        where = f"spec_id = '{SPEC}' AND iteration = {red.number}"
        (summary,) = await answer(
            self.session,
            "SELECT attributes['tests_failed'] AS failed FROM genesis.logs "
            f"WHERE {where} AND attributes['kind'] = 'test_summary'",
        )
        assert int(summary["failed"]) == red.counts["tests_failed"]
        named = await answer(
            self.session,
            "SELECT DISTINCT attributes['test'] AS test FROM genesis.logs "
            f"WHERE {where} AND attributes['kind'] IN ('test', 'subtest') "
            "AND attributes['outcome'] IN ('failed', 'error') ORDER BY test",
        )
        assert {row["test"] for row in named} == failing_node_ids(red.done.stdout)
        subtests = await answer(
            self.session,
            "SELECT message FROM genesis.logs "
            f"WHERE {where} AND attributes['kind'] = 'subtest' "
            "AND attributes['outcome'] = 'failed'",
        )
        messages = [str(row["message"]) for row in subtests]
        subfailed = _FAILED_SUBTEST.findall(red.done.stdout)
        assert len(messages) == len(subfailed), messages
        for params, node_id in subfailed:  # each with its parameters, as pytest wrote them
            assert any(f"{node_id} ({params})" in m for m in messages), (params, messages)


async def the_loop(user: User, server: dict[str, Any]) -> None:
    params = StdioServerParameters(
        command=server["command"],
        args=list(server["args"]),
        env=dict(server["env"]),
        cwd=user.project,  # a client starts it in the user's project, pyproject.toml and all
    )
    async with stdio_client(params) as (read, write), ClientSession(read, write) as session:
        await session.initialize()
        tools = [tool.name for tool in (await session.list_tools()).tools]
        assert "run_chdb_select_query" in tools, tools
        assistant = Assistant(user, session)
        source = user.project / PACKAGE / "more.py"

        await assistant.iterate(1, green=True)
        original = put_in_the_bug(source)
        red = await assistant.red()
        source.write_text(original)
        await assistant.green_again()
        await assistant.ask_about(red)


def test_the_loop_on_a_real_project_with_the_mcp_server_connected(tmp_path: Path) -> None:
    project = fetch_project(tmp_path)
    user = User(project, Path(".genesis/logs"))  # relative, as docs/tdd-loop.md sets it
    try:
        printed = user.genesis("mcp-config", "--local")
        assert printed.returncode == 0, printed.stderr
        server = json.loads(printed.stdout)["mcpServers"]["clickhouse"]
        assert shutil.which(server["command"], path=os.environ.get("PATH")), (
            f"{server['command']!r} is not on PATH: the printed configuration needs it "
            "(pip install uv); this test never skips"
        )
        asyncio.run(asyncio.wait_for(the_loop(user, server), SESSION_TIMEOUT))
        # the server ran in the project folder and left it as it was
        assert not (project / ".venv").exists()
        assert not (project / "uv.lock").exists()
    finally:
        print(f"\nbytes each command printed ({PROJECT} {VERSION}):\n{user.table()}")
