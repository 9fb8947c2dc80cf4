"""A pytest plugin: a record for every outcome pytest reports, and one per session.

Inactive unless asked: ``pytest --genesis-log``, or automatically under
``genesis-logging run`` (which hands ``GENESIS_SPEC_ID`` down). Records go to the genesis
handlers the root logger has; without any, to the local store (``GENESIS_LOG_DIR``)
and/or ClickHouse (``CLICKHOUSE_URL`` / ``CLICKHOUSE_HOST``). Under pytest-xdist only the
controller writes, from the reports the workers send, so every test arrives once.

What is recorded (``docs/tdd-loop.md`` shows each case):

* ``kind="test"``: one per test (at its teardown), one per module that failed to collect or
  was skipped whole (``phase="collect"``), and one per test the session left unfinished
  (``pytest.exit``, ``KeyboardInterrupt``, a crashed xdist worker: ``interrupted=True``).
  A test with a failing subtest is ``failed`` — also a unittest test pytest counts as
  passed — and its ``stderr`` carries each failing subtest's text.
* ``kind="subtest"``: one per failing subtest (pytest's ``subtests`` fixture, the
  pytest-subtests plugin, unittest's ``subTest``) with its ``subtest_msg``,
  ``subtest_params`` and assertion text. Passing subtests are counted, not recorded one by
  one: a suite can have tens of thousands of them and the count says all there is.
* ``kind="test_summary"``: ``tests_<category>`` for every category of pytest's own summary
  line, counted as pytest's terminal counts them (``tests_failed``, ``tests_error``,
  ``tests_subtests_passed``…), the line itself as the message, the subtest outcomes by
  kind (``subtests_passed``…, whatever the verbosity), ``tests_collected``,
  ``collection_errors``, ``interrupted``, ``stop_reason`` and ``exit_code``.
"""

from __future__ import annotations

import contextlib
import logging
import os
import time
import weakref
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Final

import pytest

from ._values import safe_repr

__all__ = ["OUTPUT_LIMIT", "TestRecorder"]

LOGGER_NAME: Final = "genesis.pytest"
#: Characters kept of a test's failure text and of its captured output.
OUTPUT_LIMIT: Final = 64 * 1024
_FAILED: Final = frozenset({"failed", "error"})
#: Characters kept of each subtest parameter's ``repr`` (pytest's own ``saferepr`` size).
_PARAM_LIMIT: Final = 240
#: The categories every summary record carries, zero or not.
_ALWAYS: Final = (
    "passed", "failed", "error", "skipped", "xfailed", "xpassed", "subtests passed"
)  # fmt: skip
#: The subtest outcomes the summary counts, whatever pytest prints.
_SUBTEST_OUTCOMES: Final = ("passed", "failed", "skipped", "xfailed", "xpassed")
#: The order of pytest's summary line (``_pytest.terminal.KNOWN_TYPES`` in pytest 9); other
#: categories follow in the order they first appeared, as pytest orders them.
_LINE_ORDER: Final = (
    "failed",
    "passed",
    "skipped",
    "deselected",
    "xfailed",
    "xpassed",
    "warnings",
    "error",
    "subtests passed",
    "subtests failed",
    "subtests skipped",
)


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
        config.pluginmanager.register(TestRecorder(config), "genesis-logging-recorder")


def _outcome(report: pytest.TestReport | pytest.CollectReport) -> str:
    if hasattr(report, "wasxfail"):
        if report.skipped:
            return "xfailed"
        return "xpassed" if report.passed else "failed"
    if report.failed and getattr(report, "when", "collect") in ("setup", "teardown", "collect"):
        return "error"
    return str(report.outcome)


def _bounded(text: str) -> str:
    if len(text) <= OUTPUT_LIMIT:
        return text
    return f"{text[:OUTPUT_LIMIT]}…[{len(text) - OUTPUT_LIMIT} more characters]"


def _plural(count: int, noun: str) -> str:
    """pytest's own spelling: "1 error", "2 errors", "1 warning", "3 failed"."""
    if noun in ("error", "warnings", "test"):
        noun = noun.replace("warnings", "warning")
        noun = noun if count == 1 else f"{noun}s"
    return f"{count} {noun}"


def _subtest_context(report: pytest.TestReport) -> Any:
    """The msg/kwargs of a subtest's report (pytest ≥ 9 or pytest-subtests), else None."""
    context = getattr(report, "context", None)
    if context is None or not hasattr(context, "kwargs") or not hasattr(context, "msg"):
        return None
    return context


def _params(context: Any) -> dict[str, str]:
    """A subtest's parameters as pytest 9 reports them: each value's (bounded) ``repr``.

    pytest 9 has made them strings already; pytest-subtests hands the values themselves.
    """
    params = {}
    for key, value in context.kwargs.items():
        text = value if isinstance(value, str) else safe_repr(value)
        params[str(key)] = text if len(text) <= _PARAM_LIMIT else f"{text[:_PARAM_LIMIT]}…"
    return params


def _describe(context: Any) -> str:
    """A subtest as pytest names it: ``[msg] (a=1, b=2)``, or ``(<subtest>)``."""
    parts = []
    if context.msg is not None:
        parts.append(f"[{context.msg}]")
    if context.kwargs:
        parts.append("(" + ", ".join(f"{k}={v}" for k, v in _params(context).items()) + ")")
    return " ".join(parts) or "(<subtest>)"


@dataclass
class _Test:
    """One test's reports so far (its phases and its subtests)."""

    outcome: str = "passed"
    phase: str = "call"
    duration: float = 0.0
    texts: list[str] = field(default_factory=list)
    stdout: str = ""
    subtests: Counter[str] = field(default_factory=Counter)
    subtest_texts: list[str] = field(default_factory=list)


class TestRecorder:
    """Turns pytest's reports into records, counting them the way pytest's summary does."""

    __test__ = False  # not a test class, whatever pytest thinks of the name

    def __init__(self, config: pytest.Config) -> None:
        self.config = config
        self.logger = logging.getLogger(LOGGER_NAME)
        self.sinks: list[logging.Handler] = []
        self.handlers = self._handlers()
        self.tests: dict[str, _Test] = {}
        #: pytest's summary categories ("failed", "subtests passed", …) → reports counted.
        self.categories: Counter[str] = Counter()
        self.subtests: Counter[str] = Counter()
        self.collection_errors = 0
        self.interruption = ""  # pytest's one-line reason, when the session was interrupted
        self.interruption_text = ""
        self.started = time.monotonic()
        self.code_hash = os.environ.get("GENESIS_CODE_HASH", "")

    def _handlers(self) -> list[logging.Handler]:
        """Where records go: the genesis handlers the root logger has, else our own.

        Records are handed to these handlers directly (:meth:`_emit`), not through the
        logger tree, and our own handlers are kept off the list ``dictConfig`` and
        ``logging.shutdown`` close: the code under test may reconfigure, disable or shut
        logging down without silencing the record of its own run.
        """
        # Imported here: every pytest run loads this module; only active runs need these.
        from .handler import ClickHouseHandler
        from .local_store import LocalStoreHandler

        root = logging.getLogger()
        configured: list[logging.Handler] = [
            h for h in root.handlers if isinstance(h, (ClickHouseHandler, LocalStoreHandler))
        ]
        if configured:
            self.sinks = configured
            return []  # the application's: it closes them
        handlers: list[logging.Handler] = []
        if os.environ.get("GENESIS_LOG_DIR"):
            handlers.append(LocalStoreHandler())
        if os.environ.get("CLICKHOUSE_URL") or os.environ.get("CLICKHOUSE_HOST"):
            handlers.append(ClickHouseHandler())
        with contextlib.suppress(AttributeError, ValueError):
            for handler in handlers:  # closed at the session's end, by us only
                logging._handlerList.remove(weakref.ref(handler))  # type: ignore[attr-defined]
        self.sinks = handlers
        return handlers

    def _emit(self, level: int, message: str, *args: Any, extra: dict[str, Any]) -> None:
        """One record to every sink, whatever the logger tree says now; without sinks
        (``--genesis-log`` with no store), through the logger as any record."""
        record = self.logger.makeRecord(
            LOGGER_NAME, level, __file__, 0, message, args, None, extra=extra
        )
        if not self.sinks:
            self.logger.handle(record)
            return
        for sink in self.sinks:
            if level >= sink.level:
                sink.handle(record)

    # -- counting as pytest's terminal does ------------------------------------------------

    def _count(self, report: pytest.TestReport) -> None:
        # The terminal files each report under the category this hook names and prints
        # the non-empty ones; asking the same hook keeps the counts equal to its line
        # (subtests, quiet subtest passes, plugins' own categories included).
        status = self.config.hook.pytest_report_teststatus(report=report, config=self.config)
        category = str(status[0]) if status else ""
        if category and getattr(report, "count_towards_summary", True):
            self.categories[category] += 1

    def pytest_deselected(self, items: list[pytest.Item]) -> None:
        self.categories["deselected"] += len(items)

    def pytest_warning_recorded(self) -> None:
        self.categories["warnings"] += 1

    # -- reports ---------------------------------------------------------------------------

    @pytest.hookimpl(trylast=True)
    def pytest_collectreport(self, report: pytest.CollectReport) -> None:
        if not (report.failed or report.skipped):
            return
        self.categories["error" if report.failed else "skipped"] += 1
        self.collection_errors += report.failed
        test = _Test(outcome=_outcome(report), phase="collect", texts=[report.longreprtext])
        self._log(report.nodeid or ".", test)

    @pytest.hookimpl(trylast=True)
    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        self._count(report)
        test = self.tests.setdefault(report.nodeid, _Test())
        context = _subtest_context(report)
        if context is not None:
            self._subtest(report, test, context)
            return
        test.duration += report.duration
        outcome = _outcome(report)
        if report.when == "call" or outcome in _FAILED or report.skipped:
            if not (test.outcome in _FAILED and report.when == "teardown"):
                test.outcome, test.phase = outcome, report.when
            if (report.failed or report.skipped) and report.longreprtext:
                test.texts.append(report.longreprtext)
        test.stdout += report.capstdout + report.capstderr
        if report.when not in ("setup", "call"):  # teardown, or xdist's "???" for a crash
            self._log(report.nodeid, self.tests.pop(report.nodeid))

    def _subtest(self, report: pytest.TestReport, test: _Test, context: Any) -> None:
        outcome = _outcome(report)
        test.subtests[outcome] += 1
        self.subtests[outcome] += 1
        if outcome not in _FAILED:
            return
        described = _describe(context)
        text = report.longreprtext
        if sum(map(len, test.subtest_texts)) < OUTPUT_LIMIT:
            test.subtest_texts.append(f"{described}\n{text}")
        self._emit(
            logging.ERROR,
            "subtest %s: %s %s",
            outcome,
            report.nodeid,
            described,
            extra={
                "kind": "subtest",
                "test": report.nodeid,
                "subtest": described,
                "subtest_msg": "" if context.msg is None else str(context.msg),
                "subtest_params": _params(context),
                "outcome": outcome,
                "phase": report.when,
                "duration_ms": round(report.duration * 1000),
                "exit_code": 1,
                "stderr": _bounded(text),
                "stdout": _bounded(report.capstdout + report.capstderr),
                "code_hash": self.code_hash,
            },
        )

    def _log(self, nodeid: str, test: _Test, **more: Any) -> None:
        failed_subtests = test.subtests["failed"]
        texts = test.texts
        if failed_subtests:
            # pytest counts a unittest test whose subTest failed as passed, and says only
            # "contains 1 failed subtest" of a fixture one: the record is failed, with
            # each subtest's own text.
            if test.outcome not in _FAILED:
                test.outcome, test.phase = "failed", "call"
            s = "" if failed_subtests == 1 else "s"
            header = f"contains {failed_subtests} failed subtest{s}"
            texts = [t for t in texts if t != header] + [header, *test.subtest_texts]
        outcome = test.outcome
        failed = outcome in _FAILED or bool(more.get("interrupted"))
        extra: dict[str, Any] = {
            "kind": "test",
            "test": nodeid,
            "outcome": outcome,
            "phase": test.phase,
            "duration_ms": round(test.duration * 1000),
            "exit_code": 1 if failed else 0,
            "stderr": _bounded("\n\n".join(texts)) if failed or outcome != "passed" else "",
            "stdout": _bounded(test.stdout),
            "code_hash": self.code_hash,
            **more,
        }
        if test.subtests:
            extra.update({f"subtests_{k}": n for k, n in sorted(test.subtests.items())})
        self._emit(
            logging.ERROR if failed else logging.INFO,
            "test %s: %s",
            outcome,
            nodeid,
            extra=extra,
        )

    # -- the end of the session ------------------------------------------------------------

    def pytest_keyboard_interrupt(self, excinfo: pytest.ExceptionInfo[BaseException]) -> None:
        # KeyboardInterrupt, pytest.exit() and "Interrupted: 1 error during collection".
        represented = excinfo.getrepr(style="short")
        crash = getattr(represented, "reprcrash", None)
        self.interruption = crash.message if crash is not None else excinfo.exconly()
        self.interruption_text = str(represented)

    def _summary_line(self) -> str:
        order = [c for c in _LINE_ORDER if c in self.categories]
        order += [c for c in self.categories if c not in _LINE_ORDER]
        return ", ".join(_plural(self.categories[c], c) for c in order) or "no tests ran"

    def pytest_sessionfinish(self, session: pytest.Session, exitstatus: int) -> None:
        for nodeid, test in list(self.tests.items()):  # begun, never finished
            if test.outcome not in _FAILED:
                test.outcome = "error"
            test.texts.append(self.interruption_text or "the session ended during this test")
            self._log(nodeid, test, interrupted=True)
        self.tests.clear()
        counts = {
            f"tests_{c.replace(' ', '_')}": self.categories.get(c, 0)
            for c in (*_ALWAYS, *self.categories)
        }
        stop_reason = self.interruption or str(session.shouldfail or session.shouldstop or "")
        self._emit(
            logging.INFO if int(exitstatus) == 0 and not self.interruption else logging.ERROR,
            "test session: %s",
            self._summary_line(),
            extra={
                "kind": "test_summary",
                **counts,
                **{f"subtests_{k}": self.subtests.get(k, 0) for k in _SUBTEST_OUTCOMES},
                "tests_collected": session.testscollected,
                "collection_errors": self.collection_errors,
                "interrupted": bool(self.interruption),
                "stop_reason": stop_reason,
                "exit_code": int(exitstatus),
                "duration_ms": round((time.monotonic() - self.started) * 1000),
                "code_hash": self.code_hash,
            },
        )
        for handler in self.handlers:
            handler.close()
