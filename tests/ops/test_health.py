"""/health, /ready and /metrics of in-memory nodes: the reasons a node is unhealthy, the
routes, and counters that move with what the node does."""

from __future__ import annotations

from pathlib import Path

import pytest
from harness.node_cluster import OK, open_cluster, wait_until, write
from prometheus_client.parser import text_string_to_metric_families
from trio.testing import MockClock, memory_stream_pair

from trioraft.ops.collector import instrument
from trioraft.ops.health import Endpoint, health, read_head
from trioraft.redis.limits import ClientLimits
from trioraft.redis.server import ClientServer


async def test_a_follower_cut_off_from_its_leader_is_unhealthy_until_it_hears_again(
    clock: MockClock, tmp_path: Path
) -> None:
    async with open_cluster(tmp_path) as cluster:
        leader = await cluster.wait_for_leader()
        await wait_until(lambda: all(health(node) is None for node in cluster.nodes), 5.0)
        follower = next(node for node in cluster.nodes if node is not leader)
        cluster.network.isolate(follower.id)
        await wait_until(lambda: health(follower) is not None, 5.0)
        reason = health(follower)
        assert reason is not None and "leader" in reason
        assert health(leader) is None  # the other follower still answers it
        cluster.network.heal()
        await wait_until(lambda: health(follower) is None, 10.0)


async def test_the_routes(clock: MockClock, tmp_path: Path) -> None:
    async with open_cluster(tmp_path, size=1) as cluster:
        node = await cluster.wait_for_leader()
        serving = False
        server = ClientServer(node, node.state, ClientLimits())
        endpoint = Endpoint(node, instrument(node, server), lambda: serving)
        assert endpoint.answer("GET", "/ready")[:1] == (503,)
        serving = True
        assert endpoint.answer("GET", "/ready?verbose") == (
            200,
            endpoint.answer("GET", "/health")[1],
            b"ok\n",
        )
        assert endpoint.answer("GET", "/nothing")[0] == 404
        assert endpoint.answer("POST", "/health")[0] == 405
        counted = node.metrics.leader_changes.value
        node.metrics.leader_changes.value = "broken"  # type: ignore[assignment]
        assert endpoint.answer_safely("GET", "/metrics")[0] == 500  # logged, not raised
        node.metrics.leader_changes.value = counted
        assert await write(node, b"k", b"v") == OK
        status, kind, body = endpoint.answer("GET", "/metrics")
        assert status == 200 and kind.startswith("text/plain; version=")
        samples = {
            (sample.name, tuple(sorted(sample.labels.items()))): sample.value
            for family in text_string_to_metric_families(body.decode())
            for sample in family.samples
        }
        assert samples[("trioraft_role", (("role", "leader"),))] == 1
        assert samples[("trioraft_proposals_total", (("outcome", "applied"),))] >= 1
        assert samples[("trioraft_leader_changes_total", ())] >= 1
        assert samples[("trioraft_wal_fsync_duration_seconds_count", ())] >= 1


@pytest.mark.parametrize(
    ("sent", "head"),
    [
        (b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n", ("GET", "/health")),
        (b"GET /metrics HTTP/1.0\n\n", ("GET", "/metrics")),
        (b"HELLO\r\n\r\n", None),
        (b"GET /health\r\n\r\n", None),
        (b"GET /" + b"x" * 10_000, None),
    ],
)
async def test_a_request_head_is_read_or_refused(sent: bytes, head: tuple[str, str] | None) -> None:
    client, server = memory_stream_pair()
    await client.send_all(sent)
    await client.send_eof()
    assert await read_head(server) == head
