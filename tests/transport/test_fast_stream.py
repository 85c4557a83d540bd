"""FastSocketStream over loopback TCP: data both ways, the errors of trio's streams, closing
with a call pending, and a busy task yielding.

Real sockets, real time; no test waits for time to pass: a test either waits for a
condition (`wait_all_tasks_blocked`) or counts calls.
"""

from __future__ import annotations

import socket
import struct
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import pytest
import trio
import trio.testing

from trioraft.transport.fast_stream import (
    BYTES_PER_UNIT,
    UNITS_PER_TURN,
    FastSocketStream,
    fast_stream,
)

#: the peer's receive buffer (fixed: no autotuning), and more than the buffers on the way
#: hold, so that a send of FLOOD waits for the peer to read
PEER_BUFFER = 64 * 1024
FLOOD = 4 * 1024 * 1024


@asynccontextmanager
async def connected() -> AsyncIterator[tuple[FastSocketStream, trio.SocketStream]]:
    """A FastSocketStream made from an accepted trio SocketStream, and its peer."""
    with socket.create_server(("127.0.0.1", 0)) as listener:
        connecting = socket.socket()
        connecting.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, PEER_BUFFER)
        connecting.connect(listener.getsockname())  # loopback, listening: at once
        accepted, _ = listener.accept()
    peer = trio.SocketStream(trio.socket.from_stdlib_socket(connecting))
    stream = fast_stream(trio.SocketStream(trio.socket.from_stdlib_socket(accepted)))
    async with stream, peer:
        yield stream, peer


async def receive_exactly(stream: trio.abc.ReceiveStream, size: int) -> bytes:
    data = bytearray()
    while len(data) < size:
        chunk = await stream.receive_some(size - len(data))
        assert chunk, "the stream ended early"
        data += chunk
    return bytes(data)


async def test_data_goes_both_ways() -> None:
    async with connected() as (stream, peer):
        await stream.send_all(b"hello")
        assert await receive_exactly(peer, 5) == b"hello"
        await peer.send_all(b"world")
        assert await receive_exactly(stream, 5) == b"world"
        await stream.send_all(bytearray(b"ab") + memoryview(b"cd"))
        assert await receive_exactly(peer, 4) == b"abcd"


async def test_a_send_larger_than_the_buffers_waits_for_the_reader_and_arrives_whole() -> None:
    data = bytes(range(256)) * (FLOOD // 256)
    async with connected() as (stream, peer), trio.open_nursery() as nursery:
        nursery.start_soon(stream.send_all, data)
        await trio.testing.wait_all_tasks_blocked()  # the sender waits for room
        assert await receive_exactly(peer, len(data)) == data


async def test_a_memoryview_of_wider_items_is_sent_as_its_bytes() -> None:
    data = memoryview(bytearray(range(16))).cast("I")  # 4 items of 4 bytes
    async with connected() as (stream, peer):
        await stream.send_all(data)
        assert await receive_exactly(peer, 16) == bytes(range(16))


async def test_the_peer_closing_ends_the_stream() -> None:
    async with connected() as (stream, peer):
        await peer.send_all(b"last")
        await peer.aclose()
        assert await receive_exactly(stream, 4) == b"last"
        assert await stream.receive_some() == b""


async def test_sending_to_a_peer_that_reset_the_connection_is_broken() -> None:
    async with connected() as (stream, peer):
        linger_zero = struct.pack("ii", 1, 0)
        peer.socket.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, linger_zero)
        await peer.aclose()  # lingering 0 s: the peer resets the connection
        with pytest.raises(trio.BrokenResourceError):
            for _ in range(100):  # the first sends may land before the reset is seen
                await stream.send_all(b"x" * 1024)
                await trio.sleep(0)


async def test_a_closed_stream_refuses_every_call() -> None:
    async with connected() as (stream, _):
        await stream.aclose()
        await stream.aclose()  # twice is fine
        with pytest.raises(trio.ClosedResourceError):
            await stream.receive_some()
        with pytest.raises(trio.ClosedResourceError):
            await stream.send_all(b"x")
        with pytest.raises(trio.ClosedResourceError):
            await stream.wait_send_all_might_not_block()


async def test_closing_wakes_a_task_waiting_to_receive() -> None:
    async with connected() as (stream, _):
        with pytest.RaisesGroup(trio.ClosedResourceError):
            async with trio.open_nursery() as nursery:
                nursery.start_soon(stream.receive_some)
                await trio.testing.wait_all_tasks_blocked()
                await stream.aclose()


async def test_closing_wakes_a_task_waiting_to_send() -> None:
    async with connected() as (stream, _):
        with pytest.RaisesGroup(trio.ClosedResourceError):
            async with trio.open_nursery() as nursery:
                nursery.start_soon(stream.send_all, bytes(FLOOD))
                await trio.testing.wait_all_tasks_blocked()
                await stream.aclose()


async def test_two_tasks_receiving_or_sending_at_once_is_refused() -> None:
    async with connected() as (stream, _), trio.open_nursery() as nursery:
        nursery.start_soon(stream.receive_some)
        nursery.start_soon(stream.send_all, bytes(FLOOD))
        await trio.testing.wait_all_tasks_blocked()
        with pytest.raises(trio.BusyResourceError):
            await stream.receive_some()
        with pytest.raises(trio.BusyResourceError):
            await stream.send_all(b"x")
        with pytest.raises(trio.BusyResourceError):
            await stream.wait_send_all_might_not_block()
        nursery.cancel_scope.cancel()


async def test_a_receiver_that_never_waits_still_yields() -> None:
    """The peer has sent plenty: every receive finds data. Every UNITS_PER_TURN + 1 calls
    in a row still hold a checkpoint, where other tasks run and a cancellation arrives."""
    async with connected() as (stream, peer):
        await peer.send_all(bytes(1000))
        await trio.lowlevel.wait_readable(stream.socket)
        for _ in range(10):
            with trio.testing.assert_checkpoints():
                for _ in range(UNITS_PER_TURN + 1):
                    await stream.receive_some(1)
        with trio.CancelScope() as scope:
            scope.cancel()
            for _ in range(UNITS_PER_TURN + 1):
                await stream.receive_some(1)
        assert scope.cancelled_caught


async def test_a_large_receive_counts_for_several_calls() -> None:
    """Small calls yield once per UNITS_PER_TURN + 1 (the test below); a receive of two
    units' worth of bytes counts for three calls."""
    chunk = 2 * BYTES_PER_UNIT
    async with connected() as (stream, peer):
        await peer.send_all(bytes(chunk + 2))
        await trio.lowlevel.wait_readable(stream.socket)
        with trio.testing.assert_checkpoints():
            assert len(await stream.receive_some(chunk)) == chunk
            assert len(await stream.receive_some(1)) == 1
            assert len(await stream.receive_some(1)) == 1


async def test_a_sender_that_never_waits_still_yields() -> None:
    async with connected() as (stream, _):
        for _ in range(10):
            with trio.testing.assert_checkpoints():
                for _ in range(UNITS_PER_TURN + 1):
                    await stream.send_all(b"x")


async def test_a_call_that_finds_the_socket_ready_does_not_yield() -> None:
    """The point of the stream: the first calls after a wait cost no pass through the
    event loop."""
    async with connected() as (stream, peer):
        await peer.send_all(b"x" * UNITS_PER_TURN)
        await trio.lowlevel.wait_readable(stream.socket)
        with trio.testing.assert_no_checkpoints():
            for _ in range(UNITS_PER_TURN):
                await stream.send_all(b"x")
                assert await stream.receive_some(1) == b"x"
