"""Property tests: no input makes a logging call raise or lose its line."""

from __future__ import annotations

import json
import logging
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from genesis_logging import log_context
from genesis_logging.schema import FIELD_NAMES, FIELDS_BY_NAME
from tests.support import strategies as hs
from tests.support.captured import make_captured

SETTINGS = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def check_line(line: str) -> dict[str, Any]:
    assert "\n" not in line
    data = json.loads(line)
    assert list(data) == sorted(data, key=FIELD_NAMES.index)
    for name, value in data.items():
        kind = FIELDS_BY_NAME[name].kind.value
        if kind in ("uint32", "int32"):
            assert isinstance(value, int)
            low, high = FIELDS_BY_NAME[name].bounds  # type: ignore[misc]
            assert low <= value <= high
        elif kind == "string_map":
            assert all(isinstance(k, str) and isinstance(v, str) for k, v in value.items())
        else:
            assert isinstance(value, str)
    line.encode("utf-8")  # strict: no lone surrogates reach the output
    return data


class TestNeverRaisesAlwaysOneLine:
    """A logging call never raises and always emits exactly one JSON line."""

    @SETTINGS
    @given(msg=hs.messages, extra=hs.extras)
    def test_messages_and_extras(self, msg: object, extra: dict[str, object]) -> None:
        msg, extra = hs.build(msg), hs.build(extra)
        captured = make_captured("prop.extras")
        captured.logger.info(msg, extra=extra)
        lines = captured.lines()
        assert len(lines) == 1
        check_line(lines[0])

    @SETTINGS
    @given(fmt=hs.formats, args=hs.args, ensure_ascii=st.booleans())
    def test_format_and_args(self, fmt: str, args: tuple[object, ...], ensure_ascii: bool) -> None:
        args = hs.build(args)
        captured = make_captured("prop.args", ensure_ascii=ensure_ascii)
        captured.logger.warning(fmt, *args)
        lines = captured.lines()
        assert len(lines) == 1
        check_line(lines[0])

    @SETTINGS
    @given(
        extra=hs.extras,
        more=st.dictionaries(st.from_regex(r"[a-z]{1,8}", fullmatch=True), hs.values, max_size=3),
    )
    def test_with_context_and_exception(
        self, extra: dict[str, object], more: dict[str, object]
    ) -> None:
        extra, more = hs.build(extra), hs.build(more)
        more = {k: v for k, v in more.items() if k not in FIELDS_BY_NAME and k not in hs.RESERVED}
        captured = make_captured("prop.ctx")
        with log_context(spec_id="s", iteration=1, **more):
            try:
                raise ValueError(hs.RaisingStr())
            except ValueError:
                captured.logger.exception("failed", extra=extra)
        lines = captured.lines()
        assert len(lines) == 1
        data = check_line(lines[0])
        assert "ValueError" in data["exception"]

    @SETTINGS
    @given(extra=hs.extras)
    def test_invalid_values_are_counted_and_kept(self, extra: dict[str, object]) -> None:
        extra = hs.build(extra)
        captured = make_captured("prop.count")
        captured.logger.info("x", extra=extra)
        data = check_line(captured.lines()[0])
        attributes = data.get("attributes", {})
        for name in ("iteration", "exit_code", "duration_ms"):
            if name not in extra or extra[name] is None:
                assert name not in data
                continue
            value = extra[name]
            low, high = FIELDS_BY_NAME[name].bounds  # type: ignore[misc]
            if type(value) is int and low <= value <= high:
                assert data[name] == value  # valid integers pass through untouched
            elif name in attributes:
                assert data[name] == 0  # invalid: default in the column, original kept
                assert captured.formatter.stats()["coerced"] >= 1
            else:
                assert low <= data[name] <= high  # converted (numeric string, float)

    def test_no_handle_error_was_needed(self, monkeypatch: Any) -> None:
        """handleError is the stdlib's last resort; our formatter must never reach it."""
        calls: list[logging.LogRecord] = []
        captured = make_captured("prop.handle")
        monkeypatch.setattr(captured.handler, "handleError", calls.append)
        captured.logger.info(
            hs.RaisingStr(), extra={"x": hs.RaisingStr(), "iteration": hs.RaisingStr()}
        )
        assert calls == []
        assert len(captured.lines()) == 1
