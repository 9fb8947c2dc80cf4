"""A pytest plugin: one record per test and one per session, under the run's spec/iteration.

Inactive unless asked: ``pytest --genesis-log``, or automatically under
``genesis-logging run`` (which hands ``GENESIS_SPEC_ID`` down). Records go to the genesis
handlers the root logger has; without any, to the local store (``GENESIS_LOG_DIR``)
and/or ClickHouse (``CLICKHOUSE_URL`` / ``CLICKHOUSE_HOST``). Under pytest-xdist only the
controller writes, from the reports the workers send, so every test arrives once.
"""

from __future__ import annotations

import logging
import os
import time
from collections import Counter
from typing import Any, Final

import pytest

__all__ = ["OUTPUT_LIMIT", "TestRecorder"]

LOGGER_NAME: Final = "genesis.pytest"
#: Characters kept of a test's failure text and of its captured output.
OUTPUT_LIMIT: Final = 64 * 1024
_FAILED: Final = frozenset({"failed", "error"})


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("genesis-logging")
    group.addoption(
        "--genesis-log",
        action="store_true",
        default=False,
        help="log one record per test to genesis.logs (on by itself under genesis-logging run)",
    )


def pytest_configure(config: pytest.Config) -> None:
    wanted = config.getoption("--genesis-log") or bool(os.environ.get("GENESIS_SPEC_ID"))
    if wanted and not hasattr(config, "workerinput"):  # xdist workers leave it to the controller
        config.pluginmanager.register(TestRecorder(), "genesis-logging-recorder")


def _outcome(report: pytest.TestReport) -> str:
    if hasattr(report, "wasxfail"):
        return "xfailed" if report.skipped else "xpassed"
    if report.when != "call" and report.failed:
        return "error"
    return str(report.outcome)


def _bounded(text: str) -> str:
    if len(text) <= OUTPUT_LIMIT:
        return text
    return f"{text[:OUTPUT_LIMIT]}…[{len(text) - OUTPUT_LIMIT} more characters]"


class TestRecorder:
    """Collects each test's phases and logs it once, at its last phase."""

    __test__ = False  # not a test class, whatever pytest thinks of the name

    def __init__(self) -> None:
        self.logger = logging.getLogger(LOGGER_NAME)
        self.handlers = self._handlers()
        self.tests: dict[str, dict[str, Any]] = {}
        self.counts: Counter[str] = Counter()
        self.started = time.monotonic()

    def _handlers(self) -> list[logging.Handler]:
        # Imported here: every pytest run loads this module; only active runs need these.
        from .handler import ClickHouseHandler
        from .store import LocalStoreHandler

        root = logging.getLogger()
        if any(isinstance(h, (ClickHouseHandler, LocalStoreHandler)) for h in root.handlers):
            return []  # configured already: records propagate there
        handlers: list[logging.Handler] = []
        if os.environ.get("GENESIS_LOG_DIR"):
            handlers.append(LocalStoreHandler())
        if os.environ.get("CLICKHOUSE_URL") or os.environ.get("CLICKHOUSE_HOST"):
            handlers.append(ClickHouseHandler())
        for handler in handlers:
            self.logger.addHandler(handler)
        if handlers:
            self.logger.propagate = False
        self.logger.setLevel(logging.INFO)
        return handlers

    @pytest.hookimpl(trylast=True)
    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        test = self.tests.setdefault(
            report.nodeid, {"outcome": "passed", "phase": "call", "duration": 0.0, "text": ""}
        )
        test["duration"] += report.duration
        outcome = _outcome(report)
        if report.when == "call" or outcome in _FAILED or report.skipped:
            if not (test["outcome"] in _FAILED and report.when == "teardown"):
                test.update(outcome=outcome, phase=report.when)
            if report.failed or report.skipped:
                test["text"] = report.longreprtext
        test["stdout"] = report.capstdout + report.capstderr
        if report.when == "teardown":
            self._log(report.nodeid, self.tests.pop(report.nodeid))

    def _log(self, nodeid: str, test: dict[str, Any]) -> None:
        outcome = test["outcome"]
        self.counts[outcome] += 1
        failed = outcome in _FAILED
        self.logger.log(
            logging.ERROR if failed else logging.INFO,
            "test %s: %s",
            outcome,
            nodeid,
            extra={
                "kind": "test",
                "test": nodeid,
                "outcome": outcome,
                "phase": test["phase"],
                "duration_ms": round(test["duration"] * 1000),
                "exit_code": 1 if failed else 0,
                "stderr": _bounded(test["text"]) if failed or outcome == "skipped" else "",
                "stdout": _bounded(test.get("stdout", "")),
                "code_hash": os.environ.get("GENESIS_CODE_HASH", ""),
            },
        )

    def pytest_sessionfinish(self, session: pytest.Session, exitstatus: int) -> None:
        counts = {
            k: self.counts.get(k, 0)
            for k in ("passed", "failed", "error", "skipped", "xfailed", "xpassed")
        }
        summary = ", ".join(f"{n} {k}" for k, n in counts.items() if n) or "no tests"
        self.logger.log(
            logging.INFO if int(exitstatus) == 0 else logging.ERROR,
            "test session: %s",
            summary,
            extra={
                "kind": "test_summary",
                **{f"tests_{k}": n for k, n in counts.items()},
                "exit_code": int(exitstatus),
                "duration_ms": round((time.monotonic() - self.started) * 1000),
                "code_hash": os.environ.get("GENESIS_CODE_HASH", ""),
            },
        )
        for handler in self.handlers:
            handler.close()
            self.logger.removeHandler(handler)
