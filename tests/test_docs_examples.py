"""Every YAML example in the docs is loaded by dictConfig; Python examples are run."""

from __future__ import annotations

import json
import logging
import logging.config
import re
from typing import Any

import pytest
import yaml

from genesis_logging.schema import FIELD_NAMES

from .docs_examples import Block, blocks

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


@pytest.mark.parametrize("block", YAML_BLOCKS, ids=lambda b: b.id)
def test_yaml_example_configures_logging(block: Block, capsys: pytest.CaptureFixture[str]) -> None:
    config = yaml.safe_load(block.body)
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


@pytest.mark.parametrize("block", PYTHON_BLOCKS, ids=lambda b: b.id)
def test_python_example_runs(block: Block, capsys: pytest.CaptureFixture[str]) -> None:
    exec(compile(block.body, block.id, "exec"), {"__name__": "__docs_example__"})
    logging.shutdown()
    records = parse_lines(capsys.readouterr().out)
    # Each logging call of an example prints exactly one line (levels there are INFO+).
    calls = re.findall(r"\.(?:info|warning|error|exception|critical)\(", block.body)
    assert len(records) == len(calls)
