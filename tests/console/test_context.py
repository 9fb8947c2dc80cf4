"""log_context and ContextFilter."""

from __future__ import annotations

import asyncio
import contextvars
import logging
import threading

import pytest

from genesis_logging import ContextFilter, current_context, log_context
from tests.support.captured import Captured


class TestBinding:
    """Binding, nesting and restoring."""

    def test_binds_inside_and_restores_after(self) -> None:
        assert current_context() == {}
        with log_context(spec_id="spec_001", iteration=1, topic="x"):
            assert current_context() == {"spec_id": "spec_001", "iteration": 1, "topic": "x"}
        assert current_context() == {}

    def test_inner_wins_and_outer_comes_back(self) -> None:
        with log_context(spec_id="outer", iteration=1, sprint_id="S1"):
            with log_context(spec_id="inner", iteration=2):
                assert current_context() == {"spec_id": "inner", "iteration": 2, "sprint_id": "S1"}
            assert current_context() == {"spec_id": "outer", "iteration": 1, "sprint_id": "S1"}

    def test_restored_after_an_exception(self) -> None:
        with pytest.raises(RuntimeError), log_context(spec_id="s"):
            raise RuntimeError
        assert current_context() == {}

    def test_none_binds_nothing(self) -> None:
        with log_context(spec_id="s"), log_context(spec_id=None, task_id="T1"):
            assert current_context() == {"spec_id": "s", "task_id": "T1"}

    def test_same_instance_reentered(self) -> None:
        ctx = log_context(task_id="T1")
        with ctx, log_context(task_id="T2"), ctx:
            assert current_context()["task_id"] == "T1"
        assert current_context() == {}

    def test_repr_and_fields(self) -> None:
        ctx = log_context(spec_id="s", iteration=3)
        assert ctx.fields == {"spec_id": "s", "iteration": 3}
        assert repr(ctx) == "log_context(spec_id='s', iteration=3)"


class TestValidation:
    """A bad value is a programming error at the log_context call."""

    @pytest.mark.parametrize(
        "kwargs",
        [
            {"iteration": -1},
            {"iteration": "abc"},
            {"iteration": "3"},
            {"iteration": 2**32},
            {"iteration": True},
            {"iteration": 1.5},
            {"exit_code": 2**31},
            {"spec_id": 1},
            {"task_id": b"T1"},
            {"level": "error"},
            {"timestamp": 0},
        ],
    )
    def test_raises_value_error(self, kwargs: dict[str, object]) -> None:
        with pytest.raises(ValueError, match="log_context"):
            log_context(**kwargs)  # type: ignore[arg-type]

    def test_free_fields_take_any_value(self) -> None:
        with log_context(payload={"a": [1]}, count=3):
            assert current_context()["payload"] == {"a": [1]}


class TestDecorator:
    """As a decorator of plain and async functions."""

    def test_plain_function(self) -> None:
        @log_context(task_id="T9")
        def work() -> dict[str, object]:
            return current_context()

        assert work() == {"task_id": "T9"}
        assert work() == {"task_id": "T9"}
        assert current_context() == {}

    def test_recursive_calls_restore_each_level(self) -> None:
        seen: list[dict[str, object]] = []

        @log_context(spec_id="rec")
        def work(depth: int) -> None:
            if depth:
                with log_context(iteration=depth):
                    work(depth - 1)
            seen.append(current_context())

        work(2)
        assert seen == [
            {"spec_id": "rec", "iteration": 1},
            {"spec_id": "rec", "iteration": 2},
            {"spec_id": "rec"},
        ]

    def test_async_function(self) -> None:
        @log_context(spec_id="async")
        async def work() -> dict[str, object]:
            await asyncio.sleep(0)
            return current_context()

        assert asyncio.run(work()) == {"spec_id": "async"}
        assert current_context() == {}


class TestConcurrency:
    """Threads with a copied context and asyncio tasks each see their own values."""

    def test_thread_with_copied_context(self) -> None:
        results: dict[str, object] = {}
        with log_context(spec_id="parent"):
            ctx = contextvars.copy_context()
        thread = threading.Thread(
            target=ctx.run, args=(lambda: results.update(current_context()),)
        )
        thread.start()
        thread.join()
        assert results == {"spec_id": "parent"}

    def test_threads_do_not_see_each_other(self) -> None:
        barrier = threading.Barrier(4)
        results: dict[int, object] = {}

        def work(n: int) -> None:
            with log_context(iteration=n):
                barrier.wait(timeout=10)
                results[n] = current_context()["iteration"]

        threads = [threading.Thread(target=work, args=(n,)) for n in range(4)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert results == {0: 0, 1: 1, 2: 2, 3: 3}

    def test_asyncio_tasks_are_isolated(self) -> None:
        async def work(n: int) -> object:
            with log_context(iteration=n):
                await asyncio.sleep(0.01 * (3 - n))
                return current_context()["iteration"]

        async def main() -> list[object]:
            return list(await asyncio.gather(*(work(n) for n in range(3))))

        assert asyncio.run(main()) == [0, 1, 2]


class TestContextFilter:
    """The filter carries the context across a thread hop."""

    def test_stamps_fields_and_snapshot(self) -> None:
        record = logging.LogRecord("n", logging.INFO, "p", 1, "m", None, None)
        with log_context(spec_id="s", iteration=4):
            assert ContextFilter().filter(record) is True
        assert (record.spec_id, record.iteration) == ("s", 4)  # type: ignore[attr-defined]
        assert record._genesis_context == {"spec_id": "s", "iteration": 4}  # type: ignore[attr-defined]

    def test_extra_beats_stamped_context(self) -> None:
        record = logging.LogRecord("n", logging.INFO, "p", 1, "m", None, None)
        record.spec_id = "explicit"  # type: ignore[attr-defined]
        with log_context(spec_id="ctx"):
            ContextFilter().filter(record)
        assert record.spec_id == "explicit"  # type: ignore[attr-defined]

    def test_first_stamp_wins(self) -> None:
        record = logging.LogRecord("n", logging.INFO, "p", 1, "m", None, None)
        with log_context(spec_id="caller"):
            ContextFilter().filter(record)
        with log_context(spec_id="other-thread"):
            ContextFilter().filter(record)
        assert record._genesis_context == {"spec_id": "caller"}  # type: ignore[attr-defined]

    def test_context_survives_a_queue_hop(self, captured: Captured) -> None:
        import queue
        from logging.handlers import QueueHandler, QueueListener

        hop: queue.SimpleQueue[logging.LogRecord] = queue.SimpleQueue()
        queue_handler = QueueHandler(hop)
        queue_handler.addFilter(ContextFilter())
        source = logging.getLogger("test.hop")
        source.handlers[:] = [queue_handler]
        source.propagate = False
        source.setLevel(logging.INFO)
        listener = QueueListener(hop, captured.handler)
        listener.start()
        try:
            with log_context(spec_id="hop", iteration=7):
                source.info("crossed", extra={"task_id": "T1"})
        finally:
            listener.stop()
        line = captured.one()
        assert (line["spec_id"], line["iteration"], line["task_id"]) == ("hop", 7, "T1")

    def test_works_with_a_plain_formatter(self) -> None:
        import io

        stream = io.StringIO()
        handler = logging.StreamHandler(stream)
        handler.setFormatter(logging.Formatter("%(spec_id)s/%(iteration)s %(message)s"))
        handler.addFilter(ContextFilter())
        logger = logging.getLogger("test.plain")
        logger.handlers[:] = [handler]
        logger.propagate = False
        with log_context(spec_id="spec_9", iteration=1):
            logger.warning("plain")
        assert stream.getvalue() == "spec_9/1 plain\n"
