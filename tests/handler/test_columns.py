"""A batch of captured records becomes the insert's columns directly (the worker's path),
equal field by field to today's conversion of each record (``RecordConverter.convert``)."""

from __future__ import annotations

import logging
import math
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from genesis_logging import log_context
from genesis_logging._codec import Row
from genesis_logging._columns import ColumnBlock, ColumnBuilder
from genesis_logging._convert import RecordConverter, Snapshot
from genesis_logging.schema import FIELD_NAMES, FIELDS
from tests.support import strategies as hs

SETTINGS = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
LIMIT = 200  # max_field_chars: small, so texts around it are cheap to draw

# Values callers pass (the fast path) and their near misses (each needs a rule).
simple_text = st.one_of(
    st.text(max_size=20),
    st.text(alphabet="ab", min_size=LIMIT - 2, max_size=LIMIT + 2),  # around the limit
    st.sampled_from(["Task concluída", "ação", "\ud800 lone", "", "x" * LIMIT]),
)
simple_values = st.one_of(
    simple_text,
    st.integers(min_value=-(2**33), max_value=2**33),
    st.sampled_from([0, -1, 2**31 - 1, 2**31, 2**32 - 1, 2**32, 10**20, True, False, None]),
    st.floats(allow_nan=True, allow_infinity=True),
)
simple_keys = st.one_of(
    st.sampled_from([n for n in FIELD_NAMES if n not in hs.RESERVED]),
    st.sampled_from(["topic", "kind", "test", "outcome", "chave_ação", "attributes", "1"]),
    st.from_regex(r"[a-z_]{1,8}", fullmatch=True).filter(lambda k: k not in hs.RESERVED),
)
simple_extras = st.dictionaries(simple_keys, simple_values, max_size=6)
levels = st.sampled_from(
    [logging.INFO, logging.WARNING, logging.ERROR, logging.DEBUG, 5, 25, logging.CRITICAL]
)


def make_record(
    msg: object, args: tuple[object, ...] | None, extra: dict[Any, object], level: int = 20
) -> logging.LogRecord:
    logger = logging.getLogger("columns.test")
    return logger.makeRecord("columns.test", level, __file__, 1, msg, args, None, extra=extra)


def columns_of(rows: list[Row]) -> dict[str, list[Any]]:
    """Today's rows as the insert's columns (a missing field takes its column's default)."""
    return {f.name: [row.get(f.name, f.default) for row in rows] for f in FIELDS}


def assert_same(block: ColumnBlock, rows: list[Row]) -> None:
    """Field by field; the timestamp of a record whose ``created`` was coerced is "now".
    The rows on demand hold the same fields as today's rows (empty texts left out)."""
    expected = columns_of(rows)
    assert len(block) == len(rows)
    for got, row in zip(block, rows, strict=True):
        assert got.keys() == {k for k, v in row.items() if v != "" and v != {}}
    for name in FIELD_NAMES:
        got = block.column(name)
        for index, (a, b) in enumerate(zip(got, expected[name], strict=True)):
            if name == "timestamp" and "created.original" in rows[index].get("attributes", {}):  # type: ignore[operator]
                continue
            assert a == b, (name, index, a, b)


def build(converter: RecordConverter, records: list[logging.LogRecord]) -> ColumnBlock:
    return ColumnBuilder(converter).build([converter.capture(r) for r in records])


class TestColumnsEqualTodaysConversion:
    @SETTINGS
    @given(
        batch=st.lists(
            st.tuples(simple_text, st.lists(simple_values, max_size=2), simple_extras, levels),
            min_size=1,
            max_size=12,
        )
    )
    def test_values_callers_pass_and_their_near_misses(
        self, batch: list[tuple[str, list[object], dict[str, object], int]]
    ) -> None:
        converter, reference = (
            RecordConverter(max_field_chars=LIMIT),
            RecordConverter(max_field_chars=LIMIT),
        )
        records = [
            make_record(msg + " %s" * len(args), tuple(args) or None, extra, level)
            for msg, args, extra, level in batch
        ]
        assert_same(build(converter, records), [reference.convert(r) for r in records])
        assert converter.coerced == reference.coerced  # every coercion counted, once

    @SETTINGS
    @given(batch=st.lists(st.tuples(hs.messages, hs.extras), min_size=1, max_size=6))
    def test_hostile_records(self, batch: list[tuple[object, dict[str, object]]]) -> None:
        converter = RecordConverter(max_field_chars=LIMIT)
        records = [make_record(hs.build(msg), None, hs.build(extra)) for msg, extra in batch]
        expected = [RecordConverter(max_field_chars=LIMIT).convert(r) for r in records]
        assert_same(build(converter, records), expected)

    @SETTINGS
    @given(
        fmt=hs.formats,
        args=hs.args,
        pino=st.dictionaries(st.one_of(hs.any_text, st.integers()), hs.values, max_size=4),
        created=st.one_of(st.floats(), st.integers(min_value=-(10**12), max_value=10**19)),
        bound=st.dictionaries(
            st.sampled_from(["spec_id", "task_id", "sprint_id", "topic"]), simple_text, max_size=3
        ),
    )
    def test_context_pino_args_and_created(
        self,
        fmt: str,
        args: tuple[object, ...],
        pino: dict[object, object],
        created: float,
        bound: dict[str, str],
    ) -> None:
        converter = RecordConverter(max_field_chars=LIMIT)
        with log_context(**bound):
            records = [
                make_record("plain", None, {}),
                make_record(fmt, hs.build(args) or None, {"spec_id": "s", "n": 1}),
                make_record(hs.build(pino), None, {}),
                make_record("plain", None, {}),
            ]
            records[1].created = created  # between ordinary ones: min() and max() skip NaN
            snapshots = [converter.capture(r) for r in records]
            expected = [RecordConverter(max_field_chars=LIMIT).convert(r) for r in records]
        assert_same(ColumnBuilder(converter).build(snapshots), expected)

    def test_a_none_for_a_field_keeps_the_value_given_before_it(self) -> None:
        converter = RecordConverter()
        with log_context(spec_id="from-context"):
            r = make_record("m", None, {"spec_id": None, "task_id": None})
            block = ColumnBuilder(converter).build([converter.capture(r)])
        assert block.column("spec_id") == ["from-context"]
        assert block.column("task_id") == [""]

    def test_service_and_version_come_from_the_converter_unless_given(self) -> None:
        converter = RecordConverter(service="svc", version="1.2")
        records = [make_record("a", None, {}), make_record("b", None, {"service": "other"})]
        block = build(converter, records)
        assert block.column("service") == ["svc", "other"]
        assert block.column("version") == ["1.2", "1.2"]

    def test_a_configured_service_over_the_limit_is_cut_in_every_record(self) -> None:
        converter = RecordConverter(service="s" * 300, max_field_chars=LIMIT)
        records = [make_record("a", None, {}), make_record("b", None, {"topic": "t"})]
        assert_same(build(converter, records), [converter.convert(r) for r in records])
        for service in build(converter, records).column("service"):
            assert "…[truncated 180 of 300 characters]" in service

    @pytest.mark.parametrize("hostile", [math.nan, math.inf, -math.inf, 1e30, -1e12])
    def test_a_hostile_created_among_ordinary_ones(self, hostile: float) -> None:
        converter = RecordConverter()
        records = [make_record("a", None, {}) for _ in range(3)]
        records[1].created = hostile
        block = build(converter, records)
        assert block[1]["attributes"] == {"created.original": repr(hostile)}
        assert converter.coerced == 1
        for index in (0, 2):
            assert block.column("timestamp")[index] == round(records[index].created * 1000)

    def test_an_empty_batch(self) -> None:
        block = ColumnBuilder(RecordConverter()).build([])
        assert len(block) == 0
        assert list(block) == []
        assert all(block.column(name) == [] for name in FIELD_NAMES)


class TestColumnBlock:
    """Rows on demand: for the spool, a user's inserter and a refused record."""

    def block(self) -> tuple[ColumnBlock, list[Row]]:
        converter = RecordConverter()
        records = [
            make_record("one", None, {"spec_id": "s1", "iteration": 2, "topic": "t"}),
            make_record("two", None, {"exit_code": 0}),
            make_record("three %s", ("x",), {"kind": "k", "other": 1}),
        ]
        snapshots: list[Snapshot] = [converter.capture(r) for r in records]
        return ColumnBuilder(converter).build(snapshots), [converter.convert(r) for r in records]

    def test_a_row_holds_what_the_conversion_gives(self) -> None:
        block, rows = self.block()
        assert list(block) == rows  # exit_code=0 given: kept; not given: left out
        assert block.column("exit_code") == [0, 0, 0]  # the column holds the default

    def test_rows_do_not_share_the_attributes_dict(self) -> None:
        block, _ = self.block()
        row = block[0]
        row["attributes"]["topic"] = "changed"  # type: ignore[index]
        assert block[0]["attributes"] == {"topic": "t"}

    def test_slices_are_blocks_of_the_same_rows(self) -> None:
        block, _ = self.block()
        part = block[1:]
        assert isinstance(part, ColumnBlock)
        assert len(part) == 2
        assert list(part) == list(block)[1:]
        assert list(block[::-2]) == [block[2], block[0]]
        assert block[-1] == block[2]
        with pytest.raises(IndexError):
            block[3]
