"""The operator's side of real nodes: /metrics parsed with prometheus_client's own parser
and moving with writes; JSON log lines that parse; `trioraft backup` from a follower under
a write load, and `trioraft restore` into a new 3-node cluster whose keyspace is exactly
the backup's; damaged and truncated backups refused with the offset of the damage, and
nothing written; /health turning 503 on a node cut off from its leader, and back.

One cluster (metrics on, JSON logs) serves every test, in this file's order."""

from __future__ import annotations

import contextlib
import io
import json
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import attrs
import pytest
from harness.polling import wait_until
from harness.ports import free_port_range, free_ports
from harness.process_cluster import ProcessCluster
from harness.process_node import START_SECONDS, Node
from harness.writers import BackgroundWriter, write_all
from prometheus_client.parser import text_string_to_metric_families

from trioraft.ops.backup import read_backup
from trioraft.ops.cli import main
from trioraft.ops.config import load_config, render_config
from trioraft.storage.snapshots import verify_snapshot
from trioraft.transport.addresses import HostPort

pytestmark = pytest.mark.processes


def run(*args: str | Path) -> tuple[int, str, str]:
    """`trioraft ARGS...` in this process (faster than a new one): status, out, err."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        status = main([str(arg) for arg in args])
    return status, out.getvalue(), err.getvalue()


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
def cluster() -> Iterator[tuple[ProcessCluster, dict[str, int]]]:
    """A running 3-node cluster with metrics on and JSON logs, and each node's metrics port."""
    with ProcessCluster.create(3, fsync=False) as created:
        ports = dict(zip([n.id for n in created.nodes], free_ports(3), strict=True))
        for node in created.nodes:
            config = load_config(node.config_path)
            node.config_path.write_text(
                render_config(
                    attrs.evolve(
                        config,
                        metrics_addr=HostPort("127.0.0.1", ports[node.id]),
                        log_format="json",
                    )
                )
            )
        created.start_all()
        created.wait_for_leader()
        yield created, ports


def test_metrics_parse_and_move_with_writes(cluster: tuple[ProcessCluster, dict[str, int]]) -> None:
    nodes, ports = cluster
    leader = nodes.wait_for_leader()
    follower = nodes.followers()[0]
    before = scrape(ports[leader.id])
    assert before[("trioraft_role", (("role", "leader"),))] == 1
    assert before[("trioraft_term", ())] >= 1
    assert before[("trioraft_peer_connected", (("peer", follower.id),))] == 1
    peer = (("peer", follower.id),)
    wait_until(
        lambda: scrape(ports[leader.id]).get(("trioraft_peer_reachable", peer)) == 1,
        START_SECONDS,
        "the leader's probe of a follower answered",
    )
    assert 0 < scrape(ports[leader.id])[("trioraft_peer_rtt_seconds", peer)] < START_SECONDS
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


def test_log_lines_are_json(cluster: tuple[ProcessCluster, dict[str, int]]) -> None:
    nodes, _ = cluster
    for node in nodes.nodes:
        lines = [json.loads(line) for line in node.log_text().splitlines()]
        assert {"time", "level", "node", "event", "fields"} <= set(lines[0])
        assert any(line["event"] == "serving" for line in lines)
        assert all(line["node"] == node.id for line in lines)


# ---- backup and restore ----


class Taken:
    """A backup taken while a writer kept writing, and what the writer saw."""

    def __init__(self, path: Path, acked_before: int, old_token: str) -> None:
        self.path = path
        #: writes acknowledged before the backup was asked for
        self.acked_before = acked_before
        self.old_token = old_token


@pytest.fixture(scope="module")
def taken(
    tmp_path_factory: pytest.TempPathFactory, cluster: tuple[ProcessCluster, dict[str, int]]
) -> Taken:
    """A backup of the shared cluster from a follower, taken while a client writes."""
    old, _ = cluster
    path = tmp_path_factory.mktemp("backup") / "cluster.backup"
    leader = old.wait_for_leader()
    follower = old.followers()[0]
    write_all(leader, (("SET", f"k{i}", f"v{i}") for i in range(300)))
    write_all(leader, [("SET", "with-ttl", "x", "EX", "1000"), ("SET", "bin\x00\xff", "\x01")])
    with BackgroundWriter(leader.client_port, "w:") as writer:
        writer.wait_acked(20)
        acked_before = len(writer.acked)
        status, out, err = run("backup", f"127.0.0.1:{follower.client_port}", "--out", path)
        writer.wait_acked(len(writer.acked) + 20)  # the cluster kept serving
    assert writer.failure is None
    assert status == 0, err
    assert out.startswith(f"wrote {path}: the state at index ")
    old_token = load_config(leader.config_path).cluster_token
    assert not path.with_name(path.name + ".tmp").exists()
    return Taken(path, acked_before, old_token)


def test_a_backup_under_writes_is_consistent(taken: Taken) -> None:
    _, state = read_backup(taken.path)
    keys = dict(state.store.items())
    written = sorted(int(key[2:]) for key in keys if key.startswith(b"w:"))
    # every write acknowledged before the backup, and a prefix of the writer's: no gap
    assert written == list(range(len(written)))
    assert len(written) >= taken.acked_before
    assert keys[b"k299"] == b"v299"


def restored_nodes(out: Path, client_port: int, peer_port: int) -> list[Node]:
    return [
        Node(
            id=f"n{k}",
            config_path=out / f"n{k}.toml",
            data_dir=out / "data" / f"n{k}",
            client_port=client_port + k - 1,
            peer_port=peer_port + k - 1,
            log_path=out / f"n{k}.log",
        )
        for k in (1, 2, 3)
    ]


def test_a_restored_cluster_holds_exactly_the_backups_keys(taken: Taken, tmp_path: Path) -> None:
    meta, state = read_backup(taken.path)
    expected = dict(state.store.items())
    base = free_port_range(6)
    out = tmp_path / "new"
    status, printed, err = run(
        "restore", taken.path, "--out", out, "--nodes", "3",
        "--client-port", base, "--peer-port", base + 3,
    )  # fmt: skip
    assert status == 0, err
    assert f"restored the state at index {meta.index} ({len(expected)} keys)" in printed
    nodes = restored_nodes(out, base, base + 3)
    for node in nodes:
        config = load_config(node.config_path)
        assert config.cluster_token != taken.old_token
        status, printed, err = run("check", node.data_dir)
        assert status == 0, err
        assert f"snapshot index {meta.index}" in printed
    with ProcessCluster(out, nodes) as new:
        new.start_all()
        leader = new.wait_for_leader()
        with leader.client() as client:
            keys = client.call("KEYS", "*")
            assert isinstance(keys, list)
            values = client.call("MGET", *keys)
            assert isinstance(values, list)
            restored = dict(zip(keys, values, strict=True))
            ttl = client.call("TTL", "with-ttl")
            assert client.call("SET", "after", "1") == "OK"
            assert client.call("RAFT.REVISION", "after") > meta.index  # type: ignore[operator]
    assert restored == expected
    assert isinstance(ttl, int) and 0 < ttl <= 1000


def refused(*args: str | Path) -> str:
    status, _, err = run(*args)
    assert status == 1
    [line] = err.splitlines()
    return line


def test_a_flipped_byte_is_refused_with_its_offset(taken: Taken, tmp_path: Path) -> None:
    data = bytearray(taken.path.read_bytes())
    damaged = tmp_path / "flipped.backup"
    data[-100] ^= 0x01
    damaged.write_bytes(bytes(data))
    out = tmp_path / "new"
    line = refused("restore", damaged, "--out", out, "--nodes", "3")
    assert line.startswith(f"trioraft restore: {damaged}: damaged snapshot at byte offset ")
    assert "data checksum mismatch" in line
    assert not out.exists()


def test_a_truncated_backup_is_refused_with_where_it_ends(taken: Taken, tmp_path: Path) -> None:
    data = taken.path.read_bytes()
    cut = tmp_path / "cut.backup"
    cut.write_bytes(data[: len(data) - 1000])
    out = tmp_path / "new"
    line = refused("restore", cut, "--out", out, "--nodes", "3")
    header = verify_snapshot(taken.path)
    kept = len(data) - 1000
    assert line == (
        f"trioraft restore: {cut}: damaged snapshot at byte offset {kept}: "
        f"the data ends after {kept - header.data_offset} of {header.size} bytes"
    )
    assert not out.exists()


# ---- health (last: it pauses nodes) ----


def test_health_turns_503_on_a_node_cut_off_from_its_leader_and_back(
    cluster: tuple[ProcessCluster, dict[str, int]],
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
