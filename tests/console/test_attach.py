"""attach_handler: existing loggers, idempotent, no doubled lines."""

from __future__ import annotations

import io
import logging

from genesis_logging import GenesisJsonFormatter, attach_handler


def json_handler(stream: io.StringIO, name: str | None = "genesis-console") -> logging.Handler:
    handler = logging.StreamHandler(stream)
    handler.set_name(name)  # type: ignore[arg-type]
    handler.setFormatter(GenesisJsonFormatter())
    return handler


class TestAttachHandler:
    """Attaching to loggers that already exist."""

    def test_attaching_twice_does_not_double_lines(self) -> None:
        stream = io.StringIO()
        handler = json_handler(stream)
        attach_handler(handler, ["app"])
        attach_handler(handler, ["app"])
        attach_handler(json_handler(stream), ["app"])  # same name, new object
        logging.getLogger("app").warning("once")
        assert len(stream.getvalue().splitlines()) == 1

    def test_descendant_that_propagates_is_left_to_its_ancestor(self) -> None:
        stream = io.StringIO()
        handler = json_handler(stream)
        holders = attach_handler(handler, ["", "celery", "celery.worker"])
        assert holders == [logging.getLogger()]
        logging.getLogger("celery.worker").warning("once")
        assert len(stream.getvalue().splitlines()) == 1

    def test_non_propagating_logger_gets_its_own(self) -> None:
        uvicorn = logging.getLogger("uvicorn")
        uvicorn.propagate = False
        stream = io.StringIO()
        holders = attach_handler(json_handler(stream), ["", "uvicorn", "uvicorn.error"])
        assert {lg.name for lg in holders} == {"root", "uvicorn"}
        logging.getLogger("uvicorn.error").warning("started")
        assert len(stream.getvalue().splitlines()) == 1

    def test_exclusive_replaces_existing_plain_handlers(self) -> None:
        plain = io.StringIO()
        logger = logging.getLogger("uvicorn.access")
        logger.addHandler(logging.StreamHandler(plain))
        logger.propagate = False
        stream = io.StringIO()
        attach_handler(json_handler(stream), ["uvicorn.access"], exclusive=True)
        logger.warning("GET /")
        assert plain.getvalue() == ""
        assert '"message": "GET /"' in stream.getvalue()

    def test_other_handlers_are_kept_by_default(self) -> None:
        plain = io.StringIO()
        logger = logging.getLogger("legacy")
        logger.addHandler(logging.StreamHandler(plain))
        attach_handler(json_handler(io.StringIO()), ["legacy"])
        assert len(logger.handlers) == 2
        assert not logger.disabled
