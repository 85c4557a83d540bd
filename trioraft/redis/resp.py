"""The RESP wire format: an incremental parser for client requests and an encoder for replies.

Rules of this module:

- Sans-I/O: it only turns bytes into requests and replies into bytes. The caller owns the
  socket, the clock and the decision to close a connection.
- A request is a non-empty `list[bytes]` (command name first). Two request forms are
  accepted, chosen by the first byte of each request:
  - multibulk, starting with '*': `*<count>\\r\\n` then `count` times `$<len>\\r\\n<len
    bytes>\\r\\n`. Numbers are canonical decimals (no sign, no leading zero). `*0` and
    `*-1` are skipped without producing a request. Payloads are binary-safe and must be
    followed by CRLF.
  - inline, anything else: one line ending in LF (a CR before it is dropped), split into
    words the way Redis splits inline commands: blanks separate words; double quotes group
    words and understand the escapes \\n \\r \\t \\b \\a \\xHH and backslash before any
    other byte; single quotes group words and understand only \\'; a closing quote must be
    followed by a blank or the end of the line. A NUL byte is an ordinary byte. Lines with
    no words are skipped.
- Limits, checked as soon as the bytes that break them arrive: an inline line or a header
  line (`*<count>` or `$<len>`) may not exceed `max_inline` bytes before its line ending
  (as in Redis, a header ends at its first CR, which must be followed by LF), a count may
  not exceed `max_args`, a bulk length may not exceed `max_bulk`. The caller bounds what
  it feeds by looking at `RequestParser.buffered`.
- Malformed input raises `RespProtocolError`, whose text is what follows "Protocol error: " in
  the reply, in Redis's own wording where Redis has one. After an error the parser is
  dead: it drops its buffer, ignores further input and raises the same error again.
- `next_requests` returns, before raising, the complete requests that preceded the bad
  input, so the caller can answer them first; the error comes on the next call.
- Replies are encoded as RESP2, or as RESP3 for a connection that asked for it: the two
  differ only in null (`$-1`, or `*-1` for the null array, or `_`), maps (a flat array
  or `%`) and verbatim text (a bulk string or `=` with the format `txt`). Texts of simple
  strings and errors are UTF-8 (surrogate escapes turn back into the bytes they stand
  for), with CR and LF replaced by spaces so that a reply can never break the framing.
"""

from __future__ import annotations

import re
import sys
from typing import Final

from trioraft.redis.replies import (
    NULL_ARRAY,
    ErrorReply,
    Map,
    NullArray,
    Reply,
    SimpleString,
    Verbatim,
)

__all__ = ["RequestParser", "RespProtocolError", "encode", "encode_into"]


class RespProtocolError(Exception):
    """Malformed client input. `str(error)` is the text that follows "Protocol error: "."""


_STAR: Final = 0x2A
_DOLLAR: Final = 0x24
_CR: Final = 0x0D
_LF: Final = 0x0A
_ZERO: Final = 0x30
#: longest decimal accepted as a count or length; far above any configurable limit
_MAX_DIGITS: Final = 18
#: payloads at least this long are copied once, through a memoryview, instead of twice
_LARGE_PAYLOAD: Final = 64 * 1024
#: consumed bytes are dropped from the buffer when everything is consumed or beyond this
_COMPACT_AFTER: Final = 256 * 1024


def _decimal(text: bytes | bytearray) -> int:
    """The value of a canonical non-negative decimal (no sign, no leading zero), else -1."""
    if not text.isdigit() or len(text) > _MAX_DIGITS or (text[0] == _ZERO and len(text) > 1):
        return -1
    return int(text)


# Inline splitting. C's isspace() blanks separate words; inside a bare word only
# space, tab, CR and LF end it (a vertical tab or form feed there belongs to the word).
_BLANK_BYTES: Final = b" \t\n\r\x0b\x0c"
_BLANKS: Final = re.compile(rb"[ \t\n\r\x0b\x0c]*")
_BARE: Final = re.compile(rb"[^ \t\n\r\"']*")
_NEEDS_TOKENIZER: Final = re.compile(rb"[\"'\x0b\x0c]")
_DOUBLE_BODY: Final = re.compile(rb'(?:[^"\\]|\\.)*', re.DOTALL)
_SINGLE_BODY: Final = re.compile(rb"(?:[^'\\]|\\'|\\)*")
_ESCAPE: Final = re.compile(rb"\\(?:x([0-9a-fA-F]{2})|(.))", re.DOTALL)
_ESCAPED: Final = {b"n": b"\n", b"r": b"\r", b"t": b"\t", b"b": b"\b", b"a": b"\a"}
_DOUBLE_QUOTE: Final = 0x22
_SINGLE_QUOTE: Final = 0x27


def _unescape(match: re.Match[bytes]) -> bytes:
    hex_digits = match.group(1)
    if hex_digits is not None:
        return bytes((int(hex_digits, 16),))
    char = match.group(2)
    return _ESCAPED.get(char, char)


def _split_inline(line: bytes) -> list[bytes]:
    """The words of an inline request line (without its line ending)."""
    if _NEEDS_TOKENIZER.search(line) is None:
        return line.split()
    words: list[bytes] = []
    size = len(line)
    pos = 0
    while True:
        blanks = _BLANKS.match(line, pos)
        assert blanks is not None  # the pattern matches the empty string
        pos = blanks.end()
        if pos == size:
            return words
        bare = _BARE.match(line, pos)
        assert bare is not None
        word = bare.group()
        pos = bare.end()
        if pos < size and line[pos] in (_DOUBLE_QUOTE, _SINGLE_QUOTE):
            quote = line[pos]
            if quote == _DOUBLE_QUOTE:
                body = _DOUBLE_BODY.match(line, pos + 1)
                assert body is not None
                text = _ESCAPE.sub(_unescape, body.group())
            else:
                body = _SINGLE_BODY.match(line, pos + 1)
                assert body is not None
                text = body.group().replace(b"\\'", b"'")
            close = body.end()
            if close == size or line[close] != quote:
                raise RespProtocolError("unbalanced quotes in request")
            pos = close + 1
            if pos < size and line[pos] not in _BLANK_BYTES:
                raise RespProtocolError("unbalanced quotes in request")
            word += text
        words.append(word)


class RequestParser:
    """Turns the bytes of one client connection into requests, incrementally."""

    __slots__ = (
        "_args",
        "_buf",
        "_bulk_len",
        "_failure",
        "_held",
        "_max_args",
        "_max_bulk",
        "_max_inline",
        "_pos",
        "_remaining",
    )

    def __init__(
        self,
        max_inline: int = 64 * 1024,
        max_bulk: int = 512 * 1024 * 1024,
        max_args: int = 1024 * 1024,
    ) -> None:
        self._max_inline = max_inline
        self._max_bulk = max_bulk
        self._max_args = max_args
        self._buf = bytearray()
        #: read offset into _buf
        self._pos = 0
        #: arguments read so far of a partly received multibulk request
        self._args: list[bytes] = []
        #: total length of _args
        self._held = 0
        #: arguments still to read of that request; 0 between requests
        self._remaining = 0
        #: length of the payload whose header was read, -1 when a header comes next
        self._bulk_len = -1
        self._failure: str | None = None

    @property
    def buffered(self) -> int:
        """Bytes held for requests not yet returned: unparsed input plus the arguments
        already read of a partly received request."""
        return len(self._buf) - self._pos + self._held

    def feed(self, data: bytes | bytearray) -> None:
        """Append received bytes. Ignored once the parser has failed."""
        if self._failure is None:
            self._buf += data

    def next_request(self) -> list[bytes] | None:
        """The next complete request, or None when more bytes are needed."""
        requests: list[list[bytes]] = []
        self._parse(requests, 1)
        return requests[0] if requests else None

    def next_requests(self) -> list[list[bytes]]:
        """All complete requests buffered so far, in order (possibly none)."""
        requests: list[list[bytes]] = []
        self._parse(requests, sys.maxsize)
        return requests

    def _parse(self, out: list[list[bytes]], limit: int) -> None:
        """Append up to `limit` complete requests to `out`.

        Raises RespProtocolError when the input is malformed and `out` is still empty;
        otherwise the failure is kept and raised by the next call.
        """
        if self._failure is not None:
            raise RespProtocolError(self._failure)
        buf = self._buf
        end = len(buf)
        pos = self._pos
        args = self._args
        held = self._held
        remaining = self._remaining
        bulk_len = self._bulk_len
        max_line = self._max_inline
        max_args = self._max_args
        max_bulk = self._max_bulk
        try:
            while True:
                if remaining == 0:
                    if pos >= end or len(out) >= limit:
                        break
                    if buf[pos] != _STAR:
                        line_end = buf.find(b"\n", pos, pos + max_line + 1)
                        if line_end < 0:
                            if end - pos > max_line:
                                raise RespProtocolError("too big inline request")
                            break
                        stop = line_end
                        if stop > pos and buf[stop - 1] == _CR:
                            stop -= 1
                        words = _split_inline(bytes(buf[pos:stop]))
                        pos = line_end + 1
                        if words:
                            out.append(words)
                        continue
                    cr = buf.find(b"\r", pos + 1, pos + max_line + 1)
                    if cr < 0:
                        if end - pos > max_line:
                            raise RespProtocolError("too big mbulk count string")
                        break
                    if cr + 1 == end:
                        break
                    digits = buf[pos + 1 : cr]
                    count = _decimal(digits)
                    if count < 0 and digits == b"-1":
                        count = 0
                    if count < 0 or count > max_args or buf[cr + 1] != _LF:
                        raise RespProtocolError("invalid multibulk length")
                    pos = cr + 2
                    if count == 0:
                        continue
                    remaining = count
                    args = []
                    held = 0
                if bulk_len < 0:
                    cr = buf.find(b"\r", pos, pos + max_line + 1)
                    if cr < 0:
                        if end - pos > max_line:
                            raise RespProtocolError("too big bulk count string")
                        break
                    if cr + 1 == end:
                        break
                    if buf[pos] != _DOLLAR:
                        raise RespProtocolError(f"expected '$', got '{chr(buf[pos])}'")
                    bulk_len = _decimal(buf[pos + 1 : cr])
                    if bulk_len < 0 or bulk_len > max_bulk or buf[cr + 1] != _LF:
                        raise RespProtocolError("invalid bulk length")
                    pos = cr + 2
                stop = pos + bulk_len
                if stop + 2 > end:
                    break
                if buf[stop] != _CR or buf[stop + 1] != _LF:
                    raise RespProtocolError("expected CRLF after bulk data")
                if bulk_len < _LARGE_PAYLOAD:
                    args.append(bytes(buf[pos:stop]))
                else:
                    with memoryview(buf) as view:
                        args.append(view[pos:stop].tobytes())
                held += bulk_len
                pos = stop + 2
                bulk_len = -1
                remaining -= 1
                if remaining == 0:
                    out.append(args)
                    held = 0
        except RespProtocolError as error:
            self._failure = str(error)
            self._buf = bytearray()
            self._pos = 0
            self._args = []
            self._held = 0
            if not out:
                raise
            return
        if pos == end:
            buf.clear()
            pos = 0
        elif pos > _COMPACT_AFTER:
            del buf[:pos]
            pos = 0
        self._pos = pos
        self._args = args
        self._held = held
        self._remaining = remaining
        self._bulk_len = bulk_len


# Encoding.

_NO_LINE_BREAKS: Final = bytes.maketrans(b"\r\n", b"  ")


def _line_text(text: str) -> bytes:
    """`text` as UTF-8 for a one-line reply: CR and LF become spaces."""
    try:
        data = text.encode("utf-8", "surrogateescape")
    except UnicodeEncodeError:
        data = text.encode("utf-8", "replace")
    return data.translate(_NO_LINE_BREAKS)


def encode_into(out: bytearray, reply: Reply, resp3: bool = False) -> None:
    """Append the encoding of `reply` to `out`: RESP2, or RESP3 when `resp3`."""
    if isinstance(reply, bytes):
        out += b"$%d\r\n" % len(reply)
        out += reply
        out += b"\r\n"
    elif isinstance(reply, SimpleString):
        out += b"+"
        out += _line_text(reply.text)
        out += b"\r\n"
    elif reply is None:
        out += b"_\r\n" if resp3 else b"$-1\r\n"
    elif isinstance(reply, int):
        out += b":%d\r\n" % reply
    elif isinstance(reply, ErrorReply):
        out += b"-"
        out += _line_text(reply.text)
        out += b"\r\n"
    elif isinstance(reply, list):
        out += b"*%d\r\n" % len(reply)
        for item in reply:
            encode_into(out, item, resp3)
    elif isinstance(reply, Map):
        pairs = reply.pairs
        out += b"%%%d\r\n" % len(pairs) if resp3 else b"*%d\r\n" % (2 * len(pairs))
        for key, value in pairs:
            encode_into(out, key, resp3)
            encode_into(out, value, resp3)
    elif isinstance(reply, Verbatim):
        if resp3:
            out += b"=%d\r\ntxt:" % (len(reply.text) + 4)
        else:
            out += b"$%d\r\n" % len(reply.text)
        out += reply.text
        out += b"\r\n"
    elif isinstance(reply, NullArray):
        out += b"_\r\n" if resp3 else b"*-1\r\n"
    else:
        raise TypeError(f"not a reply: {reply!r}")


def encode(reply: Reply, resp3: bool = False) -> bytes:
    """The encoding of `reply`: RESP2, or RESP3 when `resp3`."""
    out = bytearray()
    encode_into(out, reply, resp3)
    return bytes(out)


# Decoding replies (for trioraft's own clients: `trioraft status`, the benchmark; and a
# write's result forwarded from the leader, see kvstore/replicated.py; and the tests' clients).


def decode_reply(data: bytes | bytearray, start: int = 0) -> tuple[Reply, int] | None:
    """Decode one reply at `start`; returns it and the offset just past it, or None when
    `data` does not hold a whole reply yet. Raises RespProtocolError on a malformed reply."""
    end = data.find(b"\r\n", start)
    if end < 0:
        return None
    kind, line = data[start : start + 1], bytes(data[start + 1 : end])
    after = end + 2
    if kind == b"+":
        return SimpleString(line.decode("utf-8", "replace")), after
    if kind == b"-":
        return ErrorReply(line.decode("utf-8", "replace")), after
    if kind == b":":
        return _decimal_reply(line), after
    if kind == b"$":
        length = _decimal_reply(line)
        if length < 0:
            return None, after
        if len(data) < after + length + 2:
            return None
        if data[after + length : after + length + 2] != b"\r\n":
            raise RespProtocolError("expected CRLF after bulk data")
        return bytes(data[after : after + length]), after + length + 2
    if kind == b"*":
        count = _decimal_reply(line)
        items: list[Reply] = []
        for _ in range(max(count, 0)):
            decoded = decode_reply(data, after)
            if decoded is None:
                return None
            item, after = decoded
            items.append(item)
        return (items if count >= 0 else NULL_ARRAY), after
    raise RespProtocolError(f"unknown reply type {kind!r}")


def _decimal_reply(line: bytes) -> int:
    try:
        return int(line)
    except ValueError:
        raise RespProtocolError(f"not a number: {line[:20]!r}") from None
