"""The local store's index answers the loop's reads as chDB's view does, without chDB.

Every store here is written by the real ``LocalStoreHandler`` (and ``run_and_log``); each
answer of the index is compared with the same question asked in SQL through chDB.
"""

from __future__ import annotations

import json
import logging
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from genesis_logging.local_store import LocalStoreHandler
from genesis_logging.runner import run_and_log
from genesis_logging.store import LocalStore, select_records, spec_ids
from tests.support.fakes import OUTSIDE_CHECKOUT, clean_env, cli_command
from tests.support.fakes import run_cli as cli

#: Text that breaks naive readers: line separators, escapes, quotes, non-ASCII, long runs.
ODD = [
    "plain",
    "NEL\x85 and LS\u2028 and PS\u2029 inside",
    'quotes " and backslashes \\ and \\" and a trailing backslash \\',
    "new\nlines\r\nand\ttabs",
    "naïve — ünïcödé 漢字 🐍",
    "x" * 300,  # longer than the index keeps inline
    '"stderr": "a key inside a value"',
    "\\" * 40 + '"',
    "",
]
RUN_COLUMNS = ["iteration", "exit_code", "duration_ms", "timestamp", "stdout", "stderr"]
TEST_COLUMNS = ["iteration", "duration_ms", "stderr", "stdout", "level", "message", "timestamp"]
ATTRIBUTES = ("test", "outcome", "code_hash", "kind", "snapshot_files", "long", "absent")


def _logger(name: str, handler: logging.Handler) -> logging.Logger:
    logger = logging.getLogger(name)
    logger.handlers[:] = [handler]
    logger.propagate = False
    logger.setLevel(logging.DEBUG)
    return logger


@pytest.fixture
def store_dir(tmp_path: Path) -> Path:
    """A store of two specs: real runs (with a snapshot) and test records with odd text,
    in files small enough to rotate."""
    logs = tmp_path / "logs"
    code = tmp_path / "code"
    code.mkdir()
    handler = LocalStoreHandler(logs, max_bytes=6_000, backup_count=50)
    runs, tests = _logger("genesis.run", handler), _logger("genesis.pytest", handler)
    try:
        for iteration in (1, 2, 3):
            (code / "mod.py").write_text(f"VALUE = {iteration}\n# {ODD[iteration]}\n")
            for spec in ("spec_a", "spec_b"):
                run_and_log(
                    [
                        sys.executable,
                        "-c",
                        f"print({ODD[iteration]!r}); raise SystemExit({iteration % 2})",
                    ],
                    spec_id=spec,
                    iteration=iteration,
                    code_snapshot=[code],
                    logger=runs,
                )
                for number, text in enumerate(ODD):
                    extra: dict[str, Any] = {
                        "spec_id": spec,
                        "iteration": iteration,
                        "kind": "test",
                        "test": f"tests/test_x.py::test_{number}[{text[:20]}]",
                        "duration_ms": number,
                    }
                    if number % 3:  # some records lack attributes and fields
                        extra |= {"outcome": "failed", "stderr": text, "code_hash": text[:12]}
                        extra |= {"long": text * 3, "exit_code": 1}
                    tests.log(logging.ERROR if number % 3 else logging.INFO, text, extra=extra)
                tests.info(
                    "summary",
                    extra={"spec_id": spec, "iteration": iteration, "kind": "test_summary"},
                )
    finally:
        handler.close()
    return logs


def _sql(store: LocalStore) -> LocalStore:
    """The same store read only through chDB."""
    store._index = False
    return store


def _same(fast: list[dict[str, Any]], slow: list[dict[str, Any]]) -> None:
    """Equal records; ties of (iteration, timestamp) come in any order in SQL."""

    def canonical(rows: list[dict[str, Any]]) -> list[str]:
        return sorted(json.dumps(r, sort_keys=True, ensure_ascii=False) for r in rows)

    assert canonical(fast) == canonical(slow)
    if fast and "iteration" in fast[0] and "timestamp" in fast[0]:
        keys = [(r["iteration"], r["timestamp"]) for r in fast]
        assert keys == sorted(keys)


QUESTIONS = [
    ("genesis.run", [*RUN_COLUMNS, "code_snapshot"], ("code_hash", "snapshot_files"), None),
    ("genesis.pytest", TEST_COLUMNS, ATTRIBUTES, "test"),
    ("genesis.pytest", TEST_COLUMNS, ATTRIBUTES, None),
    ("genesis.pytest", ["exit_code"], ("outcome",), "test_summary"),
    ("genesis.pytest", ["iteration"], (), "no such kind"),
    ("no.such.logger", ["iteration"], (), None),
]


@pytest.mark.parametrize(("logger", "columns", "attributes", "kind"), QUESTIONS)
def test_select_equals_sql(
    store_dir: Path, logger: str, columns: list[str], attributes: tuple[str, ...], kind: str | None
) -> None:
    assert len(list(store_dir.glob("*.jsonl.*"))) >= 2  # rotated files are read too
    fast_store, slow_store = LocalStore(store_dir), _sql(LocalStore(store_dir))
    try:
        for spec in ("spec_a", "spec_b", "unknown"):
            fast = fast_store.select(spec, logger, columns, attributes, kind=kind)
            slow = select_records(slow_store, spec, logger, columns, attributes, kind=kind)
            _same(fast, slow)
            assert (
                fast or spec == "unknown" or logger == "no.such.logger" or kind == "no such kind"
            )
        assert fast_store._chdb is None  # chDB never started for the fast answers
    finally:
        fast_store.close()
        slow_store.close()


@pytest.mark.parametrize("iterations", [set(), {1}, {0, 2, 99}])
def test_select_of_some_iterations_equals_sql(store_dir: Path, iterations: set[int]) -> None:
    """``diff`` and the page read the code of two runs, not of all of them."""
    fast_store, slow_store = LocalStore(store_dir), _sql(LocalStore(store_dir))
    try:
        for logger, columns, attributes, kind in QUESTIONS[:3]:
            fast = fast_store.select(
                "spec_a", logger, columns, attributes, kind=kind, iterations=iterations
            )
            slow = select_records(
                slow_store, "spec_a", logger, columns, attributes, kind=kind, iterations=iterations
            )
            _same(fast, slow)
            assert {row["iteration"] for row in fast} <= iterations
    finally:
        fast_store.close()
        slow_store.close()


def _tail_sql(where: list[str], limit: int) -> str:
    return (
        "SELECT timestamp, level, spec_id, iteration, exit_code, message FROM genesis.logs "
        + (f"WHERE {' AND '.join(where)} " if where else "")
        + f"ORDER BY timestamp DESC LIMIT {limit}"
    )


def test_specs_and_latest_equal_sql(store_dir: Path) -> None:
    store, slow = LocalStore(store_dir), _sql(LocalStore(store_dir))
    try:
        assert store.specs() == spec_ids(slow) == ["spec_a", "spec_b"]
        for spec, level in ((None, None), ("spec_b", None), (None, "error"), ("spec_a", "info")):
            fast = store.latest(7, spec=spec, level=level)
            assert fast is not None
            where = [f"spec_id = '{spec}'"] if spec else []
            where += [f"level = '{level}'"] if level else []
            result = slow.query(_tail_sql(where, 7))
            stamps = [row[0] for row in fast.rows]
            assert stamps == [row[0] for row in result.rows]  # newest first (ties: any order)
            every = store.latest(1000, spec=spec, level=level)
            assert every is not None
            result = slow.query(result_sql := _tail_sql(where, 1000))
            assert sorted(map(tuple, every.rows)) == sorted(map(tuple, result.rows)), result_sql
            since = fast.rows[-1][0]
            newer = store.latest(100, spec=spec, level=level, since=since)
            assert newer is not None
            assert all(row[0] > since for row in newer.rows)
        assert store._chdb is None
    finally:
        store.close()
        slow.close()


def test_index_is_kept_beside_the_files_and_read_incrementally(store_dir: Path) -> None:
    first = LocalStore(store_dir)
    before = first.select("spec_a", "genesis.pytest", ["iteration"], ("test",), kind="test")
    first.close()
    index = store_dir / ".index"
    assert [p.name for p in index.iterdir()] == ["records-v1.bin"]
    handler = LocalStoreHandler(store_dir)
    logger = _logger("genesis.pytest", handler)
    logger.info("new", extra={"spec_id": "spec_a", "iteration": 9, "kind": "test", "test": "t"})
    handler.close()
    again = LocalStore(store_dir)
    assert again._fresh_index() is not None
    after = again.select("spec_a", "genesis.pytest", ["iteration"], ("test",), kind="test")
    assert after == [*before, {"iteration": 9, "test": "t"}]
    # chDB's view does not read the index: it counts the records, nothing more
    count = again.query("SELECT count() FROM genesis.logs").rows[0][0]
    lines = sum(p.read_bytes().count(b"\n") for p in store_dir.glob("*.jsonl*"))
    assert count == lines
    again.close()


def test_partial_last_line_waits_and_malformed_lines_are_skipped(tmp_path: Path) -> None:
    logs = tmp_path / "logs"
    handler = LocalStoreHandler(logs)
    logger = _logger("genesis.run", handler)
    for iteration in (1, 2):
        logger.info("run", extra={"spec_id": "s", "iteration": iteration, "stdout": ODD[1]})
    handler.close()
    (path,) = logs.glob("genesis-*.jsonl")
    whole = path.read_bytes()
    clean = LocalStore(logs)
    expected = select_records(clean, "s", "genesis.run", ["iteration", "stdout"])
    clean.close()
    last = whole.splitlines(keepends=True)[-1]
    odd = b'not json\n[1, 2]\n{"iteration": -1, "spec_id": "s", "logger": "genesis.run"}\n'
    path.write_bytes(whole + odd + last[:25])  # malformed lines, then half a record
    store = LocalStore(logs)
    assert store.select("s", "genesis.run", ["iteration", "stdout"]) == expected
    with path.open("ab") as handle:
        handle.write(last[25:])  # the writer finishes its line
    finished = store.select("s", "genesis.run", ["iteration", "stdout"])
    assert finished == [*expected[:2], expected[1]]
    store.close()


def test_a_rotated_or_replaced_file_is_read_once(tmp_path: Path) -> None:
    logs = tmp_path / "logs"
    handler = LocalStoreHandler(logs)
    logger = _logger("genesis.run", handler)
    logger.info("one", extra={"spec_id": "s", "iteration": 1})
    handler.close()
    (path,) = logs.glob("genesis-*.jsonl")
    store = LocalStore(logs)
    assert len(store.select("s", "genesis.run", ["iteration"])) == 1
    path.rename(path.with_name(path.name + ".1"))  # rotated: same inode, new name
    assert store.select("s", "genesis.run", ["iteration", "message"]) == [
        {"iteration": 1, "message": "one"}
    ]
    text = (path.with_name(path.name + ".1")).read_text()
    (path.with_name(path.name + ".1")).unlink()
    replaced = logs / "genesis-other.jsonl"
    replaced.write_text(text.replace('"iteration": 1', '"iteration": 2'))  # maybe the same inode
    assert store.select("s", "genesis.run", ["iteration"]) == [{"iteration": 2}]
    store.close()


def test_read_commands_start_neither_chdb_nor_the_driver(store_dir: Path) -> None:
    probe = (
        "import sys\n"
        "from genesis_logging.cli import main\n"
        f"for argv in {[['failures', 'spec_a'], ['diff', 'spec_a'], ['verify', 'spec_a'], ['tail']]!r}:\n"
        f"    main([*argv, '--log-dir', {str(store_dir)!r}])\n"
        "heavy = [m for m in sys.modules if m.split('.')[0] in ('chdb', 'clickhouse_driver')]\n"
        "heavy += [m for m in sys.modules if m.startswith(('genesis_logging.handler', 'genesis_logging._pipeline'))]\n"
        "print('HEAVY', heavy)\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", probe],
        capture_output=True,
        text=True,
        env=clean_env(),
        cwd=OUTSIDE_CHECKOUT,
    )
    assert result.returncode == 0, result.stderr
    assert "HEAVY []" in result.stdout, result.stdout[-500:]
    assert "spec spec_a" in result.stdout


def test_tail_level_is_a_level(store_dir: Path) -> None:
    env = {"GENESIS_LOG_DIR": str(store_dir)}
    refused = cli("tail", "--level", "eror", env=env)
    assert refused.returncode == 2
    assert "invalid choice: 'eror'" in refused.stderr
    upper = cli("tail", "--level", "ERROR", "--format", "json", env=env)
    assert upper.returncode == 0, upper.stderr
    levels = {json.loads(line)["level"] for line in upper.stdout.split("\n") if line}
    assert levels == {"error"}


def test_tail_follow_prints_its_header_once_and_only_new_rows(tmp_path: Path) -> None:
    logs = tmp_path / "logs"
    handler = LocalStoreHandler(logs)
    logger = _logger("genesis.run", handler)
    logger.info("first record", extra={"spec_id": "s", "iteration": 1})
    follower = subprocess.Popen(
        cli_command("tail", "--follow", "--interval", "0.1"),
        stdout=subprocess.PIPE,
        text=True,
        env=clean_env({"GENESIS_LOG_DIR": str(logs)}),
        cwd=OUTSIDE_CHECKOUT,
    )
    try:
        assert follower.stdout is not None
        head = [follower.stdout.readline() for _ in range(3)]
        assert head[0].split() == [
            "timestamp",
            "level",
            "spec_id",
            "iteration",
            "exit_code",
            "message",
        ]
        assert "first record" in head[2]
        time.sleep(1.0)  # several empty polls
        logger.error("second record", extra={"spec_id": "s", "iteration": 2})
        handler.flush()
        assert "second record" in follower.stdout.readline()
        time.sleep(0.5)
    finally:
        handler.close()
        follower.terminate()
        rest, _ = follower.communicate(timeout=10)
    assert "timestamp" not in rest, rest
    assert "rows)" not in rest, rest


def test_the_index_is_not_matched_by_the_view_glob(store_dir: Path) -> None:
    """The view reads ``<log_dir>/*.jsonl*``; the index lives in a subdirectory."""
    store = LocalStore(store_dir)
    store.specs()
    store.close()
    assert not [path for path in store_dir.glob("*.jsonl*") if path.is_dir()]
    assert all(not p.name.endswith(".jsonl") for p in (store_dir / ".index").iterdir())


def test_readers_beside_a_writer_agree_with_the_files(tmp_path: Path) -> None:
    """Processes read (and save the index) while another appends and rotates: each answer is
    a prefix of the records, and the last one has them all, once each."""
    logs = tmp_path / "logs"
    logs.mkdir()
    writer = (
        "import logging\n"
        "from genesis_logging.local_store import LocalStoreHandler\n"
        f"handler = LocalStoreHandler({str(logs)!r}, max_bytes=20_000, backup_count=1000)\n"
        "logger = logging.getLogger('genesis.pytest')\n"
        "logger.addHandler(handler); logger.propagate = False; logger.setLevel(logging.INFO)\n"
        "for n in range(3000):\n"
        "    logger.info('test %d', n, extra={'spec_id': 's', 'iteration': n, 'kind': 'test',"
        " 'test': f't{n}', 'stderr': 'x' * (n % 50)})\n"
        "handler.close()\n"
    )
    reader = (
        "import sys, time\n"
        "from genesis_logging.store import LocalStore\n"
        "seen = []\n"
        "for _ in range(15):\n"
        f"    store = LocalStore({str(logs)!r})\n"
        "    rows = store.select('s', 'genesis.pytest', ['iteration', 'stderr'], ('test',), kind='test')\n"
        "    assert [r['iteration'] for r in rows] == list(range(len(rows))), 'not a prefix'\n"
        "    assert all(r['test'] == f\"t{r['iteration']}\" and r['stderr'] == 'x' * (r['iteration'] % 50) for r in rows)\n"
        "    seen.append(len(rows)); store.close(); time.sleep(0.05)\n"
        "print(seen)\n"
    )
    env, cwd = clean_env(), OUTSIDE_CHECKOUT
    writing = subprocess.Popen([sys.executable, "-c", writer], env=env, cwd=cwd)
    readers = [
        subprocess.Popen(
            [sys.executable, "-c", reader], env=env, cwd=cwd, stdout=subprocess.PIPE, text=True
        )
        for _ in range(2)
    ]
    assert writing.wait(120) == 0
    for process in readers:
        output, _ = process.communicate(timeout=120)
        assert process.returncode == 0
        assert output.startswith("[")
    assert len(list(logs.glob("*.jsonl.*"))) >= 2  # it rotated while being read
    final = LocalStore(logs)
    rows = final.select("s", "genesis.pytest", ["iteration"], kind="test")
    assert [r["iteration"] for r in rows] == list(range(3000))
    final.close()


def test_a_damaged_index_or_an_odd_question_falls_back(store_dir: Path) -> None:
    """A damaged index file is read again from the files; a column the index does not
    keep (the whole ``attributes`` map) is answered by chDB."""
    store = LocalStore(store_dir)
    expected = store.select("spec_a", "genesis.run", ["iteration", "stdout"])
    store.close()
    index = store_dir / ".index" / "records-v1.bin"
    index.write_bytes(index.read_bytes()[:300])  # cut short
    again = LocalStore(store_dir)
    assert again.select("spec_a", "genesis.run", ["iteration", "stdout"]) == expected
    assert again._chdb is None
    whole = again.select("spec_a", "genesis.run", ["iteration", "attributes"])
    assert whole == select_records(again, "spec_a", "genesis.run", ["iteration", "attributes"])
    assert "code_hash" in whole[0]["attributes"]
    again.close()
