"""Memory per key: a 3-node trioraft cluster (fsync on) and redis-server, side by side,
each loaded with the same keys (`key:<12 digits>`, 100-byte values by default) in
pipelined MSET batches; the resident set size (VmRSS) of every process before and after,
per key.

    PYTHONPATH=tests:. python tests/perf/memory.py [--keys N] [--value-size B]

redis-server runs without persistence (`--save "" --appendonly no`): what is measured is
the memory of its keyspace. trioraft's nodes run with the default snapshot policy, so
their figures include the log they keep in memory between snapshots; `--settle` waits
for every node to take a snapshot after the load (the log then holds only the entries
kept for followers that lag, see docs/performance.md) before the final reading.
"""

from __future__ import annotations

import argparse
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

from harness.process_cluster import ProcessCluster
from harness.redis_server import redis_server
from harness.writers import write_all

#: keys per MSET
BATCH = 100
#: MSETs in flight on the one connection
DEPTH = 16
START_SECONDS = 120.0


def rss_bytes(pid: int) -> int:
    """The resident set size of process `pid` (VmRSS)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise ValueError(f"process {pid} has no VmRSS")


def msets(keys: int, value_size: int) -> Iterator[tuple[bytes, ...]]:
    """MSETs of `BATCH` keys each, covering keys 0 .. keys-1."""
    value = b"v" * value_size
    for first in range(0, keys, BATCH):
        args: list[bytes] = [b"MSET"]
        for number in range(first, min(first + BATCH, keys)):
            args += [b"key:%012d" % number, value]
        yield tuple(args)


def load_redis(port: int, keys: int, value_size: int) -> None:
    """Load the keys into redis-server through redis-cli's pipe mode."""
    lines = bytearray()
    for args in msets(keys, value_size):
        lines += b"*%d\r\n" % len(args)
        for arg in args:
            lines += b"$%d\r\n%s\r\n" % (len(arg), arg)
    subprocess.run(
        ["redis-cli", "-p", str(port), "--pipe"],
        input=bytes(lines),
        capture_output=True,
        check=True,
    )


def per_key(before: int, after: int, keys: int) -> str:
    mib = 2**20
    grown = (after - before) / keys
    return f"{before / mib:8.1f} MiB -> {after / mib:8.1f} MiB  {grown:7.1f} B/key"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--keys", type=int, default=1_000_000)
    parser.add_argument("--value-size", type=int, default=100)
    parser.add_argument(
        "--settle",
        action="store_true",
        help="after the load, snapshot every node (RAFT.SNAPSHOT) before the final reading",
    )
    args = parser.parse_args()
    keys, value_size = args.keys, args.value_size
    print(f"load average before: {os.getloadavg()}", flush=True)
    results: dict[str, tuple[int, int]] = {}
    with redis_server("--save", "", "--appendonly", "no") as redis:
        if redis is not None:
            before = rss_bytes(redis.pid)
            load_redis(redis.port, keys, value_size)
            results["redis-server"] = (before, rss_bytes(redis.pid))
            print(f"redis-server    {per_key(*results['redis-server'], keys)}", flush=True)
        with ProcessCluster.create(3, fsync=True) as cluster:
            for node in cluster.nodes:
                node.start()
            for node in cluster.nodes:
                node.wait_serving(timeout=START_SECONDS)
            leader = cluster.wait_for_leader(timeout=START_SECONDS)
            befores = {node.id: rss_bytes(node.pid) for node in cluster.nodes}
            write_all(leader, msets(keys, value_size), depth=DEPTH, timeout=600.0)
            if args.settle:
                for node in cluster.nodes:
                    with node.client(600.0) as client:
                        client.call("RAFT.SNAPSHOT")
            for node in cluster.nodes:
                role = "leader" if node is leader else "follower"
                results[f"trioraft {node.id} ({role})"] = (befores[node.id], rss_bytes(node.pid))
    print(f"load average after: {os.getloadavg()}", flush=True)
    print(f"{keys:,} keys, {value_size}-byte values")
    for name, (before, after) in results.items():
        print(f"{name:<26} {per_key(before, after, keys)}")
    if "redis-server" in results:
        redis_before, redis_after = results["redis-server"]
        for name, (before, after) in results.items():
            ratio = (after - before) / (redis_after - redis_before)
            print(f"{name:<26} {ratio:.2f}x redis-server")


if __name__ == "__main__":
    main()
