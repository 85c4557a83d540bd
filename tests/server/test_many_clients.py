"""Many clients at once, as real processes: hundreds of connections writing through each
follower, more than the leader runs handlers for one peer link. Every write is answered and
the leader stays: client load waits at the clients, never on the peer links."""

from __future__ import annotations

import resource
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager

import pytest
import trio
from harness.ports import HOST
from harness.process_cluster import ProcessCluster, running_cluster

from trioraft.transport.base import MAX_HANDLERS

pytestmark = pytest.mark.processes

#: how long all the clients together may take (a few seconds on an idle machine)
DEADLINE = 120.0


@contextmanager
def open_files_allowed(count: int) -> Iterator[None]:
    """Raise this process's soft limit on open files to at least `count` (as far as the
    hard limit allows), for it and the nodes it starts; restored on exit."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = count if hard == resource.RLIM_INFINITY else min(count, hard)
    if wanted <= soft:
        yield
        return
    resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, hard))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


async def read_line(stream: trio.SocketStream, buffer: bytearray) -> bytes:
    """One reply line (a simple string or an error), without its CRLF."""
    while (end := buffer.find(b"\r\n")) < 0:
        data = await stream.receive_some(4096)
        if not data:
            raise ConnectionError("the node closed the connection")
        buffer += data
    line = bytes(buffer[:end])
    del buffer[: end + 2]
    return line


async def client(stream: trio.SocketStream, name: bytes, writes: int, replies: list[bytes]) -> None:
    """`writes` SETs one after the other, as a benchmark client does; records each reply."""
    buffer = bytearray()
    for k in range(writes):
        await stream.send_all(b"SET %s:%d v\r\n" % (name, k))
        replies.append(await read_line(stream, buffer))


async def write_through_followers(
    cluster: ProcessCluster, clients: int, writes: int
) -> list[bytes]:
    """Open `clients` connections to each follower, then let all of them write at once;
    every reply line, in no particular order."""
    replies: list[bytes] = []
    streams: list[tuple[bytes, trio.SocketStream]] = []
    try:
        for follower in cluster.followers():
            for k in range(clients):
                stream = await trio.open_tcp_stream(HOST, follower.client_port)
                streams.append((b"%s:%d" % (follower.id.encode(), k), stream))
        with trio.fail_after(DEADLINE):
            async with trio.open_nursery() as nursery:
                for name, stream in streams:
                    nursery.start_soon(client, stream, name, writes, replies)
    finally:
        for _, stream in streams:
            await trio.aclose_forcefully(stream)
    return replies


async def check_many_clients(clients: int, writes: int) -> None:
    with open_files_allowed(3 * clients + 1024), running_cluster(3) as cluster:
        leader = cluster.wait_for_leader()
        term = leader.info()["term"]
        replies = await write_through_followers(cluster, clients, writes)
        terms = [node.info()["term"] for node in cluster.nodes]
        failed = Counter(reply for reply in replies if reply != b"+OK")
        assert (len(replies), failed, terms) == (2 * clients * writes, {}, [term] * 3)
        assert cluster.wait_for_leader() is leader


async def test_more_clients_through_each_follower_than_the_leader_has_handlers() -> None:
    await check_many_clients(clients=MAX_HANDLERS + 44, writes=3)


@pytest.mark.slow
async def test_a_thousand_clients_through_each_follower() -> None:
    await check_many_clients(clients=1000, writes=10)
