"""Hypothesis strategies for hostile log input, shared by the property tests."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from hypothesis import strategies as st

from genesis_logging.schema import FIELD_NAMES

RESERVED = frozenset(logging.LogRecord("", 0, "", 0, "", None, None).__dict__) | {
    "message",
    "asctime",
}


class RaisingStr:
    """An object whose __str__ and __repr__ both raise."""

    def __str__(self) -> str:
        raise RuntimeError("str refused")

    __repr__ = __str__


class RaisingReprOnly:
    def __repr__(self) -> str:
        raise ValueError("repr refused")


def _cyclic_list() -> list[Any]:
    cycle: list[Any] = [1]
    cycle.append(cycle)
    return cycle


def _cyclic_dict() -> dict[str, Any]:
    cycle: dict[str, Any] = {}
    cycle["self"] = cycle
    return cycle


# Text including lone surrogates and control characters.
any_text = st.text(alphabet=st.characters(codec=None, categories=None), max_size=60)


@dataclass(frozen=True)
class Hostile:
    """A placeholder Hypothesis can print; :func:`build` turns it into the real thing.

    Hypothesis calls ``repr`` on drawn values, so values whose ``repr`` raises (or that
    exceed the int-to-str limit) are drawn as tokens and made real inside the test.
    """

    kind: str


_HOSTILE_FACTORIES: dict[str, Callable[[], Any]] = {
    "raising_str": RaisingStr,
    "raising_repr": RaisingReprOnly,
    "cyclic_list": _cyclic_list,
    "cyclic_dict": _cyclic_dict,
    "huge_int": lambda: 10**4400 + 7,  # beyond the int-to-str limit of 3.11+
    "object": object,
}


def build(value: Any) -> Any:
    """Replace every :class:`Hostile` token inside ``value`` by the hostile object."""
    if isinstance(value, Hostile):
        return _HOSTILE_FACTORIES[value.kind]()
    if isinstance(value, list):
        return [build(v) for v in value]
    if isinstance(value, tuple):
        return tuple(build(v) for v in value)
    if isinstance(value, dict):
        return {build(k): build(v) for k, v in value.items()}
    return value


scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.floats(allow_nan=True, allow_infinity=True),
    any_text,
    st.binary(max_size=40),
    st.sampled_from(sorted(_HOSTILE_FACTORIES)).map(Hostile),
    st.sets(st.integers(), max_size=3),
)

values = st.recursive(
    scalars,
    lambda children: st.one_of(
        st.lists(children, max_size=4),
        st.dictionaries(st.one_of(any_text, st.integers()), children, max_size=4),
        st.tuples(children, children),
    ),
    max_leaves=12,
)

extra_keys = st.one_of(
    st.sampled_from([n for n in FIELD_NAMES if n not in RESERVED]),
    any_text.filter(lambda k: k not in RESERVED),
)

extras = st.dictionaries(extra_keys, values, max_size=8)

messages = st.one_of(any_text, values)

# Format strings that may or may not match their arguments.
formats = st.one_of(any_text, st.sampled_from(["%s", "%d items", "%(k)s", "%s %s", "100%"]))
args = st.one_of(st.just(()), st.tuples(values), st.tuples(values, values))

# The common record's values: str keys, immutable builtin values (the fast capture's own).
immutables = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.floats(allow_nan=True, allow_infinity=True),
    any_text,
)
common_extras = st.dictionaries(extra_keys, immutables, max_size=8)
#: Extras the fast capture takes, or not: mostly common, now and then anything.
mixed_extras = st.one_of(common_extras, common_extras, extras)
