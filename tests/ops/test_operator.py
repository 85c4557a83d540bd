"""The operator's side of `trioraft serve`, as real processes: the exit statuses a
supervisor acts on, READY=1 only once every start check passed, private file modes,
and one-line errors for addresses that cannot be resolved or bound."""

from __future__ import annotations

import re
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import attrs
import pytest
from harness.on_disk import WAL_HEADER_BYTES, wal_records
from harness.polling import wait_until
from harness.process_cluster import ProcessCluster, running_cluster
from harness.process_node import START_SECONDS, Node, run_cli
from harness.systemd_unit import REFUSED, NotifySocket, start_as_unit

from trioraft.ops.config import load_config, render_config
from trioraft.transport.addresses import HostPort

pytestmark = pytest.mark.processes


@pytest.fixture
def notify_socket() -> Iterator[NotifySocket]:
    with tempfile.TemporaryDirectory(prefix="trioraft-notify-") as folder:
        receiver = NotifySocket(Path(folder))
        try:
            yield receiver
        finally:
            receiver.close()


def last_line(node: Node) -> str:
    return node.log_text().rstrip().splitlines()[-1]


# ---- exit statuses ------------------------------------------------------------------


def test_a_damaged_wal_is_a_refusal_the_unit_does_not_restart() -> None:
    with running_cluster(1) as single:
        node = single.nodes[0]
        with node.client() as client:
            replies = client.pipeline(*[("SET", f"key{i}", f"value{i}") for i in range(20)])
        assert replies == ["OK"] * 20
        assert node.terminate() == 0
        segment = node.wal_segments()[-1]
        records = wal_records(segment)
        offset, length = records[len(records) // 2]  # damage before the tail: not torn
        data = bytearray(segment.read_bytes())
        data[offset + WAL_HEADER_BYTES + length // 2] ^= 0xFF
        segment.write_bytes(bytes(data))
        assert start_as_unit(node).wait(START_SECONDS) == REFUSED
        assert f"{segment}: damaged record at byte offset {offset}" in last_line(node)


def test_a_held_lock_may_pass_and_exits_1_even_for_the_unit() -> None:
    with running_cluster(1) as single:
        node = single.nodes[0]
        first = node.process
        second = start_as_unit(node)
        assert second.wait(START_SECONDS) == 1
        assert "data dir is in use by another process" in last_line(node)
        node.process = first


# ---- READY ----------------------------------------------------------------------------


def test_ready_waits_until_a_majority_accepted_the_data_dir(notify_socket: NotifySocket) -> None:
    with ProcessCluster.create(3) as cluster:
        first, second, _ = cluster.nodes
        start_as_unit(first, notify_socket)
        first.wait_serving()  # it listens already...
        wait_until(lambda: "serving" in first.log_text(), START_SECONDS, "serving logged")
        assert "READY=1" not in notify_socket.drain()  # ...but no peer confirmed its data dir
        second.start()
        wait_until(
            lambda: "READY=1" in notify_socket.drain(),
            START_SECONDS,
            "READY=1 once a majority runs",
            describe=cluster.log_tails,
        )
        assert "ready: every start check passed" in first.log_text()


def test_a_wiped_node_never_says_ready_and_exits_with_the_refusal_status(
    notify_socket: NotifySocket,
) -> None:
    with running_cluster(3) as cluster:
        wait_until(
            lambda: all("incarnation registered" in n.log_text() for n in cluster.nodes),
            START_SECONDS,
            "every node registered its incarnation",
            describe=cluster.log_tails,
        )
        victim = cluster.followers()[0]
        assert victim.terminate() == 0
        shutil.rmtree(victim.data_dir)
        assert start_as_unit(victim, notify_socket).wait(30.0) == REFUSED
        assert "was part of this cluster with another data dir" in last_line(victim)
        assert "READY=1" not in notify_socket.drain()


def test_the_watchdog_pings_and_the_status_says_role_and_term(
    notify_socket: NotifySocket,
) -> None:
    with ProcessCluster.create(1) as single:
        node = single.nodes[0]
        start_as_unit(node, notify_socket, watchdog_usec=200_000)  # a ping every 0.1 s
        wait_until(
            lambda: notify_socket.drain().count("WATCHDOG=1") >= 3,
            START_SECONDS,
            "three watchdog pings",
            describe=node.log_tail,
        )
        wait_until(
            lambda: any(re.fullmatch(r"STATUS=leader, term \d+", m) for m in notify_socket.drain()),
            START_SECONDS,
            "STATUS= saying leader and its term",
            describe=lambda: str(notify_socket.drain()),
        )
        assert node.terminate() == 0
    statuses = [m for m in notify_socket.drain() if m.startswith("STATUS=")]
    assert len(statuses) == len(set(statuses))  # said only when it changed


# ---- file modes -----------------------------------------------------------------------


def test_the_data_dir_is_private_to_its_owner() -> None:
    with running_cluster(1, raft={"snapshot_entries": 10}) as single:
        node = single.nodes[0]
        with node.client() as client:
            replies = client.pipeline(*[("SET", f"key{i}", f"value{i}") for i in range(30)])
        assert replies == ["OK"] * 30
        wait_until(node.snapshot_files, START_SECONDS, "a snapshot taken")
        assert node.terminate() == 0
        modes = {
            str(path.relative_to(node.data_dir)): (path.stat().st_mode & 0o777, path.is_dir())
            for path in [node.data_dir, *node.data_dir.rglob("*")]
        }
    assert any(name.startswith("snap/") for name in modes), modes
    assert any(name.startswith("wal/") for name in modes), modes
    assert "identity.json" in modes
    wrong = {
        name: oct(mode)
        for name, (mode, is_dir) in modes.items()
        if mode != (0o700 if is_dir else 0o600)
    }
    assert wrong == {}


# ---- listen addresses -----------------------------------------------------------------


def with_peer_host(node: Node, host: str) -> None:
    """Rewrite `node`'s config so that it listens for peers at `host`, and is reached there."""
    config = load_config(node.config_path)
    address = HostPort(host, config.peer_addr.port)
    members = tuple(
        attrs.evolve(m, peer_addr=address) if m.id == config.node_id else m for m in config.members
    )
    node.config_path.write_text(
        render_config(attrs.evolve(config, peer_addr=address, members=members))
    )


@pytest.mark.parametrize(
    ("host", "reason"),
    [
        ("no-such-host.invalid", "cannot resolve no-such-host.invalid: "),
        ("192.0.2.1", "192.0.2.1 is not an address of this host"),
    ],
    ids=["unresolvable", "not-local"],
)
def test_a_listen_address_that_cannot_be_used_names_the_key_and_address(
    host: str, reason: str
) -> None:
    with ProcessCluster.create(1) as fresh:
        node = fresh.nodes[0]
        with_peer_host(node, host)
        result = run_cli("serve", "--config", node.config_path, "--refusal-status", "3")
    assert result.returncode == 1  # may pass: DNS or an interface may come up later
    [line] = [line for line in result.stderr.splitlines() if line.startswith("trioraft serve:")]
    assert line.startswith(f"trioraft serve: cannot listen on peer_addr {host}:{node.peer_port}: ")
    assert reason in line
    assert "Traceback" not in result.stderr
