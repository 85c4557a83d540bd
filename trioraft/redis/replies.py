"""Reply values, shared by the state machine, the server and the RESP encoder.

A reply is one of: `SimpleString` (+OK), `ErrorReply` (-ERR ...), `int` (:1), `bytes`
(a bulk string), `None` (null: $-1 in RESP2, _ in RESP3), a `list` of replies (an array),
`NULL_ARRAY` (the null array of an EXEC whose watched keys changed: *-1 in RESP2, _ in RESP3),
a `Map` (a flat array of keys and values in RESP2, % in RESP3) or `Verbatim` text (a bulk
string in RESP2, = in RESP3).
"""

from __future__ import annotations

from typing import TypeAlias

import attrs


@attrs.frozen(slots=True)
class SimpleString:
    text: str


@attrs.frozen(slots=True)
class ErrorReply:
    #: the whole error line without the leading '-', e.g. "ERR syntax error"
    text: str


@attrs.frozen(slots=True)
class Map:
    #: the keys and values, in the order they are sent
    pairs: tuple[tuple[Reply, Reply], ...]


@attrs.frozen(slots=True)
class Verbatim:
    """Text meant for people (INFO), sent as RESP3's verbatim string of format `txt`."""

    text: bytes


@attrs.frozen(slots=True)
class NullArray:
    """The null array: no array at all (EXEC of a transaction that did not run)."""


Reply: TypeAlias = (
    "SimpleString | ErrorReply | int | bytes | list[Reply] | Map | Verbatim | NullArray | None"
)

OK = SimpleString("OK")
PONG = SimpleString("PONG")
NULL_ARRAY = NullArray()
