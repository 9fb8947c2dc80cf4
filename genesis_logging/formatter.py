"""Console track: one JSON object per line, a valid ``JSONEachRow`` row of genesis.logs."""

from __future__ import annotations

import json
import logging
from typing import Any

from pythonjsonlogger.json import JsonFormatter

from ._codec import one_shot, row_to_json_object
from ._convert import DEFAULT_MAX_FIELD_CHARS, RecordConverter

__all__ = ["GenesisJsonFormatter"]

# Characters that JSON leaves raw but some readers (str.splitlines, JavaScript) treat as
# line breaks; escaping them keeps every record on exactly one line for every reader.
_LINE_BREAKS = str.maketrans({"\x85": "\\u0085", "\u2028": "\\u2028", "\u2029": "\\u2029"})


class GenesisJsonFormatter(JsonFormatter):
    """Format records as genesis log lines, keys in schema order.

    Built on python-json-logger: the row comes from the shared record conversion and
    is handed to its ``add_fields`` / ``process_log_record`` / ``serialize_log_record``
    hooks, so JSON encoding stays python-json-logger's.

    Args:
        service: the ``service`` field (default ``$GENESIS_SERVICE`` or
            ``genesis-pipeline``).
        version: the ``version`` field (default ``$GENESIS_VERSION``).
        keep_empty: also write fields that have no value, with the column default.
        ensure_ascii: escape non-ASCII characters (``\\uXXXX``) instead of writing UTF-8.
        max_field_chars: longest text of one field; longer text is cut with a marker.

    Example (``dictConfig``)::

        formatters:
          json:
            (): genesis_logging.GenesisJsonFormatter
            service: billing-worker
    """

    def __init__(
        self,
        *,
        service: str | None = None,
        version: str | None = None,
        keep_empty: bool = False,
        ensure_ascii: bool = False,
        max_field_chars: int = DEFAULT_MAX_FIELD_CHARS,
    ) -> None:
        super().__init__(json_ensure_ascii=ensure_ascii)
        # The encoder json.dumps would build for every record, built once.
        self._encode = one_shot(
            self.json_encoder(  # type: ignore[misc]
                default=self.json_default, indent=self.json_indent, ensure_ascii=ensure_ascii
            )
        )
        self.record_converter = RecordConverter(
            service=service, version=version, max_field_chars=max_field_chars
        )
        self.keep_empty = keep_empty

    def format(self, record: logging.LogRecord) -> str:
        """Return the record as one line of JSON; never raises for any record content."""
        row = self.record_converter.convert(record)
        log_data: dict[str, Any] = {}
        self.add_fields(log_data, record, row)
        return self.serialize_log_record(self.process_log_record(log_data))

    def add_fields(
        self, log_data: dict[str, Any], record: logging.LogRecord, message_dict: dict[str, Any]
    ) -> None:
        """Fill ``log_data`` from the row (passed as ``message_dict``) in schema order."""
        log_data.update(row_to_json_object(message_dict, keep_empty=self.keep_empty))

    def jsonify_log_record(self, log_data: dict[str, Any]) -> str:
        """python-json-logger's encoding, with Unicode line separators escaped."""
        if self.json_serializer is json.dumps:  # as json.dumps(..., cls=self.json_encoder)
            text: str = self._encode(log_data)
        else:
            text = super().jsonify_log_record(log_data)
        if text.isascii() or not ("\u2028" in text or "\u2029" in text or "\x85" in text):
            return text
        return text.translate(_LINE_BREAKS)

    def stats(self) -> dict[str, int]:
        """Counters of this formatter: ``coerced`` values."""
        return {"coerced": self.record_converter.coerced}
