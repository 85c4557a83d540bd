"""Reply values, shared by the state machine, the server and the RESP encoder.

A reply is one of: `SimpleString` (+OK), `ErrorReply` (-ERR ...), `int` (:1), `bytes`
(a bulk string), `None` (the null bulk string, $-1) or a `list` of replies (an array).
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


Reply: TypeAlias = "SimpleString | ErrorReply | int | bytes | list[Reply] | None"

OK = SimpleString("OK")
PONG = SimpleString("PONG")
