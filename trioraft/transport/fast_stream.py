"""`FastSocketStream`: a trio Stream over a plain TCP socket that goes through the event
loop only when the socket would block.

trio's own `SocketStream` makes every call a checkpoint, through layers of context
managers, whether or not the socket was ready; for a connection that sends one small
request and reads one small reply at a time, that work costs more than the system calls
themselves. This stream tries the system call first (the socket is non-blocking) and waits
with `trio.lowlevel.wait_readable` / `wait_writable` only when it would block.

What it keeps of trio's contract: the errors (`trio.BrokenResourceError` for a failed
socket, `trio.ClosedResourceError` once closed, also raised in a task waiting on the
stream when another task closes it; `trio.BusyResourceError` for two tasks receiving, or
two sending, at once), and fairness (below). What it gives up: a call that did not have to
wait is mostly no schedule point and no cancel point.

Fairness: a task whose peer always has more for it (a deep pipeline of requests, a
follower fed appends back to back) would otherwise never give the event loop back. Each
direction counts the work of its calls since it last waited or yielded, one unit per call
plus one per `BYTES_PER_UNIT` it moved; once that reaches `UNITS_PER_TURN`, the next call
starts with `trio.lowlevel.checkpoint()`, where other tasks run and a cancellation
arrives. A task that waits between requests, as a client does that reads each reply
before it sends on, pays nothing; a busy one yields after four small calls, or after
48 KiB to 64 KiB moved, about what a task on trio's stream handles between yields. trio's
stream yields on every call; yielding once per four small calls cuts that cost (a pass
through the scheduler, about ten microseconds on a loaded two-core machine) to a quarter,
while what a task can run between yields (the requests in what it received) stays about
the same.
"""

from __future__ import annotations

import errno
import socket
from typing import Final

import trio

#: the work, in one direction, after which the next call yields first: each call is one
#: unit, plus one per BYTES_PER_UNIT it moved
UNITS_PER_TURN: Final = 4
BYTES_PER_UNIT: Final = 16 * 1024
#: what `receive_some` asks for when not told
DEFAULT_RECEIVE_SIZE: Final = 65536


class FastSocketStream(trio.abc.Stream):
    """A connected TCP socket as a trio Stream (see the module's docstring)."""

    __slots__ = ("_receive_work", "_receiving", "_send_work", "_sending", "socket")

    def __init__(self, sock: socket.socket) -> None:
        sock.setblocking(False)
        #: the socket itself, for its addresses and options
        self.socket = sock
        #: per direction: whether a task is in a call, and the work done (in units) since
        #: that direction last waited or yielded
        self._receiving = False
        self._sending = False
        self._receive_work = 0
        self._send_work = 0

    async def receive_some(self, max_bytes: int | None = None) -> bytes:
        size = DEFAULT_RECEIVE_SIZE if max_bytes is None else max_bytes
        if size < 1:
            raise ValueError("max_bytes must be >= 1")
        if self._receiving:
            raise trio.BusyResourceError("another task is receiving on this stream")
        self._receiving = True
        try:
            if self._receive_work >= UNITS_PER_TURN:
                self._receive_work = 0
                await trio.lowlevel.checkpoint()
            try:
                data = self.socket.recv(size)
            except BlockingIOError:
                self._receive_work = 0
                return await self._receive_when_ready(size)
            self._receive_work += 1 + len(data) // BYTES_PER_UNIT
            return data
        except OSError as exc:
            raise _stream_error(exc) from exc
        finally:
            self._receiving = False

    async def _receive_when_ready(self, size: int) -> bytes:
        while True:
            await trio.lowlevel.wait_readable(self.socket)
            try:
                return self.socket.recv(size)
            except BlockingIOError:
                continue

    async def send_all(self, data: bytes | bytearray | memoryview) -> None:
        if self._sending:
            raise trio.BusyResourceError("another task is sending on this stream")
        self._sending = True
        try:
            if self._send_work >= UNITS_PER_TURN:
                self._send_work = 0
                await trio.lowlevel.checkpoint()
            try:
                sent = self.socket.send(data)
            except BlockingIOError:
                sent = 0
            size = data.nbytes if isinstance(data, memoryview) else len(data)
            if sent == size:
                self._send_work += 1 + size // BYTES_PER_UNIT
                return
            self._send_work = 0
            with memoryview(data) as view, view.cast("B") as octets:
                while sent < size:
                    await trio.lowlevel.wait_writable(self.socket)
                    try:
                        sent += self.socket.send(octets[sent:])
                    except BlockingIOError:
                        continue
        except OSError as exc:
            raise _stream_error(exc) from exc
        finally:
            self._sending = False

    async def wait_send_all_might_not_block(self) -> None:
        if self._sending:
            raise trio.BusyResourceError("another task is sending on this stream")
        if self.socket.fileno() == -1:
            raise trio.ClosedResourceError("the stream is closed")
        self._sending = True
        try:
            await trio.lowlevel.wait_writable(self.socket)
            self._send_work = 0
        finally:
            self._sending = False

    async def aclose(self) -> None:
        """Close the socket; a task waiting on it gets `trio.ClosedResourceError`."""
        if self.socket.fileno() != -1:
            trio.lowlevel.notify_closing(self.socket)
            self.socket.close()
        await trio.lowlevel.checkpoint()


def fast_stream(tcp: trio.SocketStream) -> FastSocketStream:
    """`tcp`'s socket (with the options trio set on it: TCP_NODELAY, TCP_NOTSENT_LOWAT) as
    a FastSocketStream; `tcp` is left without it, and must not be used again."""
    return FastSocketStream(socket.socket(fileno=tcp.socket.detach()))


def _stream_error(exc: OSError) -> trio.BrokenResourceError | trio.ClosedResourceError:
    """What a failed socket call means for the stream: closed (by this side), or broken."""
    if exc.errno == errno.EBADF:
        return trio.ClosedResourceError("the stream is closed")
    return trio.BrokenResourceError(f"socket failed: {exc}")
