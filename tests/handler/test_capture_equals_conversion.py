"""The handler's path (capture in the caller, convert in the worker) gives today's rows."""

from __future__ import annotations

import copy
import logging
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from genesis_logging import _convert, log_context
from genesis_logging._convert import RecordConverter
from genesis_logging.context import CONTEXT_ATTRIBUTE
from tests.support import strategies as hs

SETTINGS = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def record(
    msg: object, args: tuple[object, ...] | None, extra: dict[str, object]
) -> logging.LogRecord:
    logger = logging.getLogger("capture")
    return logger.makeRecord("capture", logging.INFO, __file__, 1, msg, args, None, extra=extra)


def same(a: dict[str, Any], b: dict[str, Any]) -> bool:
    """Rows equal field by field (the timestamp of a coerced ``created`` is "now")."""
    a, b = dict(a), dict(b)
    if "created.original" in a.get("attributes", {}):
        a.pop("timestamp"), b.pop("timestamp")
    return a == b


class TestSnapshotEqualsConvert:
    """``from_snapshot(capture(r)) == convert(r)`` for hostile records, field by field."""

    @SETTINGS
    @given(msg=hs.messages, extra=hs.extras)
    def test_messages_and_extras(self, msg: object, extra: dict[str, object]) -> None:
        msg, extra = hs.build(msg), hs.build(extra)
        converter = RecordConverter(max_field_chars=200)
        r = record(msg, None, extra)
        assert same(converter.from_snapshot(converter.capture(r)), converter.convert(r))

    @SETTINGS
    @given(fmt=hs.formats, args=hs.args, extra=hs.extras)
    def test_format_and_args(
        self, fmt: str, args: tuple[object, ...], extra: dict[str, object]
    ) -> None:
        args, extra = hs.build(args), hs.build(extra)
        converter = RecordConverter(max_field_chars=200)
        r = record(fmt, args or None, extra)
        assert same(converter.from_snapshot(converter.capture(r)), converter.convert(r))

    @SETTINGS
    @given(
        pino=st.dictionaries(st.one_of(hs.any_text, st.integers()), hs.values, max_size=6),
        more=st.dictionaries(st.from_regex(r"[a-z]{1,8}", fullmatch=True), hs.values, max_size=3),
        created=st.one_of(st.floats(), st.integers(min_value=-(10**12), max_value=10**19)),
    )
    def test_pino_context_and_created(
        self, pino: dict[object, object], more: dict[str, object], created: float
    ) -> None:
        pino, more = hs.build(pino), hs.build(more)
        more = {k: v for k, v in more.items() if k not in hs.RESERVED and k != "attributes"}
        converter = RecordConverter(max_field_chars=200)
        with log_context(**{k: v for k, v in more.items() if k not in ("iteration", "exit_code")}):
            r = record(pino, None, {})
            r.created = created
            assert same(converter.from_snapshot(converter.capture(r)), converter.convert(r))

    def test_coercions_are_counted_once(self) -> None:
        converter, reference = RecordConverter(), RecordConverter()
        r = record("m", None, {"iteration": "7", "exit_code": 2**40, "thing": object()})
        converter.from_snapshot(converter.capture(r))
        reference.convert(r)
        assert converter.coerced == reference.coerced == 1  # exit_code out of range


class TestMutationAfterTheCall:
    """What the caller changes after the logging call returns is not in the record."""

    @SETTINGS
    @given(extra=hs.extras, args=hs.args)
    def test_mutable_values_are_taken_at_call_time(
        self, extra: dict[str, object], args: tuple[object, ...]
    ) -> None:
        extra, args = hs.build(extra), hs.build(args)
        converter = RecordConverter(max_field_chars=200)
        r = record("%s" * len(args) if args else "fixed", args or None, extra)
        expected = converter.convert(r)
        snapshot = converter.capture(r)
        for value in [*extra.values(), *args]:  # the caller goes on with its objects
            _mutate(value)
        assert same(converter.from_snapshot(snapshot), expected)

    def test_a_list_appended_to_after_the_call(self) -> None:
        converter = RecordConverter()
        result = ["a"]
        context = {"ids": [1]}
        r = record("done %s", (result,), {"result": result, "context": context})
        snapshot = converter.capture(r)
        result.append("b")
        context["ids"].append(2)
        row = converter.from_snapshot(snapshot)
        assert row["message"] == "done ['a']"
        assert row["attributes"] == {"result": '["a"]', "context": '{"ids":[1]}'}


def _mutate(value: object) -> None:
    try:
        if isinstance(value, list):
            value.append("changed")
        elif isinstance(value, dict):
            value["changed"] = True
        elif isinstance(value, set):
            value.add(-1)
    except Exception:
        pass


def test_deepcopy_is_not_needed_for_immutable_values() -> None:
    """Immutable values are shared with the record, not copied (that is the fast path)."""
    converter = RecordConverter()
    text = "x" * 1000
    snapshot = converter.capture(record("m", None, {"spec_id": text}))
    assert snapshot.extras is not None
    assert snapshot.extras["spec_id"] is text
    assert copy.copy(snapshot) == snapshot


class CountingConverter(RecordConverter):
    """A converter that counts the records its fast capture handed to the full one."""

    def __init__(self, **options: Any) -> None:
        super().__init__(**options)
        self.full = 0

    def full_capture(self, record: logging.LogRecord) -> Any:
        self.full += 1
        return super().full_capture(record)


class TestFastCaptureEqualsFull:
    """``capture`` (the common record in a few steps) == ``full_capture``, for any record:
    the fast path where it applies, the fallback everywhere else (issue 24, point 3)."""

    @SETTINGS
    @given(
        msg=st.one_of(hs.formats, hs.messages),
        args=st.one_of(hs.args, st.tuples(hs.immutables)),
        extra=hs.mixed_extras,
    )
    def test_messages_args_and_extras(
        self, msg: object, args: tuple[object, ...], extra: dict[str, object]
    ) -> None:
        converter = RecordConverter(max_field_chars=200)
        r = record(hs.build(msg), hs.build(args) or None, hs.build(extra))
        assert converter.capture(r) == converter.full_capture(r)

    @SETTINGS
    @given(
        context=st.dictionaries(
            st.from_regex(r"[a-z_]{1,8}", fullmatch=True), hs.immutables, max_size=4
        ),
        extra=hs.common_extras,
        created=st.one_of(st.floats(), st.integers(min_value=-(10**12), max_value=10**19)),
        exception=st.booleans(),
    )
    def test_contexts_created_and_exceptions(
        self, context: dict[str, object], extra: dict[str, object], created: float, exception: bool
    ) -> None:
        converter = RecordConverter(max_field_chars=200)
        context = {k: v for k, v in context.items() if k not in hs.RESERVED}
        with log_context(
            **{k: v for k, v in context.items() if k not in ("iteration", "exit_code")}
        ):
            r = record("m %s", ("x",), extra)
            r.created = created
            if exception:
                try:
                    raise ValueError("boom")
                except ValueError:
                    r.exc_info = sys.exc_info()
            assert converter.capture(r) == converter.full_capture(r)

    @SETTINGS
    @given(fmt=st.sampled_from(["plain", "n=%d", "%s and %s"]), extra=hs.common_extras)
    def test_the_common_record_takes_the_fast_path(
        self, fmt: str, extra: dict[str, object]
    ) -> None:
        converter = CountingConverter()
        extra.pop(CONTEXT_ATTRIBUTE, None)  # ContextFilter's snapshot: the full path's
        args = (1, "two")[: fmt.count("%")] or None
        snapshot = converter.capture(record(fmt, args, extra))
        assert converter.full == 0
        assert snapshot == converter.full_capture(record(fmt, args, extra))._replace(
            created=snapshot.created
        )

    def test_any_other_record_takes_the_full_path(self) -> None:
        converter = CountingConverter()
        converter.capture(record({"pino": 1}, None, {}))  # a mapping as the message
        converter.capture(record("m", None, {"items": [1]}))  # a mutable extra
        converter.capture(record("%d", ("x",), {}))  # args that do not fit
        try:
            raise ValueError("boom")
        except ValueError:
            r = record("m", None, {})
            r.exc_info = sys.exc_info()
        converter.capture(r)
        assert converter.full == 4


def test_mypy_catches_a_slot_mix_up(tmp_path: Path) -> None:
    """The snapshot is typed slot by slot (issue 22, point 1): two slots swapped at
    construction are a type error, not a silent mix-up."""
    module = tmp_path / "swapped.py"
    module.write_text(
        "from genesis_logging._convert import Snapshot\n\n\n"
        "def fine() -> Snapshot:\n"
        "    return Snapshot(1.0, 'INFO', 'm', None, None, None, None, '', True, ())\n\n\n"
        "def swapped() -> Snapshot:\n"
        "    return Snapshot('INFO', 1.0, 'm', None, None, None, None, '', True, ())\n"
    )
    done = subprocess.run(
        [sys.executable, "-m", "mypy", "--strict", "--no-incremental", str(module)],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=tmp_path,
    )
    errors = [line for line in done.stdout.splitlines() if ": error:" in line]
    assert len(errors) == 2, done.stdout + done.stderr  # in swapped(), none in fine()
    assert 'swapped.py:9: error: Argument 1 to "Snapshot" has incompatible type "str"' in errors[0]
    assert (
        'swapped.py:9: error: Argument 2 to "Snapshot" has incompatible type "float"' in errors[1]
    )


class TestKnownKeys:
    """``extra=`` keys checked once are remembered (issue 24): what the check refused is
    still refused with keys seen before, and the memory is bounded."""

    def test_keys_seen_before_still_leave_out_what_a_formatter_added(self) -> None:
        converter = CountingConverter()
        converter.capture(record("m", None, {"topic": "t"}))  # "topic" is remembered
        r = record("m", None, {"topic": "t"})
        logging.Formatter("%(asctime)s %(message)s").format(r)  # adds message and asctime
        snapshot = converter.capture(r)
        assert converter.full == 1
        assert snapshot.extras == {"topic": "t"}
        assert snapshot == converter.full_capture(r)

    def test_a_record_attribute_set_again_is_no_extra(self) -> None:
        converter = CountingConverter()
        converter.capture(record("m", None, {"topic": "t"}))
        r = record("m", None, {"topic": "t"})
        del r.funcName
        r.funcName = "moved"  # now after the extras, where only extras are looked for
        snapshot = converter.capture(r)
        assert converter.full == 1
        assert snapshot == converter.full_capture(r)
        assert snapshot.extras == {"topic": "t"}

    def test_keys_made_for_every_call_are_not_all_remembered(
        self, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        monkeypatch.setattr(_convert, "_KNOWN_KEYS", set())  # whatever other tests left
        converter = CountingConverter()
        for i in range(_convert._KNOWN_KEYS_LIMIT + 500):
            r = record("m", None, {f"key_{i}": i})
            assert converter.capture(r) == converter.full_capture(r)
        assert (
            _convert._KNOWN_KEYS_LIMIT
            <= len(_convert._KNOWN_KEYS)
            < (_convert._KNOWN_KEYS_LIMIT + 10)
        )
        assert "key_0" in _convert._KNOWN_KEYS
        assert f"key_{_convert._KNOWN_KEYS_LIMIT + 499}" not in _convert._KNOWN_KEYS
