"""``drain_on_signals``, ``install_drain_hooks``, ``flush_handlers``, the ASGI helpers and
``exit_on_sigterm``'s warnings (issue 21).

Each scenario is a small script run as a real process: it queues records for a server
that is not there (so every record ends in the spool, where it is counted), then gets a
signal. The servers themselves are in ``tests/e2e/test_servers.py``.
"""

from __future__ import annotations

import signal
import threading
import warnings
from collections.abc import Iterator
from pathlib import Path

import pytest

from genesis_logging import ClickHouseHandler, ConfigurationError, GenesisLoggingWarning
from tests.support.scripts import (
    NOWHERE,
    SPOOLING_PRELUDE,
    pool_under_the_hook,
    run_script,
    spooled,
)


class TestOptionValidation:
    """Names are checked when the handler is built, with a message that says what to write."""

    @pytest.mark.parametrize("names", [["SIGTERM"], ["SIGINT", "SIGTERM"], ["SIGHUP"], []])
    def test_accepted(self, names: list[str]) -> None:
        assert ClickHouseHandler(
            url=NOWHERE, drain_on_signals=names
        ).config.drain_on_signals == tuple(names)

    def test_unknown_name(self) -> None:
        with pytest.raises(ConfigurationError, match=r"unknown signal 'TERM'.*SIGTERM, SIGINT"):
            ClickHouseHandler(url=NOWHERE, drain_on_signals=["TERM"])

    def test_a_string_instead_of_a_list(self) -> None:
        with pytest.raises(ConfigurationError, match=r"list of signal names.*not the string"):
            ClickHouseHandler(url=NOWHERE, drain_on_signals="SIGTERM")

    def test_off_the_main_thread_the_handler_is_made_and_says_why(self) -> None:
        made: list[ClickHouseHandler] = []
        caught: list[warnings.WarningMessage] = []

        def build() -> None:
            with warnings.catch_warnings(record=True) as seen:
                warnings.simplefilter("always")
                made.append(ClickHouseHandler(url=NOWHERE, drain_on_signals=["SIGTERM"]))
            caught.extend(seen)

        thread = threading.Thread(target=build)
        thread.start()
        thread.join()
        assert made, "the handler is made anyway"
        messages = [
            str(w.message) for w in caught if issubclass(w.category, GenesisLoggingWarning)
        ]
        assert any("SIGTERM not hooked" in m and "install_drain_hooks" in m for m in messages)
        made[0].close()


class TestTheHookChains:
    """The signal is drained, then goes on to what was there: its meaning is kept."""

    def test_default_sigterm_is_drained_then_kills_by_the_signal(self, tmp_path: Path) -> None:
        spool = tmp_path / "spool"
        body = f"""
            make({str(spool)!r}, drain_on_signals=["SIGTERM"])
            for i in range(100):
                log.info("r%d", i)
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(30)
            print("not reached")
        """
        done = run_script(tmp_path, body, prelude=SPOOLING_PRELUDE, timeout=60)
        assert done.returncode == -signal.SIGTERM, done.stderr  # a shell says 143
        assert "not reached" not in done.stdout
        assert spooled(spool) == 100

    def test_without_the_option_the_default_loses_them(self, tmp_path: Path) -> None:
        spool = tmp_path / "spool"
        body = f"""
            make({str(spool)!r})
            for i in range(100):
                log.info("r%d", i)
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(30)
        """
        done = run_script(tmp_path, body, prelude=SPOOLING_PRELUDE, timeout=60)
        assert done.returncode == -signal.SIGTERM
        assert spooled(spool) == 0

    def test_sigint_raises_keyboard_interrupt_after_the_drain(self, tmp_path: Path) -> None:
        spool = tmp_path / "spool"
        body = f"""
            handler = make({str(spool)!r}, drain_on_signals=["SIGINT"])
            for i in range(50):
                log.info("r%d", i)
            try:
                signal.raise_signal(signal.SIGINT)
            except KeyboardInterrupt:
                print("KeyboardInterrupt; pending", handler.stats()["pending"])
                raise
        """
        done = run_script(tmp_path, body, prelude=SPOOLING_PRELUDE, timeout=60)
        assert "KeyboardInterrupt; pending 0" in done.stdout, done.stderr
        assert done.returncode == -signal.SIGINT  # Python ends by SIGINT: a shell says 130
        assert spooled(spool) == 50

    def test_a_python_handler_set_before_is_called_after_the_drain(self, tmp_path: Path) -> None:
        spool = tmp_path / "spool"
        body = f"""
            def previous(signum, frame):
                print("previous called; pending", handler.stats()["pending"], flush=True)
                sys.exit(3)

            signal.signal(signal.SIGTERM, previous)
            handler = make({str(spool)!r}, drain_on_signals=["SIGTERM"])
            for i in range(30):
                log.info("r%d", i)
            signal.raise_signal(signal.SIGTERM)
        """
        done = run_script(tmp_path, body, prelude=SPOOLING_PRELUDE, timeout=60)
        assert "previous called; pending 0" in done.stdout, done.stderr
        assert done.returncode == 3
        assert spooled(spool) == 30

    def test_ignored_stays_ignored(self, tmp_path: Path) -> None:
        spool = tmp_path / "spool"
        body = f"""
            signal.signal(signal.SIGTERM, signal.SIG_IGN)
            handler = make({str(spool)!r}, drain_on_signals=["SIGTERM"])
            for i in range(10):
                log.info("r%d", i)
            signal.raise_signal(signal.SIGTERM)
            print("still here; pending", handler.stats()["pending"])
        """
        done = run_script(tmp_path, body, prelude=SPOOLING_PRELUDE, timeout=60)
        assert "still here; pending 0" in done.stdout, done.stderr
        assert done.returncode == 0

    def test_a_server_that_restores_the_original_and_raises_again(self, tmp_path: Path) -> None:
        """uvicorn's ``capture_signals``: its own handler, then ours back and the signal
        raised again; records logged during its shutdown are delivered too."""
        spool = tmp_path / "spool"
        body = f"""
            make({str(spool)!r}, drain_on_signals=["SIGTERM", "SIGINT"])  # configuration
            captured = []
            original = {{s: signal.signal(s, lambda n, f: captured.append(n))
                        for s in (signal.SIGTERM, signal.SIGINT)}}  # the server starts
            for i in range(40):
                log.info("r%d", i)
            os.kill(os.getpid(), signal.SIGTERM)
            wait_until(lambda: captured)
            log.info("Finished server process")  # the graceful shutdown logs
            for s, h in original.items():
                signal.signal(s, h)
            for s in reversed(captured):
                signal.raise_signal(s)
            print("not reached")
        """
        done = run_script(tmp_path, body, prelude=SPOOLING_PRELUDE, timeout=60)
        assert done.returncode == -signal.SIGTERM, done.stderr
        assert "not reached" not in done.stdout
        assert spooled(spool) == 41

    def test_a_second_signal_during_the_drain_goes_on_at_once(self, tmp_path: Path) -> None:
        body = """
            signal.signal(signal.SIGTERM, lambda signum, frame: os._exit(7))  # previous
            handler = ClickHouseHandler(url=blackhole(), flush_interval=60, shutdown_timeout=30,
                                        drain_on_signals=["SIGTERM"])
            logging.getLogger().addHandler(handler)
            log.warning("queued")
            import threading
            threading.Timer(0.5, os.kill, (os.getpid(), signal.SIGTERM)).start()
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(60)
        """
        # 20 s: the first drain alone would take its 30 s
        done = run_script(tmp_path, body, prelude=SPOOLING_PRELUDE, timeout=20)
        assert done.returncode == 7, done.stderr  # the second went straight on


class TestSeveralHandlers:
    """One hook per signal drains every live handler that asked; closed ones leave."""

    def test_two_handlers_both_drained_within_one_budget(self, tmp_path: Path) -> None:
        first, second = tmp_path / "a", tmp_path / "b"
        body = f"""
            make({str(first)!r}, drain_on_signals=["SIGTERM"])
            hook = signal.getsignal(signal.SIGTERM)
            make({str(second)!r}, drain_on_signals=["SIGTERM", "SIGINT"])
            assert signal.getsignal(signal.SIGTERM) is hook, "one hook per signal"
            for i in range(25):
                log.info("r%d", i)
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(30)
        """
        done = run_script(tmp_path, body, prelude=SPOOLING_PRELUDE, timeout=60)
        assert done.returncode == -signal.SIGTERM, done.stderr
        assert (spooled(first), spooled(second)) == (25, 25)

    def test_a_handler_without_the_option_is_drained_too(self, tmp_path: Path) -> None:
        """The process is about to end by the signal: any open queue would be lost."""
        asked, other = tmp_path / "asked", tmp_path / "other"
        body = f"""
            make({str(asked)!r}, drain_on_signals=["SIGTERM"])
            make({str(other)!r})
            for i in range(12):
                log.info("r%d", i)
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(30)
        """
        done = run_script(tmp_path, body, prelude=SPOOLING_PRELUDE, timeout=60)
        assert done.returncode == -signal.SIGTERM, done.stderr
        assert (spooled(asked), spooled(other)) == (12, 12)

    def test_a_pool_used_with_with_under_the_hook(self, tmp_path: Path) -> None:
        """``Pool.__exit__`` ends its (forked) workers with SIGTERM: they inherit the hook,
        which delivers what they logged before they die by it."""
        spool = tmp_path / "spool"
        body = pool_under_the_hook(spool, "fork")
        done = run_script(tmp_path, body, prelude=SPOOLING_PRELUDE, timeout=60)
        assert done.returncode == 0, done.stderr
        assert spooled(spool) == 40

    def test_dict_config_again_replaces_the_handler_in_the_hook(self, tmp_path: Path) -> None:
        old, new = tmp_path / "old", tmp_path / "new"
        body = f"""
            import gc, logging.config, weakref

            def configure(spool):
                logging.config.dictConfig({{
                    "version": 1, "disable_existing_loggers": False,
                    "handlers": {{"ch": {{
                        "class": "genesis_logging.ClickHouseHandler", "url": {NOWHERE!r},
                        "spool_dir": spool, "retry_attempts": 1, "flush_interval": 60,
                        "drain_on_signals": ["SIGTERM"]}}}},
                    "root": {{"level": "INFO", "handlers": ["ch"]}},
                }})
                return logging.getLogger().handlers[0]

            first = weakref.ref(configure({str(old)!r}))
            log.info("before")
            configure({str(new)!r})  # closes the first handler (its record is spooled)
            gc.collect()
            print("first collected:", first() is None, flush=True)
            for i in range(20):
                log.info("r%d", i)
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(30)
        """
        done = run_script(tmp_path, body, prelude=SPOOLING_PRELUDE, timeout=60)
        assert "first collected: True" in done.stdout, done.stderr
        assert done.returncode == -signal.SIGTERM
        assert (spooled(old), spooled(new)) == (1, 20)


class TestBudgetAndSafety:
    """The drain never outlasts ``shutdown_timeout`` and never deadlocks."""

    def test_a_server_that_never_answers_costs_shutdown_timeout(self, tmp_path: Path) -> None:
        spool = tmp_path / "spool"
        body = f"""
            handler = ClickHouseHandler(url=blackhole(), spool_dir={str(spool)!r},
                                        flush_interval=60, send_receive_timeout=300,
                                        shutdown_timeout=1, drain_on_signals=["SIGTERM"])
            logging.getLogger().addHandler(handler)
            logging.getLogger().setLevel(logging.INFO)
            for i in range(10):
                log.info("r%d", i)
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(60)
        """
        # 20 s: 1 s of budget and its grace, not the 300 s of the socket
        done = run_script(tmp_path, body, prelude=SPOOLING_PRELUDE, timeout=20)
        assert done.returncode == -signal.SIGTERM, done.stderr
        assert spooled(spool) == 10

    def test_a_signal_inside_a_logging_call_does_not_deadlock(self, tmp_path: Path) -> None:
        """The signal arrives while this thread is inside our code (a ``__str__`` called
        to format a record): the drain runs right there, re-entering our locks."""
        spool = tmp_path / "spool"
        body = f"""
            make({str(spool)!r}, drain_on_signals=["SIGTERM"])
            for i in range(10):
                log.info("r%d", i)

            class Bomb:
                def __str__(self):
                    signal.raise_signal(signal.SIGTERM)
                    return "bomb"

            log.info("%s", Bomb())
            print("not reached")
        """
        done = run_script(tmp_path, body, prelude=SPOOLING_PRELUDE, timeout=30)
        assert done.returncode == -signal.SIGTERM, done.stderr
        assert spooled(spool) == 10

    def test_a_forked_child_drains_its_own_queue(self, tmp_path: Path) -> None:
        spool = tmp_path / "spool"
        body = f"""
            handler = make({str(spool)!r}, drain_on_signals=["SIGTERM"])
            for i in range(7):
                log.info("parent %d", i)
            pid = os.fork()
            if pid == 0:
                for i in range(5):
                    log.info("child %d", i)
                os.kill(os.getpid(), signal.SIGTERM)
                time.sleep(30)
                os._exit(0)
            _, status = os.waitpid(pid, 0)
            print("child signal", os.WTERMSIG(status) if os.WIFSIGNALED(status) else None)
            handler.close()
        """
        done = run_script(tmp_path, body, prelude=SPOOLING_PRELUDE, timeout=60)
        assert f"child signal {int(signal.SIGTERM)}" in done.stdout, done.stderr
        assert spooled(spool) == 12  # 5 from the child, 7 from the parent: none twice


class TestFlushHandlers:
    """The helper for shutdown paths that are not signals (Celery, ASGI lifespan)."""

    def test_flush_then_close_before_os_exit(self, tmp_path: Path) -> None:
        spool = tmp_path / "spool"
        body = f"""
            from genesis_logging import flush_handlers
            handler = make({str(spool)!r})
            for i in range(15):
                log.info("r%d", i)
            print("flushed", flush_handlers(), handler.stats()["pending"], flush=True)
            log.info("late")
            flush_handlers(close=True)
            os._exit(0)  # as a Celery pool process ends
        """
        done = run_script(tmp_path, body, prelude=SPOOLING_PRELUDE, timeout=60)
        assert "flushed True 0" in done.stdout, done.stderr
        assert spooled(spool) == 16

    def test_asgi_lifespan_and_middleware(self, tmp_path: Path) -> None:
        spool = tmp_path / "spool"
        body = f"""
            import asyncio
            from genesis_logging.asgi import DeliverOnShutdown, lifespan

            handler = make({str(spool)!r})

            async def app(scope, receive, send):  # a bare ASGI app with a lifespan
                while True:
                    message = await receive()
                    kind = message["type"].removeprefix("lifespan.")
                    log.info("lifespan %s", kind)
                    await send({{"type": f"lifespan.{{kind}}.complete"}})
                    if kind == "shutdown":
                        return

            async def main():
                async with lifespan(None):
                    log.info("served")
                print("after lifespan: pending", handler.stats()["pending"], flush=True)
                inbox = asyncio.Queue()
                for kind in ("startup", "shutdown"):
                    inbox.put_nowait({{"type": f"lifespan.{{kind}}"}})
                seen = []

                async def send(message):
                    seen.append((message["type"], handler.stats()["pending"]))

                await DeliverOnShutdown(app)({{"type": "lifespan"}}, inbox.get, send)
                print("middleware:", seen, flush=True)

            asyncio.run(main())
            os._exit(0)
        """
        done = run_script(tmp_path, body, prelude=SPOOLING_PRELUDE, timeout=60)
        assert "after lifespan: pending 0" in done.stdout, done.stderr
        assert "('lifespan.shutdown.complete', 0)" in done.stdout
        assert spooled(spool) == 3


class TestExitOnSigterm:
    """It says why it cannot install, and what to do; it still returns a bool."""

    def test_another_handler_is_named_and_drain_on_signals_suggested(self) -> None:
        from genesis_logging import exit_on_sigterm

        def theirs(signum: int, frame: object) -> None: ...

        before = signal.signal(signal.SIGTERM, theirs)
        try:
            with pytest.warns(GenesisLoggingWarning, match=r"theirs.*drain_on_signals"):
                assert exit_on_sigterm() is False
            assert signal.getsignal(signal.SIGTERM) is theirs
        finally:
            signal.signal(signal.SIGTERM, before)

    def test_off_the_main_thread(self) -> None:
        from genesis_logging import exit_on_sigterm

        results: list[bool] = []

        def in_a_thread() -> None:
            thread = threading.Thread(target=lambda: results.append(exit_on_sigterm()))
            thread.start()
            thread.join()

        with pytest.warns(GenesisLoggingWarning, match="main thread"):
            in_a_thread()
        assert results == [False]

    def test_behind_a_drain_hook_it_installs_and_exits_143(self, tmp_path: Path) -> None:
        spool = tmp_path / "spool"
        body = f"""
            from genesis_logging import exit_on_sigterm
            make({str(spool)!r}, drain_on_signals=["SIGTERM"])
            assert exit_on_sigterm() is True
            for i in range(9):
                log.info("r%d", i)
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(30)
        """
        done = run_script(tmp_path, body, prelude=SPOOLING_PRELUDE, timeout=60)
        assert done.returncode == 143, done.stderr
        assert spooled(spool) == 9


@pytest.fixture(autouse=True)
def _restore_signal_handlers() -> Iterator[None]:
    """Handlers built here install hooks in this very process: put back what was there."""
    names = ("SIGTERM", "SIGINT", "SIGHUP", "SIGQUIT")
    before = {name: signal.getsignal(getattr(signal, name)) for name in names}
    yield
    for name, handler in before.items():
        signal.signal(getattr(signal, name), handler)


class TestSignalsReachTheMainThread:
    """Our threads block the stop signals, so the kernel hands them to the main thread.

    Found by a stress run of ``with Pool()`` under the hook (1 hang in 8 runs under load):
    a pool worker's SIGTERM went to its logging thread while its main thread slept in a
    lock a killed sibling held; Python's handler never ran and ``Pool.__exit__`` waited
    for ever. Which thread the kernel picks is not up to a test, so this checks the
    mechanism: the signal mask of every thread we start, read from ``/proc`` — and the
    main thread's, which must keep taking them after a close that ran in it (a first
    version blocked them there too: the pool worker's re-raised SIGTERM stayed pending).
    """

    def test_our_threads_block_the_stop_signals(self, tmp_path: Path) -> None:
        spool = tmp_path / "spool"
        body = f"""
            import threading

            def blocked(thread):
                with open(f"/proc/self/task/{{thread.native_id}}/status") as status:
                    mask = next(line for line in status if line.startswith("SigBlk:"))
                bits = int(mask.split()[1], 16)
                return {{s.name for s in signal.Signals if bits >> (s.value - 1) & 1}}

            handler = make({str(spool)!r}, drain_on_signals=["SIGTERM"])
            log.info("start the worker")
            closing = threading.Event()
            ours = [t for t in threading.enumerate() if t.name.startswith("genesis-logging")]
            stop = {{"SIGTERM", "SIGINT", "SIGHUP", "SIGQUIT"}}
            print(sorted(blocked(t) for t in ours)[0] >= stop, len(ours),
                  sorted(blocked(threading.main_thread()) & stop))
            handler.close()  # a close that waits runs in the caller's thread: the main one
            print(sorted(blocked(threading.main_thread()) & stop))
        """
        done = run_script(tmp_path, body, prelude=SPOOLING_PRELUDE, timeout=60)
        assert done.returncode == 0, done.stderr
        assert done.stdout.split() == ["True", "1", "[]", "[]"], done.stdout


@pytest.mark.skipif(
    not hasattr(threading, "_maintain_shutdown_locks"),
    reason="this Python's threading keeps no shutdown locks in Python code",
)
class TestSignalInsideThreading:
    """A signal that lands while threading's own locks are held (a thread stopping, the
    exit waiting for threads) must not start the drain's thread, which would wait for
    ever on the lock the interrupted frame holds — seen as a hung pool worker under load
    (2 in 300 runs). The signal then takes its default course."""

    def test_a_sigterm_inside_a_thread_stopping_ends_the_process(self, tmp_path: Path) -> None:
        spool = tmp_path / "spool"
        body = f"""
            import threading
            make({str(spool)!r}, drain_on_signals=["SIGTERM"])
            log.info("queued")

            def at_the_lock(frame, event, arg):
                if event == "call" and frame.f_code.co_name == "_maintain_shutdown_locks":
                    sys.setprofile(None)
                    signal.raise_signal(signal.SIGTERM)  # runs inside that function

            worker = threading.Thread(target=lambda: None)
            worker.start()
            sys.setprofile(at_the_lock)
            worker.join()
            sys.setprofile(None)
            print("survived")
        """
        done = run_script(tmp_path, body, prelude=SPOOLING_PRELUDE, timeout=30)
        assert done.returncode == -signal.SIGTERM, (done.returncode, done.stdout, done.stderr)
        assert "survived" not in done.stdout
