"""The runtime's broadest test: clients write and read on random nodes of an in-process
cluster (node_cluster.py) while a nemesis crashes and restarts nodes, cuts minorities off
and slows disks. The runtime's tests run it, and so do the runtime's mutants."""

from __future__ import annotations

import random
from pathlib import Path

import pytest
import trio

from harness.node_cluster import OK, TICK, NodeCluster, get, open_cluster, slow_disk, write
from trioraft.runtime.node import Node
from trioraft.runtime.outcomes import Indeterminate, Unavailable


def number(node: Node, key: bytes) -> int:
    """The number stored at `key` in `node`'s state machine, 0 when unset."""
    value = get(node, key)
    assert value is None or isinstance(value, bytes)
    return 0 if value is None else int(value)


async def under_random_faults(root: Path, seed: int, monkeypatch: pytest.MonkeyPatch) -> None:
    """Fails if an acknowledged write is lost, a read is stale, or two leaders share a term."""
    rng = random.Random(seed)
    #: per key: the highest number acknowledged, and the highest ever sent
    acknowledged: dict[bytes, int] = {}
    attempted: dict[bytes, int] = {}
    stale_reads: list[str] = []

    async def client(cluster: NodeCluster, key: bytes) -> None:
        for n in range(1, 1_000_000):
            node = rng.choice(cluster.nodes)
            if rng.random() < 0.5:
                attempted[key] = n
                reply = await write(node, key, b"%d" % n)
                assert reply == OK or reply.startswith((b"-TIMEOUT", b"-CLUSTERDOWN")), reply
                if reply == OK:
                    acknowledged[key] = max(acknowledged.get(key, 0), n)
            else:
                floor = acknowledged.get(key, 0)
                try:
                    await node.read_barrier()
                except (Unavailable, Indeterminate):
                    continue
                seen = number(node, key)
                if not floor <= seen <= attempted.get(key, 0):
                    stale_reads.append(f"{node.id} read {seen}, acknowledged {floor}")
            await trio.sleep(rng.uniform(0, 5 * TICK))

    async def nemesis(cluster: NodeCluster) -> None:
        down: list[str] = []
        for _ in range(12):
            await trio.sleep(rng.uniform(0.1, 1.0))
            fault = rng.choice(["crash", "restart", "partition", "heal", "slow disk"])
            if fault == "slow disk":
                # it lags behind the commit index: a read through it must wait to apply
                # (each write well within an election timeout: a slow disk, not a hung one)
                slow_disk(rng.choice(cluster.nodes), rng.uniform(0.05, 0.2), monkeypatch)
            elif fault == "crash" and not down:
                down.append(rng.choice(cluster.ids))
                await cluster.crash(down[-1])
            elif fault == "restart" and down:
                await cluster.start(down.pop())
            elif fault == "partition":
                cluster.network.heal()
                minority = rng.choice(cluster.ids)
                cluster.network.partition([minority], set(cluster.ids) - {minority})
            else:
                cluster.network.heal()
        cluster.network.heal()
        for node_id in down:
            await cluster.start(node_id)

    async with open_cluster(root, seed=seed) as cluster:
        async with trio.open_nursery() as clients:
            for key in (b"a", b"b", b"c"):
                clients.start_soon(client, cluster, key)
            await nemesis(cluster)
            clients.cancel_scope.cancel()

        leader = await cluster.wait_for_leader()
        await leader.read_barrier()
        for key, highest in acknowledged.items():
            assert number(leader, key) >= highest
        await cluster.wait_converged()
        assert not stale_reads
        assert acknowledged, "no write was acknowledged at all"
        cluster.assert_election_safety()
