"""NaN and infinity are refused at configuration time, with the option named."""

from __future__ import annotations

import math

import pytest

from genesis_logging import ClickHouseHandler, ConfigurationError
from tests.support.fakes import FakeInserter


class TestConfiguration:
    """Finding 9: NaN and infinity are refused at configuration time, with the option named."""

    @pytest.mark.parametrize(
        "option",
        [
            "flush_interval",
            "block_timeout",
            "retry_max_delay",
            "shutdown_timeout",
            "connect_timeout",
            "send_receive_timeout",
        ],
    )
    @pytest.mark.parametrize("value", [math.nan, math.inf, -math.inf, "nan", "inf"])
    def test_not_a_finite_number(self, option: str, value: object) -> None:
        if isinstance(value, str) and option not in ("connect_timeout", "send_receive_timeout"):
            value = float(value)
        with pytest.raises(ConfigurationError, match=option):
            ClickHouseHandler(inserter=FakeInserter(), **{option: value})

    @pytest.mark.parametrize(
        "url",
        [
            "clickhouse://writer:s3cr?et@db.example:9000/genesis",
            "clickhouse://writer:s3cr#et@db.example:9000/genesis",
            "clickhouse://writer:s3cr/et@db.example:9000/genesis",
            "clickhouse://writer:s3cr%et@db.example:99999/genesis",
            # a fragment is never part of a ClickHouse URL: a "#" cut something off
            "clickhouse://writer:s3cret@db.example:9000/genesis#et",
            "clickhouse://writer:s3cret@db.example:9000/genesis?secure=1#et@x",
        ],
    )
    def test_a_malformed_url_never_echoes_the_password(self, url: str) -> None:
        with pytest.raises(ConfigurationError) as raised:
            ClickHouseHandler(url=url, inserter=FakeInserter())
        assert "s3cr" not in str(raised.value)
        assert "et@" not in str(raised.value)
        assert "percent-encoded" in str(raised.value)

    def test_a_url_in_the_host_variable_is_refused_without_the_password(
        self, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        monkeypatch.setenv("CLICKHOUSE_HOST", "clickhouse://writer:p%40ss@db.example:9000/x")
        with pytest.raises(ConfigurationError, match="CLICKHOUSE_URL") as raised:
            ClickHouseHandler(inserter=FakeInserter())
        assert "p%40ss" not in str(raised.value)
        assert "p@ss" not in str(raised.value)
