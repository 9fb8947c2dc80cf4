"""Is a query one statement that only reads? Decided from its text, never by running it.

``genesis-logging query`` hands an assistant's SQL to the store. A check that asks the
engine (``EXPLAIN AST`` in chDB runs every statement after the first) or matches a regex
on the raw text (``INTO/**/OUTFILE``) can be talked past. Here the text is read the way
ClickHouse's lexer reads it — string literals, quoted identifiers and comments are told
apart from the words around them — and a query passes only if it is:

- one statement (a ``;`` may only end it);
- of a kind that reads: ``SELECT``, ``WITH``, ``SHOW``, ``DESCRIBE``/``DESC``,
  ``EXPLAIN``, ``EXISTS``;
- without ``INTO OUTFILE``;
- without table functions beyond those that make data up (``numbers``, ``values`` …) and
  without functions that reach outside the store (``file``, ``url``, ``executable`` …).
"""

from __future__ import annotations

import re
from typing import Final

from .errors import ConfigurationError

__all__ = ["check_read_only"]

READING_KINDS: Final = frozenset(
    {"SELECT", "WITH", "SHOW", "DESCRIBE", "DESC", "EXPLAIN", "EXISTS"}
)
#: Table functions that only make data up: nothing outside the query is touched.
GENERATING_TABLE_FUNCTIONS: Final = frozenset(
    {"numbers", "numbers_mt", "zeros", "zeros_mt", "values", "generate_series", "one", "null"}
)
#: Functions (table or not) that read or run something outside the store.
OUTSIDE_FUNCTIONS: Final = frozenset(
    {
        "file",
        "url",
        "urlcluster",
        "executable",
        "executablepool",
        "remote",
        "remotesecure",
        "cluster",
        "clusterallreplicas",
        "s3",
        "s3cluster",
        "gcs",
        "azureblobstorage",
        "hdfs",
        "hdfscluster",
        "mysql",
        "postgresql",
        "mongodb",
        "redis",
        "sqlite",
        "jdbc",
        "odbc",
        "input",
        "fuzzjson",
    }
)

_TOKEN: Final = re.compile(
    r"""
      (?P<comment>--[^\n]*|\#[^\n]*|/\*.*?(?:\*/|\Z))
    | (?P<string>'(?:[^'\\]|\\.|'')*(?:'|\Z))
    | (?P<quoted>"(?:[^"\\]|\\.|"")*(?:"|\Z)|`(?:[^`\\]|\\.|``)*(?:`|\Z))
    | (?P<word>[A-Za-z_][A-Za-z_0-9]*)
    | (?P<space>\s+)
    | (?P<other>.)
    """,
    re.VERBOSE | re.DOTALL,
)
_TABLE_FUNCTION: Final = re.compile(r"\b(?:FROM|JOIN)\s+([A-Za-z_]\w*)\s*\(", re.IGNORECASE)
_CALL: Final = re.compile(r"\b([A-Za-z_]\w*)\s*\(")
_OUTFILE: Final = re.compile(r"\bINTO\s+OUTFILE\b", re.IGNORECASE)


def _skeleton(sql: str) -> str:
    """``sql`` with comments as a space, string literals as ``''`` and quoted identifiers
    as ``q``: what is left is the words and punctuation ClickHouse acts on."""
    parts = []
    for match in _TOKEN.finditer(sql):
        kind = match.lastgroup
        if kind == "comment":
            parts.append(" ")
        elif kind == "string":
            parts.append("''")
        elif kind == "quoted":
            parts.append("q")
        else:
            parts.append(match.group())
    return "".join(parts)


def check_read_only(sql: str) -> None:
    """Raise :class:`ConfigurationError` ("query is read-only: …") unless ``sql`` is one
    statement that only reads from the store."""
    skeleton = _skeleton(sql).strip()
    while skeleton.endswith(";"):
        skeleton = skeleton[:-1].rstrip()
    if ";" in skeleton:
        raise ConfigurationError("query is read-only: one statement at a time (no ';' inside)")
    first = skeleton.split(None, 1)[0].upper() if skeleton else ""
    if first not in READING_KINDS:
        raise ConfigurationError(f"query is read-only: {first or 'an empty query'} is not allowed")
    if _OUTFILE.search(skeleton):
        raise ConfigurationError("query is read-only: it may not write (INTO OUTFILE)")
    for name in _TABLE_FUNCTION.findall(skeleton):
        if name.lower() not in GENERATING_TABLE_FUNCTIONS:
            raise ConfigurationError(
                f"query is read-only: the table function {name}() is not allowed "
                "(the logs are the table genesis.logs)"
            )
    for name in _CALL.findall(skeleton):
        if name.lower() in OUTSIDE_FUNCTIONS:
            raise ConfigurationError(
                f"query is read-only: {name}() reaches outside the store and is not allowed"
            )
