"""The one record schema."""

from __future__ import annotations

import ast
import json
import os
import pathlib
import shutil
import subprocess
import sys

from genesis_logging.schema import (
    CONTEXT_FIELDS,
    FIELD_NAMES,
    FIELDS,
    SEED_FIELDS,
    SETTABLE_FIELDS,
    Source,
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
        package = pathlib.Path(__file__).parents[2] / "genesis_logging"
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

    def test_the_record_to_row_code_names_no_record_field(self) -> None:
        """The formatter, the row codec and the columns find the fields taken from the
        record through the schema's extractors, never by spelling their names."""
        package = pathlib.Path(__file__).parents[2] / "genesis_logging"
        names = {f.name for f in FIELDS if f.source is Source.RECORD}
        for module in ("_convert.py", "_codec.py", "_columns.py", "formatter.py", "handler.py"):
            tree = ast.parse((package / module).read_text())
            spelled = {
                node.value
                for node in ast.walk(tree)
                if isinstance(node, ast.Constant) and node.value in names
            }
            assert not spelled, f"{module} spells record fields: {sorted(spelled)}"


ADDED_FIELDS = """\
    Field("thread", "String", _STR, _S, False, "thread name", repeats=True, record_attribute="threadName"),
    Field("line", "UInt32", Kind.UINT32, _S, False, "source line", record_attribute="lineno"),
"""

SEE_THE_NEW_FIELDS = """
import json, logging, threading
from genesis_logging import GenesisJsonFormatter
from genesis_logging._convert import RecordConverter
from genesis_logging._columns import ColumnBuilder
from genesis_logging.ddl import create_table_sql

threading.current_thread().name = "worker-7"
record = logging.getLogger("app").makeRecord("app", logging.INFO, "f.py", 42, "hi %s", ("x",), None,
                                             extra={"spec_id": "spec_1"})
converter = RecordConverter()
block = ColumnBuilder(converter).build([converter.capture(record)])
print(json.dumps({
    "line": json.loads(GenesisJsonFormatter().format(record)),
    "columns": {name: block.column(name) for name in ("thread", "line", "logger", "message")},
    "row": block[0],
    "ddl": create_table_sql(),
}))
"""


class TestARecordFieldInSchemaOnly:
    """A field taken from the LogRecord is one line in schema.py: the console line, the
    columns and the DDL follow (issue 22, point 2). The package is copied and only its
    schema.py edited, as a maintainer would."""

    def test_two_new_record_fields_reach_every_output(self, tmp_path: pathlib.Path) -> None:
        package = pathlib.Path(__file__).parents[2] / "genesis_logging"
        copy = tmp_path / "genesis_logging"
        shutil.copytree(package, copy, ignore=shutil.ignore_patterns("__pycache__"))
        schema = copy / "schema.py"
        text = schema.read_text()
        anchor = '    Field("exception",'
        assert anchor in text
        schema.write_text(text.replace(anchor, ADDED_FIELDS + anchor, 1))
        done = subprocess.run(
            [sys.executable, "-c", SEE_THE_NEW_FIELDS],
            capture_output=True,
            text=True,
            timeout=120,
            cwd=tmp_path,
            env={**os.environ, "PYTHONPATH": str(tmp_path)},
        )
        assert done.returncode == 0, done.stderr
        seen = json.loads(done.stdout)
        assert seen["line"]["thread"] == "worker-7"
        assert seen["line"]["line"] == 42
        keys = list(seen["line"])
        assert keys.index("logger") < keys.index("thread") < keys.index("line")  # schema order
        assert seen["columns"] == {
            "thread": ["worker-7"],
            "line": [42],
            "logger": ["app"],
            "message": ["hi x"],
        }
        assert seen["row"]["thread"] == "worker-7"
        assert seen["row"]["line"] == 42
        assert "    thread LowCardinality(String) COMMENT 'thread name',\n" in seen["ddl"]
        assert "    line UInt32 COMMENT 'source line',\n" in seen["ddl"]
