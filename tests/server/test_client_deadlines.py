"""The client listener's deadlines, in process on virtual time: a client that does not take
its replies, or sends nothing, is dropped once its timeout has passed (and not before); a
client whose request is still running is not idle.

The listener serves real loopback connections; the node behind it is a stand-in that
knows only what these commands use. Under `autojump_clock` time jumps whenever every task
waits, so a 30-second timeout takes no real time, and the instant a connection is dropped
is exact: the watchdog drops a connection within an eighth of its timeout after it passes.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager, suppress
from types import SimpleNamespace
from typing import cast

import trio
from harness.resp_client import encode_request
from trio.testing import MockClock

from trioraft.kvstore.replicated import ReplicatedState
from trioraft.redis.limits import ClientLimits
from trioraft.redis.replies import OK
from trioraft.redis.server import ClientServer
from trioraft.runtime.metrics import NodeMetrics
from trioraft.runtime.node import Node

REPLY_TIMEOUT = 30.0
IDLE_TIMEOUT = 10.0
#: how long a write takes to commit on the stand-in node: longer than the idle timeout
WRITE_SECONDS = 3 * IDLE_TIMEOUT
#: a reply of this size, many times over, is more than the socket buffers hold
BIG = 1024 * 1024


async def slow_write(commands: list[bytes]) -> list[object]:
    await trio.sleep(WRITE_SECONDS)
    return [OK] * len(commands)


@asynccontextmanager
async def listening(limits: ClientLimits) -> AsyncIterator[tuple[ClientServer, tuple[str, int]]]:
    node = SimpleNamespace(id="n1", metrics=NodeMetrics(), write=slow_write)
    server = ClientServer(cast(Node, node), ReplicatedState(), limits)
    async with trio.open_nursery() as nursery:
        address = await nursery.start(server.serve, "127.0.0.1", 0)
        yield server, address
        nursery.cancel_scope.cancel()


async def read_until_closed(stream: trio.SocketStream) -> bytes:
    received = bytearray()
    try:
        with trio.fail_after(4 * REPLY_TIMEOUT):
            while chunk := await stream.receive_some():
                received += chunk
    except trio.BrokenResourceError:  # closed with our requests unread: a reset
        pass
    return bytes(received)


async def send_until_closed(stream: trio.SocketStream, data: bytes) -> None:
    """Send `data`, or as much of it as the server reads before it drops the connection."""
    with suppress(trio.BrokenResourceError):
        await stream.send_all(data)


async def wait_dropped(server: ClientServer) -> float:
    """When (trio time) the server has no connection left."""
    with trio.fail_after(4 * REPLY_TIMEOUT):
        while server.stats.connected:
            await trio.sleep(0.01)
    return trio.current_time()


async def test_a_client_that_does_not_take_its_replies_is_dropped(
    autojump_clock: MockClock,
) -> None:
    limits = ClientLimits(reply_timeout=REPLY_TIMEOUT)
    async with listening(limits) as (server, address):
        client = await trio.open_tcp_stream(*address)
        async with client, trio.open_nursery() as nursery:
            await client.send_all(encode_request("PING"))
            assert await client.receive_some() == b"+PONG\r\n"
            # the replies fill the buffers, the server waits to send, the client never reads
            start = trio.current_time()
            nursery.start_soon(send_until_closed, client, encode_request("ECHO", b"x" * BIG) * 32)
            dropped = await wait_dropped(server)
            assert REPLY_TIMEOUT <= dropped - start <= REPLY_TIMEOUT * 9 / 8 + 0.1
            assert server.node.metrics.rejected_too_slow.value == 1
            assert len(await read_until_closed(client)) < 32 * BIG


async def test_a_client_that_takes_its_replies_in_time_is_kept(autojump_clock: MockClock) -> None:
    limits = ClientLimits(reply_timeout=REPLY_TIMEOUT)
    async with listening(limits) as (server, address):
        client = await trio.open_tcp_stream(*address)
        async with client, trio.open_nursery() as nursery:
            reply = b"$%d\r\n%s\r\n" % (BIG, b"x" * BIG)
            nursery.start_soon(client.send_all, encode_request("ECHO", b"x" * BIG) * 8)
            await trio.sleep(REPLY_TIMEOUT * 0.75)  # the server waits to send, all this time
            received = bytearray()
            while len(received) < 8 * len(reply):
                received += await client.receive_some()
            assert received == reply * 8
            await client.send_all(encode_request("PING"))
            assert await client.receive_some() == b"+PONG\r\n"
            assert server.stats.connected == 1
            assert server.node.metrics.rejected_too_slow.value == 0


async def test_a_client_that_sends_nothing_is_dropped_after_the_idle_timeout(
    autojump_clock: MockClock,
) -> None:
    limits = ClientLimits(idle_timeout=IDLE_TIMEOUT)
    async with listening(limits) as (server, address):
        client = await trio.open_tcp_stream(*address)
        async with client:
            for _ in range(5):  # a request every 90% of the timeout: kept
                await client.send_all(encode_request("PING"))
                assert await client.receive_some() == b"+PONG\r\n"
                await trio.sleep(IDLE_TIMEOUT * 0.9)
            await client.send_all(encode_request("PING"))
            assert await client.receive_some() == b"+PONG\r\n"
            start = trio.current_time()
            assert await read_until_closed(client) == b""
            dropped = await wait_dropped(server)
            assert IDLE_TIMEOUT <= dropped - start <= IDLE_TIMEOUT * 9 / 8 + 0.1
            assert server.node.metrics.rejected_too_slow.value == 1


async def test_a_client_waiting_for_its_reply_is_not_idle(autojump_clock: MockClock) -> None:
    limits = ClientLimits(idle_timeout=IDLE_TIMEOUT)
    async with listening(limits) as (server, address):
        client = await trio.open_tcp_stream(*address)
        async with client:
            start = trio.current_time()
            await client.send_all(encode_request("SET", "k", "v"))
            assert await client.receive_some() == b"+OK\r\n"
            assert trio.current_time() - start >= WRITE_SECONDS
            assert server.node.metrics.rejected_too_slow.value == 0
