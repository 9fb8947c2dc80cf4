"""GenesisJsonFormatter: golden lines, field by field."""

from __future__ import annotations

import copy
import json
import logging
import sys

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from genesis_logging import GenesisJsonFormatter, log_context
from genesis_logging._codec import format_timestamp
from genesis_logging.schema import FIELD_NAMES
from tests.support.captured import Captured, make_captured


def make_record(msg: object = "hello", *args: object, **extra: object) -> logging.LogRecord:
    record = logging.LogRecord("svc.worker", logging.INFO, "/src/w.py", 7, msg, args or None, None)
    record.created = 1_764_078_555.123456  # 2025-11-25T13:49:15.123Z
    record.__dict__.update(extra)
    return record


class TestGoldenLine:
    """Each field of a formatted line, against a known record."""

    def test_full_line_exactly(self) -> None:
        formatter = GenesisJsonFormatter(service="billing", version="2.1.0")
        record = make_record(
            "ran %s",
            "tests",
            spec_id="spec_001",
            iteration=3,
            stdout="3 passed",
            stderr="E   assert 1 == 2",
            exit_code=1,
            code_snapshot="def f(): ...",
            duration_ms=1500,
            sprint_id="S030",
            task_id="T01",
            topic="payments",
        )
        assert formatter.format(record) == (
            '{"timestamp": "2025-11-25T13:49:15.123Z", "level": "info", "message": "ran tests", '
            '"spec_id": "spec_001", "iteration": 3, "stdout": "3 passed", '
            '"stderr": "E   assert 1 == 2", "exit_code": 1, "code_snapshot": "def f(): ...", '
            '"duration_ms": 1500, "sprint_id": "S030", "task_id": "T01", "service": "billing", '
            '"version": "2.1.0", "logger": "svc.worker", "attributes": {"topic": "payments"}}'
        )

    def test_keys_follow_schema_order_whatever_the_extra_order(self) -> None:
        record = make_record(task_id="T1", duration_ms=5, spec_id="s", z="1", a="2")
        keys = list(json.loads(GenesisJsonFormatter().format(record)))
        assert keys == sorted(keys, key=FIELD_NAMES.index)

    def test_timestamp_is_utc_iso_with_milliseconds_and_z(self) -> None:
        assert format_timestamp(0) == "1970-01-01T00:00:00.000Z"
        assert format_timestamp(1_764_078_555_123) == "2025-11-25T13:49:15.123Z"
        assert format_timestamp(1_764_078_555_999) == "2025-11-25T13:49:15.999Z"

    def test_timestamp_rounds_to_the_nearest_millisecond(self) -> None:
        record = make_record()
        record.created = 1_764_078_555.1239
        assert json.loads(GenesisJsonFormatter().format(record))["timestamp"].endswith("15.124Z")

    @pytest.mark.parametrize(
        ("level", "name"),
        [(10, "debug"), (20, "info"), (30, "warning"), (40, "error"), (50, "critical")],
    )
    def test_level_is_lower_case(self, captured: Captured, level: int, name: str) -> None:
        captured.logger.log(level, "x")
        assert captured.one()["level"] == name

    def test_message_uses_get_message(self, captured: Captured) -> None:
        captured.logger.info("%s + %d", "a", 2)
        assert captured.one()["message"] == "a + 2"

    def test_logger_name(self, captured: Captured) -> None:
        captured.logger.info("x")
        assert captured.one()["logger"] == "test.captured"

    def test_exception_holds_the_traceback(self, captured: Captured) -> None:
        try:
            raise KeyError("missing")
        except KeyError:
            captured.logger.exception("failed")
        line = captured.one()
        assert line["level"] == "error"
        assert line["exception"].startswith("Traceback (most recent call last):")
        assert line["exception"].endswith("KeyError: 'missing'")

    def test_stack_info_goes_into_exception(self, captured: Captured) -> None:
        captured.logger.info("where", stack_info=True)
        assert captured.one()["exception"].startswith("Stack (most recent call last):")

    def test_service_and_version_from_environment(self, monkeypatch: pytest.MonkeyPatch) -> None:
        monkeypatch.setenv("GENESIS_SERVICE", "env-service")
        monkeypatch.setenv("GENESIS_VERSION", "9.9")
        line = json.loads(GenesisJsonFormatter().format(make_record()))
        assert (line["service"], line["version"]) == ("env-service", "9.9")

    def test_configuration_beats_environment(self, monkeypatch: pytest.MonkeyPatch) -> None:
        monkeypatch.setenv("GENESIS_SERVICE", "env-service")
        line = json.loads(GenesisJsonFormatter(service="cfg").format(make_record()))
        assert line["service"] == "cfg"

    def test_service_defaults_to_genesis_pipeline(self, monkeypatch: pytest.MonkeyPatch) -> None:
        monkeypatch.delenv("GENESIS_SERVICE", raising=False)
        monkeypatch.delenv("GENESIS_VERSION", raising=False)
        line = json.loads(GenesisJsonFormatter().format(make_record()))
        assert line["service"] == "genesis-pipeline"
        assert "version" not in line


class TestEmptyFields:
    """Empty fields are omitted unless keep_empty is set."""

    def test_omitted_by_default(self) -> None:
        line = json.loads(GenesisJsonFormatter(version="").format(make_record(stderr="")))
        assert set(line) == {"timestamp", "level", "message", "service", "logger"}

    def test_kept_with_defaults(self) -> None:
        formatter = GenesisJsonFormatter(keep_empty=True, service="s", version="")
        line = json.loads(formatter.format(make_record()))
        assert list(line) == list(FIELD_NAMES)
        assert line["iteration"] == 0
        assert line["exit_code"] == 0
        assert line["stderr"] == ""
        assert line["attributes"] == {}

    def test_zero_exit_code_given_explicitly_is_written(self) -> None:
        line = json.loads(GenesisJsonFormatter().format(make_record(exit_code=0)))
        assert line["exit_code"] == 0


class TestOneLine:
    """A record is always one line."""

    def test_newlines_in_every_text_field_are_escaped(self, captured: Captured) -> None:
        try:
            raise ValueError("multi\nline")
        except ValueError:
            captured.logger.exception("a\nb", extra={"stdout": "1\n2\r\n", "note": "x\ny"})
        assert len(captured.lines()) == 1
        line = captured.one()
        assert line["message"] == "a\nb"
        assert line["stdout"] == "1\n2\r\n"

    def test_unicode_is_written_as_utf8_by_default(self) -> None:
        text = GenesisJsonFormatter().format(make_record("olá ✓ 🚀"))
        assert "olá ✓ 🚀" in text

    def test_ensure_ascii_escapes(self) -> None:
        text = GenesisJsonFormatter(ensure_ascii=True).format(make_record("olá"))
        assert text.isascii()
        assert json.loads(text)["message"] == "olá"


class TestExtrasAndCoercion:
    """extra= values: schema fields coerced, the rest into attributes, never raising."""

    def test_wrong_type_gives_default_keeps_original_and_counts(self, captured: Captured) -> None:
        captured.logger.info("x", extra={"iteration": "abc"})
        line = captured.one()
        assert line["iteration"] == 0
        assert line["attributes"] == {"iteration": "abc"}
        assert captured.formatter.stats()["coerced"] == 1

    def test_out_of_range_integers_are_invalid(self, captured: Captured) -> None:
        captured.logger.info("x", extra={"exit_code": 2**40, "duration_ms": -1})
        line = captured.one()
        assert (line["exit_code"], line["duration_ms"]) == (0, 0)
        assert line["attributes"] == {"exit_code": str(2**40), "duration_ms": "-1"}
        assert captured.formatter.stats()["coerced"] == 2

    def test_numeric_strings_and_floats_are_converted(self, captured: Captured) -> None:
        captured.logger.info("x", extra={"iteration": " 4 ", "duration_ms": 12.6, "exit_code": -2})
        line = captured.one()
        assert (line["iteration"], line["duration_ms"], line["exit_code"]) == (4, 13, -2)
        assert "attributes" not in line

    def test_booleans_are_not_integers(self, captured: Captured) -> None:
        captured.logger.info("x", extra={"exit_code": True})
        assert captured.one()["attributes"] == {"exit_code": "true"}

    def test_non_string_ids_become_strings(self, captured: Captured) -> None:
        captured.logger.info("x", extra={"spec_id": 1, "stdout": b"bytes \xff"})
        line = captured.one()
        assert line["spec_id"] == "1"
        assert line["stdout"] == "bytes \ufffd"

    def test_attribute_encodings(self, captured: Captured) -> None:
        class Opaque:
            def __repr__(self) -> str:
                return "<Opaque>"

        class Hostile:
            def __repr__(self) -> str:
                raise RuntimeError("no")

            __str__ = __repr__

        cyclic: list[object] = []
        cyclic.append(cyclic)
        captured.logger.info(
            "x",
            extra={
                "text": "plain",
                "number": 7,
                "nested": {"a": [1, 2, None]},
                "flag": False,
                "nan": float("nan"),
                "opaque": Opaque(),
                "mixed": {"o": Opaque()},
                "hostile": Hostile(),
                "cyclic": cyclic,
                "raw": b"\x00\xfe",
            },
        )
        attributes = captured.one()["attributes"]
        assert attributes == {
            "text": "plain",
            "number": "7",
            "nested": '{"a":[1,2,null]}',
            "flag": "false",
            "nan": "NaN",
            "opaque": "<Opaque>",
            "mixed": '{"o":"<Opaque>"}',
            "hostile": "<unrepresentable TestExtrasAndCoercion.test_attribute_encodings.<locals>.Hostile>",
            "cyclic": "[[...]]",
            "raw": "\x00\ufffd",
        }

    def test_an_attributes_mapping_is_merged(self, captured: Captured) -> None:
        captured.logger.info("x", extra={"attributes": {"k": 1}, "other": "o"})
        assert captured.one()["attributes"] == {"k": "1", "other": "o"}

    def test_pino_style_mapping_message(self, captured: Captured) -> None:
        captured.logger.info({"task_id": "T01", "topic": "orders"})
        line = captured.one()
        assert line["task_id"] == "T01"
        assert line["attributes"] == {"topic": "orders"}
        assert "message" not in line

    def test_bad_format_arguments_keep_the_record(self, captured: Captured) -> None:
        captured.logger.info("%d items", "many")
        line = captured.one()
        assert line["message"] == "%d items"
        assert line["attributes"]["message_error"].startswith("TypeError")
        assert line["attributes"]["message_args"] == '["many"]'

    def test_lone_surrogates_are_replaced(self, captured: Captured) -> None:
        captured.logger.info("bad \udc80 text", extra={"stderr": "x\ud800"})
        line = captured.one()
        assert line["message"] == "bad \ufffd text"
        assert line["stderr"] == "x\ufffd"

    def test_the_callers_record_and_dicts_are_not_mutated(self) -> None:
        extra = {"iteration": "abc", "attributes": {"k": [1]}, "payload": {"n": [1, 2]}}
        original = copy.deepcopy(extra)
        record = make_record("m %s", {"a": 1}, **extra)
        before = dict(record.__dict__)
        GenesisJsonFormatter().format(record)
        assert record.__dict__ == before
        assert extra == original

    def test_exc_info_of_a_record_is_not_cached_on_it(self) -> None:
        try:
            raise OSError("disk")
        except OSError:
            record = make_record()
            record.exc_info = sys.exc_info()
        GenesisJsonFormatter().format(record)
        assert record.exc_text is None


class TestContextInLines:
    """log_context fields appear in lines; extra= wins over them."""

    def test_context_fields(self, captured: Captured) -> None:
        with log_context(spec_id="spec_001", iteration=2, sprint_id="S030", topic="t"):
            captured.logger.info("x")
        line = captured.one()
        assert (line["spec_id"], line["iteration"], line["sprint_id"]) == ("spec_001", 2, "S030")
        assert line["attributes"] == {"topic": "t"}

    def test_extra_beats_context(self, captured: Captured) -> None:
        with log_context(spec_id="outer", iteration=2):
            captured.logger.info("x", extra={"spec_id": "explicit"})
        line = captured.one()
        assert (line["spec_id"], line["iteration"]) == ("explicit", 2)

    def test_invalid_extra_overrides_context_with_the_default(self, captured: Captured) -> None:
        with log_context(iteration=2):
            captured.logger.info("x", extra={"iteration": "abc"})
        line = captured.one()
        assert line["iteration"] == 0
        assert line["attributes"] == {"iteration": "abc"}

    def test_no_context_no_fields(self) -> None:
        captured = make_captured("test.nocontext")
        captured.logger.info("x")
        assert "spec_id" not in captured.one()


class TestTruncation:
    """Oversized text is cut at a per-field limit, with a marker and the original length."""

    def test_fifty_megabyte_stdout(self) -> None:
        captured = make_captured("trunc.big", max_field_chars=1024)
        captured.logger.info("ran", extra={"stdout": "a" * 50_000_000, "note": "b" * 5000})
        line = captured.one()
        assert len(line["stdout"]) <= 1024
        assert line["stdout"].endswith("…[truncated 49999056 of 50000000 characters]")
        assert line["stdout"].startswith("a" * 900)
        assert line["attributes"]["stdout.original_length"] == "50000000"
        assert len(line["attributes"]["note"]) <= 1024
        assert line["attributes"]["note.original_length"] == "5000"
        assert captured.formatter.stats()["coerced"] == 2

    def test_text_at_the_limit_is_kept_whole(self) -> None:
        captured = make_captured("trunc.exact", max_field_chars=1024)
        captured.logger.info("x" * 1024)
        assert captured.one()["message"] == "x" * 1024

    def test_default_keeps_a_megabyte(self) -> None:
        captured = make_captured("trunc.default")
        captured.logger.info("ran", extra={"stdout": "x" * 1_000_000})
        assert len(captured.one()["stdout"]) == 1_000_000

    def test_limit_is_validated(self) -> None:
        with pytest.raises(ValueError, match="max_field_chars"):
            GenesisJsonFormatter(max_field_chars=10)


class TestOneShotEncoder:
    """The encoder built once gives exactly what ``JSONEncoder.encode`` gives."""

    json_values = st.recursive(
        st.one_of(
            st.none(),
            st.booleans(),
            st.integers(),
            st.floats(allow_nan=True, allow_infinity=True),
            st.text(alphabet=st.characters(codec=None, categories=None)),
        ),
        lambda children: st.one_of(
            st.lists(children, max_size=4),
            st.dictionaries(st.text(max_size=8), children, max_size=4),
        ),
        max_leaves=20,
    )

    @settings(max_examples=300, deadline=None)
    @given(value=json_values, ascii_only=st.booleans())
    def test_same_text_as_encode(self, value: object, ascii_only: bool) -> None:
        from pythonjsonlogger.json import JsonEncoder

        from genesis_logging._codec import compact_json, one_shot

        encoder = JsonEncoder(ensure_ascii=ascii_only)
        assert one_shot(encoder)(value) == encoder.encode(value)
        assert compact_json(value) == json.dumps(value, ensure_ascii=False, separators=(",", ":"))

    def test_the_public_way_where_the_c_encoder_is_missing(
        self, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        from genesis_logging._codec import one_shot

        monkeypatch.setattr(json.encoder, "c_make_encoder", None)
        encoder = json.JSONEncoder()
        assert one_shot(encoder) == encoder.encode
        indented = json.JSONEncoder(indent=2)
        assert one_shot(indented) == indented.encode

    def test_a_non_json_value_still_goes_through_default(self) -> None:
        import datetime

        formatter = GenesisJsonFormatter()
        line = formatter.jsonify_log_record({"when": datetime.date(2026, 11, 28)})
        assert json.loads(line) == {"when": "2026-11-28"}
