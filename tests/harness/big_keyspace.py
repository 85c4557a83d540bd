"""A real cluster loaded with many keys, and a client that measures how long the leader
takes to answer meanwhile: for the tests that no step of a node's event loop grows with
the size of the keyspace."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator

from harness.process_cluster import ProcessCluster
from harness.process_node import Node
from harness.resp_client import Arg


def key(i: int) -> bytes:
    return b"key:%012d" % i


class Pinger(threading.Thread):
    """PINGs `node` back to back until stopped; the longest wait for an answer."""

    def __init__(self, node: Node) -> None:
        super().__init__(daemon=True)
        self.client = node.client(timeout=30.0)
        self.longest = 0.0
        self.stopping = threading.Event()

    def run(self) -> None:
        with self.client:
            while not self.stopping.is_set():
                started = time.monotonic()
                assert self.client.call("PING") == "PONG"
                self.longest = max(self.longest, time.monotonic() - started)


def msets(keys: int) -> Iterator[tuple[Arg, ...]]:
    """MSETs of 1000 keys each, `keys` keys in all."""
    for start in range(0, keys, 1000):
        args: list[Arg] = ["MSET"]
        for i in range(start, min(start + 1000, keys)):
            args += [key(i), b"v"]
        yield tuple(args)


def terms(cluster: ProcessCluster) -> set[str]:
    return {node.info()["term"] for node in cluster.running}
