"""The operator's HTTP listener of real nodes: /metrics parsed with prometheus_client's
own parser and moving with writes, /health turning 503 on a node cut off from its leader
and back, /ready; and JSON log lines that parse."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from collections.abc import Iterator

import attrs
import pytest
from procs import START_SECONDS, Cluster, Node, free_ports, wait_until, write_all
from prometheus_client.parser import text_string_to_metric_families

from trioraft.config import Address, load_config, render_config

pytestmark = pytest.mark.processes


def get(port: int, path: str) -> tuple[int, str]:
    """The status and body of GET `path` on the node's metrics port."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as answer:
            return answer.status, answer.read().decode()
    except urllib.error.HTTPError as error:
        with error:
            return error.code, error.read().decode()


def scrape(port: int) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample of /metrics, by name and sorted labels."""
    status, text = get(port, "/metrics")
    assert status == 200
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


@pytest.fixture(scope="module")
def cluster() -> Iterator[tuple[Cluster, dict[str, int]]]:
    """A running 3-node cluster with metrics on and JSON logs, and each node's metrics port."""
    with Cluster.create(3) as created:
        ports = dict(zip([n.id for n in created.nodes], free_ports(3), strict=True))
        for node in created.nodes:
            config = load_config(node.config_path)
            node.config_path.write_text(
                render_config(
                    attrs.evolve(
                        config,
                        metrics_addr=Address("127.0.0.1", ports[node.id]),
                        log_format="json",
                    )
                )
            )
        created.start_all()
        created.wait_for_leader()
        yield created, ports


def test_metrics_parse_and_move_with_writes(cluster: tuple[Cluster, dict[str, int]]) -> None:
    nodes, ports = cluster
    leader = nodes.wait_for_leader()
    follower = nodes.followers()[0]
    before = scrape(ports[leader.id])
    assert before[("trioraft_role", (("role", "leader"),))] == 1
    assert before[("trioraft_term", ())] >= 1
    assert before[("trioraft_peer_connected", (("peer", follower.id),))] == 1
    before_follower = scrape(ports[follower.id])

    assert write_all(follower, (("SET", f"k{i}", "v") for i in range(50))) == 50
    assert str(leader.call("RAFT.SNAPSHOT")).startswith("OK")

    after = scrape(ports[leader.id])
    after_follower = scrape(ports[follower.id])
    applied = ("trioraft_proposals_total", (("outcome", "applied"),))
    assert after[applied] - before[applied] >= 50
    assert after[("trioraft_commit_index", ())] >= before[("trioraft_commit_index", ())] + 50
    fsyncs = ("trioraft_wal_fsync_duration_seconds_count", ())
    assert after[fsyncs] > before[fsyncs]
    assert after[("trioraft_snapshot_duration_seconds_count", (("stage", "taken"),))] >= 1
    forwarded = ("trioraft_forwarded_requests_total", ())
    assert after_follower[forwarded] - before_follower[forwarded] >= 50
    sets = ("trioraft_client_request_duration_seconds_count", (("command", "set"),))
    assert after_follower[sets] - before_follower.get(sets, 0) == 50
    assert after_follower[("trioraft_role", (("role", "follower"),))] == 1
    wait_until(
        lambda: (
            scrape(ports[follower.id])[("trioraft_applied_index", ())]
            >= after[("trioraft_commit_index", ())]
        ),
        START_SECONDS,
        "the follower applied the writes",
    )


def test_health_turns_503_on_a_node_cut_off_from_its_leader_and_back(
    cluster: tuple[Cluster, dict[str, int]],
) -> None:
    nodes, ports = cluster
    for node in nodes.nodes:
        assert get(ports[node.id], "/health") == (200, "ok\n")
        assert get(ports[node.id], "/ready") == (200, "ok\n")
    assert get(ports["n1"], "/nothing")[0] == 404
    leader = nodes.wait_for_leader()
    alone, other = nodes.followers()
    paused: list[Node] = [leader, other]
    for node in paused:
        node.pause()
    try:
        _, reason = wait_until(
            lambda: (answer := get(ports[alone.id], "/health"))[0] == 503 and answer,
            START_SECONDS,
            "/health 503 on the follower left alone",
            describe=nodes.log_tails,
        )
        assert reason.count("\n") == 1
        assert "leader" in reason
    finally:
        for node in paused:
            node.resume()
    wait_until(
        lambda: all(get(ports[n.id], "/health")[0] == 200 for n in nodes.nodes),
        START_SECONDS,
        "/health 200 everywhere again",
        describe=nodes.log_tails,
    )


def test_log_lines_are_json(cluster: tuple[Cluster, dict[str, int]]) -> None:
    nodes, _ = cluster
    for node in nodes.nodes:
        lines = [json.loads(line) for line in node.log_text().splitlines()]
        assert {"time", "level", "node", "event", "fields"} <= set(lines[0])
        assert any(line["event"] == "serving" for line in lines)
        assert all(line["node"] == node.id for line in lines)
