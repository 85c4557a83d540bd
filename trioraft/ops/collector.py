"""What Prometheus reads of a node when it scrapes: the levels of the node and its client
server (`NodeCollector`), the peers' round trips (`probe_peers`), and the node's registry
(`instrument`) that health.py serves. The events counted as they happen are in
runtime/metrics.py.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any, Final

import trio
from prometheus_client import CollectorRegistry
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from trioraft.core.raft import Role
from trioraft.redis.server import ClientServer
from trioraft.runtime.metrics import NodeMetrics
from trioraft.runtime.node import Node
from trioraft.transport.errors import RpcError

#: how often each peer is asked for its status to measure the round trip
PROBE_SECONDS: Final = 5.0


async def probe_peers(node: Node[Any], metrics: NodeMetrics, every: float = PROBE_SECONDS) -> None:
    """Ask every peer for its status every `every` seconds, recording the round trip
    (or that it did not answer within `every`)."""

    async def probe(peer: str) -> None:
        started = time.perf_counter()
        try:
            await node.peer_status(peer, every)
        except RpcError:
            metrics.peer_answered(peer, None)
        else:
            metrics.peer_answered(peer, time.perf_counter() - started)

    while True:
        async with trio.open_nursery() as nursery:
            for peer in sorted(node.core.members.all - {node.id}):
                nursery.start_soon(probe, peer)
            await trio.sleep(every)


class NodeCollector(Collector):
    """The levels of a node and its client server, read at each scrape."""

    def __init__(self, node: Node[Any], server: ClientServer) -> None:
        self.node = node
        self.server = server

    def collect(self) -> Iterator[Metric]:
        node, core = self.node, self.node.core
        yield from node.metrics.collect()
        role = GaugeMetricFamily(
            "trioraft_role", "1 for the node's current role, 0 for the others", labels=["role"]
        )
        for each in Role:
            role.add_metric([each.value], 1 if core.role is each else 0)
        yield role
        levels = (
            ("trioraft_term", "The node's current term", core.term),
            ("trioraft_has_leader", "1 when the node knows a leader", core.leader_id is not None),
            ("trioraft_commit_index", "The highest log index known committed", core.commit),
            ("trioraft_applied_index", "The highest log index applied", node.applied),
            ("trioraft_last_log_index", "The last index in the node's log", core.log.last_index),
            (
                "trioraft_snapshot_index",
                "The index of the newest snapshot on disk (0: none)",
                node.snapshotter.index if node.snapshotter else 0,
            ),
        )
        for name, doc, value in levels:
            yield GaugeMetricFamily(name, doc, value=float(value))
        yield from self._peers()
        stats = self.server.stats
        yield GaugeMetricFamily(
            "trioraft_client_connections", "Client connections open", value=stats.connected
        )
        yield CounterMetricFamily(
            "trioraft_client_connections_accepted",
            "Client connections accepted since the node started",
            value=stats.connections_received,
        )

    def _peers(self) -> Iterator[Metric]:
        connected = GaugeMetricFamily(
            "trioraft_peer_connected", "1 while the link to the peer is up", labels=["peer"]
        )
        sent = CounterMetricFamily(
            "trioraft_peer_frames_sent", "Frames handed to the network for a peer", labels=["peer"]
        )
        dropped = CounterMetricFamily(
            "trioraft_peer_frames_dropped",
            "Frames for a peer discarded (queue full, peer unreachable)",
            labels=["peer"],
        )
        for peer, stats in sorted(self.node.transport.stats().items()):
            connected.add_metric([peer], 1 if stats.connected else 0)
            sent.add_metric([peer], stats.sent)
            dropped.add_metric([peer], stats.dropped)
        yield from (connected, sent, dropped)


def instrument(node: Node[Any], server: ClientServer) -> CollectorRegistry:
    """A registry of its own holding every metric of `node` and its client server."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(NodeCollector(node, server))
    return registry
