"""Every YAML example in the docs is loaded by dictConfig; Python examples are run."""

from __future__ import annotations

import json
import logging
import logging.config
import pathlib
import re
from collections.abc import Iterator
from typing import Any

import pytest
import yaml

from genesis_logging.schema import FIELD_NAMES
from tests.support.docs import Block, blocks
from tests.support.server import Target

YAML_BLOCKS = blocks("yaml")
PYTHON_BLOCKS = blocks("python")


def parse_lines(text: str) -> list[dict[str, Any]]:
    records = [json.loads(line) for line in text.splitlines()]
    for record in records:
        assert set(record) <= set(FIELD_NAMES), record
    return records


def test_the_docs_have_examples() -> None:
    assert len(YAML_BLOCKS) >= 2
    assert len(PYTHON_BLOCKS) >= 3


def uses_clickhouse(block: Block) -> bool:
    return "ClickHouseHandler" in block.body or "setup_logging" in block.body


@pytest.fixture
def docs_clickhouse(
    request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Target | None]:
    """For examples that ship to ClickHouse: a real server behind CLICKHOUSE_URL."""
    block: Block = request.node.callspec.params["block"]
    if not uses_clickhouse(block):
        yield None
        return
    server = request.getfixturevalue("running_local_server")
    target = Target("local", server.host, server.port, local=server)
    target.create_logs_table("genesis", "logs")
    monkeypatch.setenv("CLICKHOUSE_URL", target.url("genesis"))
    yield target


def stored_messages(target: Target) -> list[str]:
    return sorted(m for (m,) in target.client().execute("SELECT message FROM genesis.logs"))


@pytest.mark.parametrize("block", YAML_BLOCKS, ids=lambda b: b.id)
def test_yaml_example_configures_logging(
    block: Block,
    capsys: pytest.CaptureFixture[str],
    docs_clickhouse: Target | None,
    tmp_path: pathlib.Path,
) -> None:
    config = yaml.safe_load(block.body)
    for options in config.get("handlers", {}).values():
        if (
            "spool_dir" in options
        ):  # the docs name the recommended place; tests use a temporary one
            options["spool_dir"] = str(tmp_path / "spool")
    # A library logger that exists before the configuration must keep working.
    existing = logging.getLogger("preexisting.library")
    existing.setLevel(logging.INFO)
    logging.config.dictConfig(config)
    capsys.readouterr()

    probes = ["", "preexisting.library", *config.get("loggers", {})]
    for name in probes:
        logging.getLogger(name or None).critical("probe %s", name or "root")
    logging.shutdown()
    records = parse_lines(capsys.readouterr().out)

    # Exactly one line per probe: nothing disabled, nothing duplicated.
    messages = [r["message"] for r in records]
    assert messages == [f"probe {name or 'root'}" for name in probes]
    for record, name in zip(records, probes, strict=True):
        assert record["logger"] == (name or "root")
        assert record["level"] == "critical"
        assert record["service"]
    if docs_clickhouse is not None:
        # Every option written in the YAML reached the handler, and so did the records.
        for options in config["handlers"].values():
            if options.get("class") == "genesis_logging.ClickHouseHandler":
                check_handler_options(options)
        assert stored_messages(docs_clickhouse) == sorted(messages)


def check_handler_options(options: dict[str, Any]) -> None:
    from genesis_logging import ClickHouseHandler

    built = [h for h in logging.getLogger().handlers if isinstance(h, ClickHouseHandler)]
    assert built, "the YAML attaches a ClickHouseHandler to the root logger"
    handler = built[0]
    for key, value in options.items():
        if key in ("class", "level", "formatter", "filters"):
            continue
        if key in ("service", "version"):
            actual = getattr(handler.converter, key)
        elif hasattr(handler.settings, key):
            actual = getattr(handler.settings, key)
        else:
            actual = getattr(handler.config, key)
        assert actual == value, key


@pytest.mark.parametrize("block", PYTHON_BLOCKS, ids=lambda b: b.id)
def test_python_example_runs(
    block: Block, capsys: pytest.CaptureFixture[str], docs_clickhouse: Target | None
) -> None:
    namespace: dict[str, Any] = {"__name__": "__docs_example__"}
    exec(compile(block.body, block.id, "exec"), namespace)
    logging.shutdown()
    captured = capsys.readouterr()
    # Each logging call of an example is one record (levels there are INFO+) ...
    calls = re.findall(r"\.(?:info|warning|error|exception|critical)\(", block.body)
    if docs_clickhouse is None:
        assert len(parse_lines(captured.out)) == len(calls)
    else:
        # ... on the console (stderr for setup_logging) and in ClickHouse.
        console = parse_lines(captured.out + captured.err)
        assert len(console) in (0, len(calls))
        assert len(stored_messages(docs_clickhouse)) == len(calls)
