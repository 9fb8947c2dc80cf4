"""``record.created`` in nanoseconds, NaN or infinite: coerced and counted."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from genesis_logging import ClickHouseHandler
from tests.support.fakes import FakeInserter
from tests.support.scripts import (
    logging_to,
    read_spool,
)


class TestHostileTimestamps:
    """Finding 10: ``record.created`` in nanoseconds, NaN or infinite: coerced and counted."""

    @pytest.mark.parametrize("created", [1.795e18, math.nan, math.inf, -1e12])  # 1.795e18: ns
    def test_the_record_and_its_batch_survive(self, created: float, tmp_path: Path) -> None:
        fake = FakeInserter()
        fake.always = ConnectionRefusedError("down")
        handler = ClickHouseHandler(
            inserter=fake, spool_dir=tmp_path, retry_attempts=1, flush_interval=60
        )
        logger = logging_to(handler)
        logger.info("before")
        record = logger.makeRecord("hostile", 20, __file__, 1, "hostile", None, None)
        record.created = created
        logger.handle(record)
        logger.info("after")
        handler.close()
        stats = handler.stats()
        assert stats["emitted"] == 3
        assert stats["spooled"] == 3, stats
        assert stats["coerced"] >= 1
        rows, unreadable = read_spool(tmp_path)
        assert unreadable == 0
        (hostile,) = [row for row in rows if row["message"] == "hostile"]
        assert hostile["attributes"]["created.original"] == repr(created)


class TestUncapturableRecord:
    """A record that cannot even be captured (a mapping that raises) is counted, never lost
    silently, and costs no other record."""

    def test_counted_as_capture_failed(self, monkeypatch: pytest.MonkeyPatch) -> None:
        from collections.abc import Iterator, Mapping

        class Hostile(Mapping[str, object]):
            def __getitem__(self, key: str) -> object:
                raise RuntimeError("no")

            def __iter__(self) -> Iterator[str]:
                raise RuntimeError("no")

            def __len__(self) -> int:
                return 1

        fake = FakeInserter()
        handler = ClickHouseHandler(inserter=fake, flush_interval=60)
        errors: list[object] = []
        monkeypatch.setattr(handler, "handleError", errors.append)
        logger = logging_to(handler)
        logger.info("before")
        logger.info(Hostile())  # pino style: the mapping is the message
        logger.info("after")
        assert handler.drain(10)
        stats = handler.stats()
        handler.close()
        assert len(errors) == 1
        assert stats["dropped"] == {"capture_failed": 1}
        assert stats["emitted"] == 3
        assert stats["sent"] == 2
        assert [row["message"] for batch in fake.batches for row in batch] == ["before", "after"]
