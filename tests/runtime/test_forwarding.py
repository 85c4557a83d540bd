"""The follower's write forwarder (trioraft.runtime.forwarding) against a fake leader, in virtual
time: how writes are batched, bounded, answered and given up."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import pytest
import trio
import trio.testing

from trioraft.core.messages import NodeId
from trioraft.runtime.deadlines import Deadlines
from trioraft.runtime.forwarding import MAX_BATCH_BYTES, MAX_IN_FLIGHT, WAKE_CHUNK, Forwarder
from trioraft.transport import RpcRemoteError, RpcTimeout


class FakeLeader:
    """Answers `propose` calls with b"re:" + command, each once `release` is called."""

    def __init__(self) -> None:
        #: (leader, commands) of every call, in order
        self.calls: list[tuple[NodeId, list[bytes]]] = []
        #: calls running now, and the most ever at once
        self.running = 0
        self.most_running = 0
        self.failure: Exception | None = None
        self._released = trio.Event()

    def release(self) -> None:
        self._released.set()
        self._released = trio.Event()

    async def propose(self, leader: NodeId, commands: list[bytes], timeout: float) -> list[bytes]:
        self.calls.append((leader, commands))
        self.running += 1
        self.most_running = max(self.most_running, self.running)
        try:
            await self._released.wait()
        finally:
            self.running -= 1
        if self.failure is not None:
            raise self.failure
        return [b"re:" + command for command in commands]


async def take_every_call_slot(forwarder: Forwarder[bytes], nursery: trio.Nursery) -> None:
    """Start MAX_IN_FLIGHT writes of b"first", each in a call of its own."""
    for _ in range(MAX_IN_FLIGHT):
        nursery.start_soon(forwarder.forward, "n1", [b"first"], 60)
        await trio.testing.wait_all_tasks_blocked()


async def tick(deadlines: Deadlines) -> None:
    """What the node's ticker does for the forwarder: end the writes whose time is up."""
    while True:
        await trio.sleep(0.1)
        deadlines.expire(trio.current_time())


@asynccontextmanager
async def running(
    leader: FakeLeader, deadlines: Deadlines | None = None
) -> AsyncIterator[Forwarder[bytes]]:
    deadlines = deadlines or Deadlines()
    forwarder = Forwarder(leader.propose, deadlines)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(forwarder.run)
        nursery.start_soon(tick, deadlines)
        yield forwarder
        nursery.cancel_scope.cancel()


async def test_writes_arriving_while_calls_run_go_together_in_few_calls(
    autojump_clock: Any,
) -> None:
    leader = FakeLeader()
    replies: dict[int, list[bytes]] = {}

    async def client(forwarder: Forwarder, k: int) -> None:
        replies[k] = await forwarder.forward("n1", [b"a%d" % k, b"b%d" % k], timeout=5)

    async with running(leader) as forwarder, trio.open_nursery() as nursery:
        for wave in range(10):  # the first waves find a free call slot, the rest wait
            for k in range(100 * wave, 100 * (wave + 1)):
                nursery.start_soon(client, forwarder, k)
            await trio.testing.wait_all_tasks_blocked()
        while len(replies) < 1000:
            leader.release()
            await trio.testing.wait_all_tasks_blocked()
    assert replies == {k: [b"re:a%d" % k, b"re:b%d" % k] for k in range(1000)}
    assert leader.most_running == MAX_IN_FLIGHT
    assert len(leader.calls) == MAX_IN_FLIGHT + 1
    assert len(leader.calls[-1][1]) == 2 * 100 * (10 - MAX_IN_FLIGHT)


async def test_a_batch_stops_at_the_byte_limit_and_at_another_leader(
    autojump_clock: Any,
) -> None:
    leader = FakeLeader()
    half = b"x" * (MAX_BATCH_BYTES // 2)
    async with running(leader) as forwarder, trio.open_nursery() as nursery:
        await take_every_call_slot(forwarder, nursery)
        for target, command in [("n1", half), ("n1", half), ("n1", half), ("n2", b"y")]:
            nursery.start_soon(forwarder.forward, target, [command], 5)
            await trio.testing.wait_all_tasks_blocked()
        for _ in range(4):
            leader.release()
            await trio.testing.wait_all_tasks_blocked()
    later = leader.calls[MAX_IN_FLIGHT:]
    assert later == [("n1", [half, half]), ("n1", [half]), ("n2", [b"y"])]


async def test_a_failed_call_fails_each_of_its_writes(autojump_clock: Any) -> None:
    leader = FakeLeader()
    leader.failure = RpcRemoteError("NotLeader: n3 leads")
    failures: list[str] = []

    async def client(forwarder: Forwarder) -> None:
        with pytest.raises(RpcRemoteError) as caught:
            await forwarder.forward("n1", [b"w"], timeout=5)
        failures.append(str(caught.value))

    async with running(leader) as forwarder, trio.open_nursery() as nursery:
        for _ in range(3):
            nursery.start_soon(client, forwarder)
        await trio.testing.wait_all_tasks_blocked()
        leader.release()
    assert failures == ["NotLeader: n3 leads"] * 3


async def test_a_write_that_times_out_unsent_is_never_sent(autojump_clock: Any) -> None:
    leader = FakeLeader()
    deadlines = Deadlines()
    async with running(leader, deadlines) as forwarder, trio.open_nursery() as nursery:
        await take_every_call_slot(forwarder, nursery)
        began = trio.current_time()
        with pytest.raises(RpcTimeout, match="did not answer in time"):
            await forwarder.forward("n1", [b"late"], timeout=1)
        # ended by the first tick at or after its deadline
        assert 1 <= trio.current_time() - began <= 1.1
        leader.release()
        await trio.testing.wait_all_tasks_blocked()
        await trio.sleep(0.2)
        assert len(deadlines) == 0  # every write settled, none left waiting
    assert [commands for _, commands in leader.calls] == [[b"first"]] * MAX_IN_FLIGHT


async def test_a_write_whose_call_hangs_times_out(autojump_clock: Any) -> None:
    leader = FakeLeader()
    async with running(leader) as forwarder:
        with pytest.raises(RpcTimeout, match="did not answer in time"):
            await forwarder.forward("n1", [b"w"], timeout=2)
        assert leader.calls == [("n1", [b"w"])]
        assert 2 <= trio.current_time() <= 2.1


async def test_the_writers_of_one_call_go_on_a_chunk_per_round(autojump_clock: Any) -> None:
    leader = FakeLeader()
    rounds = 0
    resumed_in_round: list[int] = []

    async def count_rounds() -> None:
        nonlocal rounds
        while True:
            rounds += 1
            await trio.sleep(0)

    async def client(forwarder: Forwarder) -> None:
        await forwarder.forward("n1", [b"w"], timeout=5)
        resumed_in_round.append(rounds)

    async with running(leader) as forwarder, trio.open_nursery() as nursery:
        for _ in range(10 * WAKE_CHUNK):
            nursery.start_soon(client, forwarder)
        await trio.testing.wait_all_tasks_blocked()
        nursery.start_soon(count_rounds)  # from now on, never all tasks blocked
        leader.release()
        while len(resumed_in_round) < 10 * WAKE_CHUNK:
            await trio.sleep(0)
        nursery.cancel_scope.cancel()
    assert len(leader.calls) == 1
    # within a round, the order of tasks is not fixed: a chunk may see the counter of the
    # round before or after its own, never more than two chunks the same
    per_round = [resumed_in_round.count(r) for r in set(resumed_in_round)]
    assert max(per_round) <= 2 * WAKE_CHUNK
    assert len(per_round) >= 5
