"""How fast the loop's read commands answer on a local store, beside ``python -c pass``.

An assistant calls ``failures``, ``diff``, ``verify`` and ``tail`` dozens of times per task,
so each is timed as it is used: a fresh process, the real CLI, wall-clock time and the
peak RSS of that process (``os.wait4``'s rusage). ``query`` (which starts chDB) is timed
beside them as the cost the loop's commands no longer pay.

The store is built the way the loop writes one: 100 iterations of one spec, each a real
``run_and_log`` (a child process, a ~600 KB code snapshot of a project tree, the run
record written by the real ``LocalStoreHandler``) whose child logs a suite of 765 test
records as the pytest plugin does (a few failing with pytest-sized failure text).

    python benchmarks/loop_commands.py                   # build a store in a temp dir, 9 rounds
    python benchmarks/loop_commands.py --store DIR       # reuse (or build once into) DIR
    python benchmarks/loop_commands.py --rounds 3 --iterations 20
    python benchmarks/loop_commands.py --before 16a5c5e   # also the reads of that revision

Writes ``benchmarks/results/loop_commands.json``. Figures are reported, never asserted.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import shutil
import statistics
import subprocess
import sys
import sysconfig
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from genesis_logging.local_store import LocalStoreHandler  # noqa: E402
from genesis_logging.runner import run_and_log  # noqa: E402

RESULTS = Path(__file__).parent / "results"
SPEC = "spec_bench"
#: Standard-library packages copied as the project's code: ~600 KB of real Python.
PROJECT_PACKAGES = ("email", "json", "logging")

#: The child of each run: logs a suite as the pytest plugin does, through the local store.
SUITE = r"""
import logging, os, sys
from genesis_logging.local_store import LocalStoreHandler

iteration, tests = int(sys.argv[1]), int(sys.argv[2])
logger = logging.getLogger("genesis.pytest")
logger.addHandler(LocalStoreHandler())
logger.propagate = False
logger.setLevel(logging.INFO)
failing = set() if iteration % 4 == 0 else {(iteration * 7 + k * 131) % tests for k in range(1 + iteration % 5)}
code_hash = os.environ.get("GENESIS_CODE_HASH", "")
for number in range(tests):
    nodeid = f"tests/test_module_{number // 40:02d}.py::TestCase{number % 7}::test_case_{number}"
    failed = number in failing
    text = ""
    if failed:
        text = (
            f"self = <tests.test_module_{number // 40:02d}.TestCase{number % 7} object at 0x7f00{number:04x}>\n\n"
            + "    def test_case(self):\n        value = compute(%d)\n" % iteration
            + ">       assert value == %d\nE       assert %d == %d\nE        +  where %d = compute(%d)\n\n" % (iteration + 1, iteration, iteration + 1, iteration, iteration)
            + "tests/test_module.py:%d: AssertionError\n" % (number + 10)
        ) * 4
    outcome = "failed" if failed else ("skipped" if number % 97 == 0 else "passed")
    logger.log(
        logging.ERROR if failed else logging.INFO,
        "test %s: %s", outcome, nodeid,
        extra={
            "kind": "test", "test": nodeid, "outcome": outcome, "phase": "call",
            "duration_ms": number % 13, "exit_code": 1 if failed else 0,
            "stderr": text if failed or outcome == "skipped" else "",
            "stdout": "captured output line\n" if number % 11 == 0 else "",
            "code_hash": code_hash,
        },
    )
logger.info("test session: %d tests", tests, extra={"kind": "test_summary", "exit_code": 1 if failing else 0, "code_hash": code_hash})
print(f"{tests - len(failing)} passed, {len(failing)} failed")
sys.exit(1 if failing else 0)
"""


def build_store(directory: Path, iterations: int, tests: int) -> None:
    """Write ``iterations`` runs of one spec into the local store in ``directory``."""
    directory.mkdir(parents=True, exist_ok=True)
    project = directory.parent / f"{directory.name}-project"
    shutil.rmtree(project, ignore_errors=True)
    library = Path(sysconfig.get_paths()["stdlib"])
    for name in PROJECT_PACKAGES:
        shutil.copytree(
            library / name, project / "pkg" / name, ignore=shutil.ignore_patterns("__pycache__")
        )
    suite = project / "run_suite.py"
    suite.write_text(SUITE)
    handler = LocalStoreHandler(directory)
    logger = logging.getLogger("genesis.run")
    logger.addHandler(handler)
    logger.propagate = False
    logger.setLevel(logging.INFO)
    environment = {**os.environ, "GENESIS_LOG_DIR": str(directory), "PYTHONPATH": str(ROOT)}
    edited = sorted((project / "pkg").rglob("*.py"))
    try:
        for iteration in range(1, iterations + 1):
            target = edited[iteration % len(edited)]
            target.write_text(target.read_text() + f"\n# edited in iteration {iteration}\n")
            run_and_log(
                [sys.executable, str(suite), str(iteration), str(tests)],
                spec_id=SPEC,
                iteration=iteration,
                code_snapshot=[project / "pkg"],
                env=environment,
                logger=logger,
            )
    finally:
        handler.close()
        logger.removeHandler(handler)


def timed(command: list[str]) -> tuple[float, int, int]:
    """Wall seconds, peak RSS (KiB) and exit status of one fresh process."""
    started = time.perf_counter()
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(process.pid, 0)
    elapsed = time.perf_counter() - started
    process.returncode = os.waitstatus_to_exitcode(status)
    assert process.stderr is not None
    error = process.stderr.read().decode(errors="replace")
    process.stderr.close()
    if process.returncode not in (0, 1):
        raise SystemExit(f"{' '.join(command)} failed ({process.returncode}): {error[-2000:]}")
    return elapsed, int(usage.ru_maxrss), process.returncode


def checkout(revision: str, directory: Path) -> Path:
    """The package as it was at ``revision`` (``git archive``: the repository is untouched)."""
    archive = subprocess.run(
        ["git", "-C", str(ROOT), "archive", revision, "genesis_logging"],
        capture_output=True,
        check=True,
    ).stdout
    subprocess.run(["tar", "-x", "-C", str(directory)], input=archive, check=True)
    return directory


def commands(store: Path, before: Path | None = None) -> dict[str, list[str]]:
    """Each command as a fresh process; with ``before``, also the loop's reads as run by
    the package in that directory (put first on ``sys.path``)."""
    named = _commands(store, [sys.executable, "-m", "genesis_logging"])
    if before is not None:
        old = [sys.executable, "-c", OLD_MAIN, str(before)]
        for name, command in _commands(store, old).items():
            if name.split()[0] in ("failures", "diff", "verify", "tail"):
                named[f"{name} (before)"] = command
    return named


#: Runs ``python -m genesis_logging`` from the directory given first (an older revision).
OLD_MAIN = "import runpy, sys; sys.path.insert(0, sys.argv.pop(1)); sys.argv[0] = 'genesis-logging'; runpy.run_module('genesis_logging', run_name='__main__')"


def _commands(store: Path, cli: list[str]) -> dict[str, list[str]]:
    local = ["--log-dir", str(store)]
    return {
        "python -c pass": [sys.executable, "-c", "pass"],
        "failures SPEC": [*cli, "failures", SPEC, *local],
        "failures SPEC --by-cause": [*cli, "failures", SPEC, "--by-cause", *local],
        "diff SPEC": [*cli, "diff", SPEC, *local],
        "verify SPEC": [*cli, "verify", SPEC, *local],
        "tail": [*cli, "tail", *local],
        "tail --spec SPEC --level error": [
            *cli,
            "tail",
            "--spec",
            SPEC,
            "--level",
            "error",
            *local,
        ],
        "--help (import only)": [*cli, "--help"],
        "query (chDB, for scale)": [
            *cli,
            "query",
            "SELECT count() AS records FROM genesis.logs",
            *local,
        ],
    }


def store_facts(store: Path) -> dict[str, Any]:
    files = [p for p in store.glob("*.jsonl*") if p.is_file()]
    index = store / ".index"
    records = sum(p.read_bytes().count(b"\n") for p in files)
    return {
        "files": len(files),
        "records": records,
        "bytes": sum(p.stat().st_size for p in files),
        "index_bytes": sum(p.stat().st_size for p in index.glob("*")) if index.is_dir() else 0,
    }


def measure(store: Path, rounds: int, before: Path | None) -> dict[str, Any]:
    shutil.rmtree(store / ".index", ignore_errors=True)
    named = commands(store, before)
    cold_seconds, cold_rss, _ = timed(named["failures SPEC"])  # builds the index
    samples: dict[str, list[tuple[float, int]]] = {name: [] for name in named}
    order = list(named)
    for round_number in range(rounds):
        for name in order if round_number % 2 == 0 else reversed(order):
            seconds, rss, _ = timed(named[name])
            samples[name].append((seconds, rss))
    figures = {
        name: {
            "median_s": round(statistics.median(s for s, _ in values), 3),
            "min_s": round(min(s for s, _ in values), 3),
            "max_s": round(max(s for s, _ in values), 3),
            "peak_rss_mib": round(max(r for _, r in values) / 1024, 1),
        }
        for name, values in samples.items()
    }
    return {
        "cold_failures_index_built": {
            "seconds": round(cold_seconds, 3),
            "peak_rss_mib": round(cold_rss / 1024, 1),
        },
        "commands": figures,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--store", type=Path, help="the store directory (built if empty)")
    parser.add_argument("--iterations", type=int, default=100)
    parser.add_argument("--tests", type=int, default=765)
    parser.add_argument("--rounds", type=int, default=9)
    parser.add_argument(
        "--before", metavar="REVISION", help="also time the reads of this git revision"
    )
    args = parser.parse_args()
    scratch = None
    if args.store is None:
        scratch = Path(tempfile.mkdtemp(prefix="genesis-bench-"))
        args.store = scratch / "logs"
    store = args.store.resolve()
    try:
        if not any(store.glob("*.jsonl*")):
            started = time.perf_counter()
            build_store(store, args.iterations, args.tests)
            print(f"built {store} in {time.perf_counter() - started:.1f} s", file=sys.stderr)
        old = None
        if args.before:
            old = checkout(args.before, Path(tempfile.mkdtemp(prefix="genesis-before-")))
        result = measure(store, args.rounds, old)
        result["before"] = args.before
        result["store"] = {**store_facts(store), "iterations": args.iterations}
        result["machine"] = {
            "python": platform.python_version(),
            "platform": platform.platform(),
            "cpus": os.cpu_count(),
            "load_average": [round(x, 2) for x in os.getloadavg()],
            "date": time.strftime("%Y-%m-%d", time.gmtime()),
        }
        result["rounds"] = args.rounds
    finally:
        if scratch is not None:
            shutil.rmtree(scratch, ignore_errors=True)
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "loop_commands.json").write_text(json.dumps(result, indent=2) + "\n")
    width = max(len(name) for name in result["commands"])
    print(f"{'command':<{width}}  median s (min..max)     peak RSS MiB")
    for name, figure in result["commands"].items():
        print(
            f"{name:<{width}}  {figure['median_s']:.3f} ({figure['min_s']:.3f}..{figure['max_s']:.3f})"
            f"   {figure['peak_rss_mib']:.1f}"
        )
    cold = result["cold_failures_index_built"]
    print(f"first failures (index built): {cold['seconds']:.3f} s, {cold['peak_rss_mib']:.1f} MiB")
    print(json.dumps(result["store"]))


if __name__ == "__main__":
    main()
