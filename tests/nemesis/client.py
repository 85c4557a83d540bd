"""A small Trio RESP2 client for the fault workload, and what its replies mean.

`Connection` sends one request and reads its reply over a `trio.SocketStream`; it has no
timeout of its own: the caller wraps each call in a cancel scope and drops the
connection when the scope expires, since a late reply would otherwise be read as the
answer to the next request. Replies decode as in `harness.process_cluster`: simple
string -> `str`, error -> `Error`, integer -> `int`, bulk -> `bytes`, null -> `None`,
array -> `list`.

`interpret` maps a reply to an outcome in the checker's terms (docs/protocol.md):

- the reply the command has when it ran: OK, with the output the model predicts;
- `-CLUSTERDOWN ...`: definitely not applied: FAIL;
- `-TIMEOUT ...`: may or may not take effect: INFO (indeterminate);
- `-ERR value is not an integer ...` to INCR: the command ran and refused: OK with
  output None, which the model reads as "the value was not an integer";
- a transaction's EXEC (or an MGET, read as a transaction of GETs): the array of replies
  is OK with their tuple; EXEC's null array (a watched key changed) is FAIL;
- anything else is not a reply the contract allows for these commands: `UnexpectedReply`
  (the caller records the operation as indeterminate, so it cannot fake a violation,
  and reports the reply).
"""

from __future__ import annotations

import trio
from harness.resp_client import Arg, ConnectionClosed, Error, Reply, encode_request, parse_reply
from sim.linearizability import Kind, Status


class UnexpectedReply(Exception):
    """A reply the contract does not allow for the command."""


class Connection:
    """One client connection; see the module docstring."""

    def __init__(self, stream: trio.SocketStream) -> None:
        self.stream = stream
        self._buf = bytearray()

    @classmethod
    async def open(cls, host: str, port: int) -> Connection:
        return cls(await trio.open_tcp_stream(host, port))

    async def call(self, *args: Arg) -> Reply:
        """Send one request and return its reply; ConnectionClosed if the server closes
        first, OSError or trio.BrokenResourceError if the connection breaks."""
        await self.stream.send_all(encode_request(*args))
        return await self._read()

    async def _read(self) -> Reply:
        while True:
            parsed = parse_reply(self._buf)
            if parsed is not None:
                reply, used = parsed
                del self._buf[:used]
                return reply
            chunk = await self.stream.receive_some(65536)
            if not chunk:
                raise ConnectionClosed("the server closed the connection")
            self._buf += chunk

    async def pipeline(self, requests: list[tuple[Arg, ...]]) -> list[Reply]:
        """Send every request in one write, then read all their replies."""
        await self.stream.send_all(b"".join(encode_request(*request) for request in requests))
        return [await self._read() for _ in requests]

    async def aclose(self) -> None:
        await trio.aclose_forcefully(self.stream)


def interpret(kind: Kind, reply: Reply) -> tuple[Status, object]:
    """The outcome and the checker's output for `reply` to an operation of `kind`."""
    if isinstance(reply, Error):
        word = reply.text.split(" ", 1)[0]
        if word == "CLUSTERDOWN":
            return Status.FAIL, None
        if word == "TIMEOUT":
            return Status.INFO, None
        if kind is Kind.INCR and reply.text.startswith("ERR value is not an integer"):
            return Status.OK, None
        raise UnexpectedReply(f"-{reply.text}")
    if kind is Kind.TRANSACTION and (reply is None or isinstance(reply, list)):
        return (Status.FAIL, None) if reply is None else (Status.OK, tuple(reply))
    if kind is Kind.GET and (reply is None or isinstance(reply, bytes)):
        return Status.OK, reply
    if kind is Kind.SET and reply == "OK":
        return Status.OK, None
    if kind in (Kind.DEL, Kind.INCR) and isinstance(reply, int):
        return Status.OK, reply
    if kind is Kind.SET_IF_EQUAL and reply in ("OK", None):
        return Status.OK, reply == "OK"
    raise UnexpectedReply(repr(reply))
