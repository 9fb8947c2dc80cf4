"""docs/configuration.md cannot drift from the code."""

from __future__ import annotations

import dataclasses
import inspect
import pathlib
import re
from typing import Any

import pytest

from genesis_logging import ClickHouseHandler, GenesisJsonFormatter, LocalStoreHandler
from genesis_logging._config import OPTIONS, HandlerConfig
from genesis_logging._policies import RetryPolicy
from genesis_logging.errors import ConfigurationError
from genesis_logging.settings import ConnectionSettings
from genesis_logging.spool import Spool
from tests.support.fakes import FakeInserter

ROOT = pathlib.Path(__file__).resolve().parents[2]
DOC = (ROOT / "docs" / "configuration.md").read_text()


def table(heading: str) -> dict[str, str]:
    """option -> default, from the table under ``heading``."""
    section = DOC.split(f"## {heading}\n", 1)[1].split("\n## ", 1)[0]
    rows = re.findall(r"^\| `([a-z_]+)` \| `([^`]*)` \|", section, re.MULTILINE)
    return dict(rows)


@pytest.mark.parametrize(
    ("cls", "heading"),
    [
        (GenesisJsonFormatter, "`GenesisJsonFormatter`"),
        (ClickHouseHandler, "`ClickHouseHandler`"),
        (LocalStoreHandler, "`LocalStoreHandler`"),
    ],
)
def test_every_option_with_its_default(cls: type, heading: str) -> None:
    documented = table(heading)
    parameters = {
        name: repr(p.default)
        for name, p in inspect.signature(cls.__init__).parameters.items()  # type: ignore[misc]
        if name != "self"
    }
    assert documented == parameters


def test_every_environment_variable_is_documented() -> None:
    from genesis_logging.context import ENVIRONMENT_FIELDS

    used = set(ENVIRONMENT_FIELDS.values())  # read in a loop, not by name
    for path in (ROOT / "genesis_logging").rglob("*.py"):
        used |= set(re.findall(r'(?:environ|env)\.get\("([A-Z_]+)"', path.read_text()))
    section = DOC.split("## Environment variables\n", 1)[1]
    documented = set(re.findall(r"^\| `([A-Z_]+)` \|", section, re.MULTILINE))
    assert used == documented


class TestOneHomeForEveryOption:
    """``HandlerConfig`` holds every default and every rule; the handler's signature and the
    table above cannot drift from it."""

    @staticmethod
    def signature() -> dict[str, inspect.Parameter]:
        parameters = inspect.signature(ClickHouseHandler.__init__).parameters
        return {name: p for name, p in parameters.items() if name not in ("self", "level")}

    def test_every_keyword_is_an_option_of_the_config_or_the_connection(self) -> None:
        connection = {"url", *(f.name for f in dataclasses.fields(ConnectionSettings))}
        keywords = set(self.signature()) - {"inserter"}
        assert keywords == OPTIONS | connection
        assert not OPTIONS & connection

    def test_the_signature_s_defaults_are_the_config_s(self) -> None:
        """A default changed in one place only fails here (the table follows the
        signature, above)."""
        defaults = {n: p.default for n, p in self.signature().items() if n in OPTIONS}
        built = HandlerConfig.from_options(defaults)
        for field in dataclasses.fields(HandlerConfig):
            if field.name != "connection":
                assert getattr(built, field.name) == field.default, field.name
        assert built == HandlerConfig.from_options({})

    def test_the_clickhouse_page_agrees(self) -> None:
        """docs/clickhouse.md repeats the delivery defaults: they must be these."""
        page = (ROOT / "docs" / "clickhouse.md").read_text()
        section = page.split("## Delivery options\n", 1)[1].split("\n## ", 1)[0]
        documented = dict(re.findall(r"^\| `([a-z_]+)` \| `([^`]*)` \|", section, re.MULTILINE))
        config = HandlerConfig.from_options({})
        assert len(documented) >= 10
        assert {name: str(getattr(config, name)) for name in documented} == documented

    def test_each_keyword_is_forwarded(self, tmp_path: pathlib.Path) -> None:
        given: dict[str, Any] = {
            "table": "t",
            "batch_size": 7,
            "flush_interval": 2.5,
            "queue_size": 70,
            "queue_full_policy": "block",
            "block_timeout": 0.3,
            "retry_attempts": 3,
            "retry_max_delay": 4.0,
            "shutdown_timeout": 6.0,
            "service": "svc",
            "version": "9",
            "max_field_chars": 5000,
            "spool_dir": str(tmp_path),
            "spool_max_bytes": 123_456,
            "drain_on_signals": ("SIGTERM",),
        }
        assert set(given) == OPTIONS  # a new option is added here too
        handler = ClickHouseHandler(inserter=FakeInserter(), host="db.example", **given)
        try:
            assert {name: getattr(handler.config, name) for name in OPTIONS} == given
            assert handler.settings.host == "db.example"
        finally:
            handler.close()

    @pytest.mark.parametrize(
        ("options", "match"),
        [
            ({"batch_size": 500, "queue_size": 100}, "batch_size .* queue_size"),
            ({"block_timeout": 2.0}, "block_timeout applies to queue_full_policy 'block'"),
            ({"spool_max_bytes": 1000}, "spool_max_bytes needs spool_dir"),
            ({"queue_full_policy": "spool"}, "needs spool_dir"),
            ({"service": 5}, "service"),
            ({"max_field_chars": 0}, "max_field_chars"),
            ({"colour": "blue"}, "colour"),
        ],
    )
    def test_contradictions_are_one_error_type(self, options: dict[str, Any], match: str) -> None:
        with pytest.raises(ConfigurationError, match=match):
            HandlerConfig.from_options(options)

    def test_the_parts_take_their_defaults_from_it(self, tmp_path: pathlib.Path) -> None:
        config = HandlerConfig.from_options({})
        policy = RetryPolicy()
        assert (policy.attempts, policy.max_delay) == (
            config.retry_attempts,
            config.retry_max_delay,
        )
        assert Spool(tmp_path).max_bytes == config.spool_max_bytes
        with pytest.raises(ConfigurationError, match="spool_max_bytes"):
            Spool(tmp_path, max_bytes=-1)
