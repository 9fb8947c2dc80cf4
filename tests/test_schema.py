"""The one record schema."""

from __future__ import annotations

import ast
import pathlib

from genesis_logging.schema import (
    CONTEXT_FIELDS,
    FIELD_NAMES,
    FIELDS,
    SEED_FIELDS,
    SETTABLE_FIELDS,
)

SEED_COLUMNS = [
    ("timestamp", "DateTime64(3)"),
    ("level", "String"),
    ("message", "String"),
    ("spec_id", "String"),
    ("iteration", "UInt32"),
    ("stdout", "String"),
    ("stderr", "String"),
    ("exit_code", "Int32"),
    ("code_snapshot", "String"),
    ("duration_ms", "UInt32"),
    ("sprint_id", "String"),
    ("task_id", "String"),
    ("service", "String"),
    ("version", "String"),
]


class TestSchema:
    """The seed's 14 columns in order, then our three."""

    def test_seed_columns_in_order_with_their_types(self) -> None:
        assert [(f.name, f.clickhouse_type) for f in SEED_FIELDS] == SEED_COLUMNS

    def test_extra_fields_follow_the_seed(self) -> None:
        assert FIELD_NAMES[14:] == ("logger", "exception", "attributes")
        assert len(FIELDS) == 17

    def test_defaults(self) -> None:
        defaults = {f.name: f.default for f in FIELDS}
        assert defaults["service"] == "genesis-pipeline"
        assert defaults["iteration"] == 0
        assert defaults["exit_code"] == 0
        assert defaults["attributes"] == {}
        assert defaults["stderr"] == ""

    def test_context_and_settable_fields(self) -> None:
        assert CONTEXT_FIELDS == ("spec_id", "iteration", "sprint_id", "task_id")
        assert "level" not in SETTABLE_FIELDS
        assert "stdout" in SETTABLE_FIELDS
        assert "service" in SETTABLE_FIELDS


class TestNothingElseListsTheFields:
    """No module but schema.py spells out the field list."""

    def test_no_other_module_lists_several_field_names(self) -> None:
        package = pathlib.Path(__file__).parents[1] / "genesis_logging"
        names = set(FIELD_NAMES) - {"message", "level", "timestamp", "logger", "version"}
        for path in package.rglob("*.py"):
            if path.name == "schema.py":
                continue
            tree = ast.parse(path.read_text())
            for node in ast.walk(tree):
                if isinstance(node, (ast.List, ast.Tuple, ast.Set)):
                    literal = {
                        elt.value
                        for elt in node.elts
                        if isinstance(elt, ast.Constant) and isinstance(elt.value, str)
                    }
                    assert len(literal & names) < 3, f"{path.name} lists fields: {literal & names}"
