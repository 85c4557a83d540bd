"""A tiny blocking RESP2 client for tests: plain sockets, so it works from ordinary pytest
tests, fixtures and helper threads.

Replies decode as: simple string -> `str`, error -> `Error`, integer -> `int`, bulk ->
`bytes`, null -> `None`, array -> `list`. A test compares an error reply with
`Error("ERR syntax error")`.
"""

from __future__ import annotations

import socket
import ssl
from dataclasses import dataclass
from typing import TypeAlias

from harness.ports import HOST
from trioraft.closing import ClosedOnExit
from trioraft.redis import replies
from trioraft.redis.replies import ErrorReply, NullArray, SimpleString
from trioraft.redis.resp import RespProtocolError, decode_reply


@dataclass(frozen=True)
class Error:
    """An error reply; `text` is the line without its leading '-'."""

    text: str


Reply: TypeAlias = "str | Error | int | bytes | list[Reply] | None"
Arg: TypeAlias = "str | bytes | int"


def _as_bytes(arg: Arg) -> bytes:
    if isinstance(arg, bytes):
        return arg
    return str(arg).encode()


def encode_request(*args: Arg) -> bytes:
    """A RESP2 multibulk request."""
    parts = [b"*%d\r\n" % len(args)]
    for arg in args:
        data = _as_bytes(arg)
        parts.append(b"$%d\r\n%s\r\n" % (len(data), data))
    return b"".join(parts)


def parse_reply(buf: bytes | bytearray, pos: int = 0) -> tuple[Reply, int] | None:
    """The reply starting at `pos` and the position after it, or None when `buf` does
    not hold all of it yet. ValueError for bytes that are no RESP2 reply."""
    try:
        decoded = decode_reply(buf, pos)
    except RespProtocolError as exc:
        raise ValueError(f"not a RESP2 reply: {exc}") from None
    if decoded is None:
        return None
    reply, after = decoded
    return _plain(reply), after


def _plain(reply: replies.Reply) -> Reply:
    """A decoded reply in the tests' terms: a simple string as `str`, an error as `Error`,
    a null array as None."""
    if isinstance(reply, SimpleString):
        return reply.text
    if isinstance(reply, ErrorReply):
        return Error(reply.text)
    if isinstance(reply, list):
        return [_plain(item) for item in reply]
    if isinstance(reply, NullArray):
        return None
    assert isinstance(reply, int | bytes | None), f"not a RESP2 reply: {reply!r}"
    return reply


class ConnectionClosed(ConnectionError):
    """The server closed the connection before a whole reply arrived."""


class RespClient(ClosedOnExit):
    """One blocking connection. `call` sends a request and reads its reply; `send` and
    `read` split the two for pipelining; `send_raw` sends any bytes at all."""

    def __init__(
        self,
        port: int,
        host: str = HOST,
        timeout: float = 10.0,
        tls: ssl.SSLContext | None = None,
    ) -> None:
        self.sock = socket.create_connection((host, port), timeout=timeout)
        if tls is not None:
            try:
                self.sock = tls.wrap_socket(self.sock, server_hostname=host)
            except BaseException:
                self.sock.close()
                raise
        self._buf = bytearray()
        self._pos = 0

    def close(self) -> None:
        self.sock.close()

    def send(self, *args: Arg) -> None:
        self.sock.sendall(encode_request(*args))

    def send_raw(self, data: bytes) -> None:
        self.sock.sendall(data)

    def call(self, *args: Arg) -> Reply:
        self.send(*args)
        return self.read()

    def inline(self, line: str | bytes) -> Reply:
        """Send one inline command line (as typed into nc) and read its reply."""
        data = line.encode() if isinstance(line, str) else line
        self.send_raw(data + b"\r\n")
        return self.read()

    def pipeline(self, *requests: tuple[Arg, ...]) -> list[Reply]:
        """Send every request in one write, then read all the replies."""
        self.send_raw(b"".join(encode_request(*request) for request in requests))
        return [self.read() for _ in requests]

    def read(self) -> Reply:
        """The next reply; ConnectionClosed if the server closes first."""
        while (parsed := parse_reply(self._buf, self._pos)) is None:
            self._fill()
        reply, self._pos = parsed
        return reply

    def read_until_closed(self) -> bytes:
        """Everything the server sends until it closes the connection (a reset counts as
        closing); TimeoutError (socket.timeout) if it stays open past the timeout."""
        data = bytes(self._buf[self._pos :])
        self._buf.clear()
        self._pos = 0
        while True:
            try:
                chunk = self.sock.recv(65536)
            except ConnectionResetError:
                return data
            if not chunk:
                return data
            data += chunk

    def _fill(self) -> None:
        if self._pos:
            del self._buf[: self._pos]
            self._pos = 0
        chunk = self.sock.recv(1 << 20)
        if not chunk:
            raise ConnectionClosed("the server closed the connection")
        self._buf += chunk


def parse_info(text: bytes) -> dict[str, str]:
    """The `name:value` lines of an INFO reply (section headers skipped)."""
    fields: dict[str, str] = {}
    for line in text.decode().splitlines():
        if line and not line.startswith("#"):
            name, _, value = line.partition(":")
            fields[name] = value
    return fields
