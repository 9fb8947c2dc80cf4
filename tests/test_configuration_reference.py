"""docs/configuration.md cannot drift from the code."""

from __future__ import annotations

import inspect
import pathlib
import re

import pytest

from genesis_logging import ClickHouseHandler, GenesisJsonFormatter, LocalStoreHandler

ROOT = pathlib.Path(__file__).resolve().parents[1]
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
