"""A million keys with one deadline on a real cluster: the leader deletes them through
the log in bounded entries while it keeps answering, and keeps its term.

`slow`: loading the keys (MSET, then PEXPIREAT in transactions of 1000, one log entry
each) takes about a minute and a half, and the deadline is set 150 s after the MSETs so
that every key has it before it passes. The figures (time to delete them all,
the longest wait for a PING to the leader meanwhile, the terms seen) are printed
(`pytest -s`) for the record; what is asserted is that every key goes, on every node,
and that no election happens.
"""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest
from harness.big_keyspace import Pinger, key, msets, terms
from harness.polling import wait_until
from harness.process_cluster import ProcessCluster, running_cluster
from harness.process_node import Node
from harness.resp_client import Arg
from harness.writers import write_all

KEYS = 1_000_000
#: keys per transaction giving them their deadline (one log entry each)
PER_TRANSACTION = 1000


def deadlines(keys: int, deadline_ms: int) -> Iterator[tuple[Arg, ...]]:
    """MULTI, a PEXPIREAT per key, EXEC: `PER_TRANSACTION` keys per transaction."""
    for start in range(0, keys, PER_TRANSACTION):
        yield ("MULTI",)
        for i in range(start, min(start + PER_TRANSACTION, keys)):
            yield ("PEXPIREAT", key(i), deadline_ms)
        yield ("EXEC",)


def give_deadline(leader: Node, keys: int, deadline_ms: int) -> None:
    with leader.client(timeout=120.0) as client:
        requests = list(deadlines(keys, deadline_ms))
        for start in range(0, len(requests), 20 * (PER_TRANSACTION + 2)):
            group = requests[start : start + 20 * (PER_TRANSACTION + 2)]
            for request, reply in zip(group, client.pipeline(*group), strict=True):
                if request[0] == "EXEC":
                    assert reply == [1] * PER_TRANSACTION, reply


def dbsizes(cluster: ProcessCluster) -> list[object]:
    return [node.call("DBSIZE", timeout=30.0) for node in cluster.running]


@pytest.mark.slow
@pytest.mark.processes
def test_a_million_keys_with_one_deadline_go_without_an_election() -> None:
    with running_cluster(3) as cluster:
        leader = cluster.wait_for_leader()
        loading = time.monotonic()
        write_all(leader, msets(KEYS), depth=4, timeout=120.0)
        # a deadline well after the load: the keys all wait for it with their deadline set
        deadline_ms = int(time.time() * 1000) + 150_000
        give_deadline(leader, KEYS, deadline_ms)
        loaded = time.monotonic() - loading
        left = deadline_ms / 1000 - time.time()
        assert left > 5, f"loading took {loaded:.0f} s: the deadline is too close to measure"
        cluster.wait_converged(timeout=120.0)
        before = terms(cluster)
        assert len(before) == 1
        assert leader.info("keyspace")["db0"].startswith(f"keys={KEYS},expires={KEYS},")
        pinger = Pinger(leader)
        pinger.start()
        time.sleep(max(0.0, deadline_ms / 1000 - time.time()))
        due = time.monotonic()
        wait_until(lambda: leader.call("DBSIZE", timeout=30.0) == 0, 300.0, "the keys go")
        on_leader = time.monotonic() - due
        wait_until(lambda: dbsizes(cluster) == [0, 0, 0], 120.0, "every node deletes them")
        everywhere = time.monotonic() - due
        pinger.stopping.set()
        pinger.join()
        after = terms(cluster)
        print(
            f"\n{KEYS} keys with one deadline (loaded in {loaded:.0f} s): gone from the "
            f"leader {on_leader:.1f} s after it, from every node after {everywhere:.1f} s; "
            f"longest PING wait on the leader meanwhile {pinger.longest * 1e3:.0f} ms; "
            f"terms before {sorted(before)}, after {sorted(after)}"
        )
        assert after == before
        assert cluster.wait_for_leader() is leader
