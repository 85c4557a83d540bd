"""A durable node, as real processes: `trioraft serve` clusters that take writes anywhere,
survive kill -9, stop cleanly, refuse bad configs and damaged logs; and the `init`,
`cluster`, `status` and `check` commands around them (docs/operations.md)."""

from __future__ import annotations

import contextlib
import os
import re
import select
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from harness.on_disk import WAL_HEADER_BYTES, wal_records
from harness.polling import wait_until
from harness.ports import free_port_range
from harness.process_cluster import ProcessCluster, running_cluster
from harness.process_node import EXIT_SECONDS, REPO, Node
from harness.resp_client import RespClient
from harness.writers import BackgroundWriter

pytestmark = pytest.mark.processes


def trioraft(*args: str, timeout: float = 30.0) -> subprocess.CompletedProcess[str]:
    """Run the command line to its end."""
    return subprocess.run(
        [sys.executable, "-m", "trioraft", *args],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def failure_lines(stderr: str, command: str) -> list[str]:
    """The lines the command itself printed on stderr (the node's log lines aside)."""
    return [line for line in stderr.splitlines() if line.startswith(f"trioraft {command}:")]


@pytest.fixture
def cluster() -> Iterator[ProcessCluster]:
    """A cluster of the test's own, to kill or stop."""
    with running_cluster(3) as started:
        yield started


def write_and_stop(node: Node) -> Node:
    """Have the (single) node take 50 writes, then stop it cleanly."""
    with node.client() as client:
        replies = client.pipeline(*[("SET", f"key{i}", f"value{i}") for i in range(50)])
    assert replies == ["OK"] * 50
    assert node.terminate() == 0
    return node


@pytest.fixture
def stopped_node() -> Iterator[Node]:
    """A stopped single node that took 50 writes: a data dir to inspect or damage."""
    with running_cluster(1) as single:
        yield write_and_stop(single.nodes[0])


# ---- a running cluster --------------------------------------------------------------


def test_inline_set_on_a_follower_is_read_on_every_node(shared_cluster: ProcessCluster) -> None:
    follower = shared_cluster.followers()[0]
    with socket.create_connection(("127.0.0.1", follower.client_port), timeout=10) as sock:
        sock.sendall(b"SET greeting hello\n")  # what `echo 'SET greeting hello' | nc` sends
        assert sock.recv(100) == b"+OK\r\n"
    for node in shared_cluster.nodes:
        assert node.call("GET", "greeting") == b"hello", node.id


def test_a_new_leader_serves_writes_after_kill_9_of_the_leader(cluster: ProcessCluster) -> None:
    old = cluster.wait_for_leader()
    survivor = cluster.followers()[0]
    old.kill()

    def write_accepted() -> bool:
        return survivor.call("SET", "after-failover", "1", timeout=2) == "OK"

    wait_until(write_accepted, 15, "a write accepted after the leader was killed")
    assert cluster.wait_for_leader() is not old
    for node in cluster.running:
        assert node.call("GET", "after-failover") == b"1", node.id


def readonly_get(node: Node, key: str) -> bytes | None:
    """GET from the node's own replica (READONLY), so a lagging node shows its lag."""
    with node.client(timeout=2) as client:
        assert client.call("READONLY") == "OK"
        value = client.call("GET", key)
    assert value is None or isinstance(value, bytes)
    return value


def test_a_restarted_node_catches_up(cluster: ProcessCluster) -> None:
    lagging = cluster.followers()[0]
    lagging.kill()
    writer = cluster.wait_for_leader()
    assert writer.call("SET", "while-down", "1") == "OK"
    lagging.restart()
    wait_until(
        lambda: readonly_get(lagging, "while-down") == b"1",
        15,
        "the restarted node has the write it missed",
        describe=cluster.log_tails,
    )


def test_a_paused_leader_is_replaced_and_rejoins_as_follower(cluster: ProcessCluster) -> None:
    old = cluster.wait_for_leader()
    old.pause()  # SIGSTOP: the process lives on but says nothing
    new = cluster.wait_for_leader()
    assert new is not old
    assert new.call("SET", "while-paused", "1") == "OK"
    old.resume()
    wait_until(
        lambda: old.info()["role"] == "follower" and readonly_get(old, "while-paused") == b"1",
        15,
        "the resumed old leader follows and has the write it missed",
        describe=cluster.log_tails,
    )


def test_acknowledged_writes_survive_kill_9_of_every_node(cluster: ProcessCluster) -> None:
    follower = cluster.followers()[0]
    with BackgroundWriter(follower.client_port, "durable:") as writer:
        writer.wait_acked(150)
        cluster.kill_all()  # mid-write: the writer's last request gets no answer
    acked = writer.acked
    cluster.start_all()
    cluster.wait_for_leader()
    keys = [f"durable:{number}" for number in acked]
    for node in cluster.nodes:
        assert node.call("MGET", *keys) == [str(number).encode() for number in acked], node.id


def test_sigterm_stops_every_node_with_status_0(cluster: ProcessCluster) -> None:
    assert cluster.followers()[0].call("SET", "before-stop", "1") == "OK"
    for node in cluster.nodes:
        node.signal(signal.SIGTERM)
    assert [node.process.wait(EXIT_SECONDS) for node in cluster.nodes if node.process] == [0] * 3


# ---- configuration and start-up failures --------------------------------------------


@pytest.fixture
def unstarted() -> Iterator[Node]:
    with ProcessCluster.create(1) as fresh:
        yield fresh.nodes[0]


@pytest.mark.parametrize(
    ("old", "new", "problem"),
    [
        (
            "heartbeat_ms = 50",
            "heartbeet_ms = 50",
            "raft.heartbeet_ms: unknown key (did you mean heartbeat_ms?)",
        ),
        (
            "heartbeat_ms = 50",
            'heartbeat_ms = "fast"',
            'raft.heartbeat_ms: expected an integer, got "fast"',
        ),
    ],
    ids=["misspelt-key", "wrong-type"],
)
def test_a_broken_config_exits_2_naming_the_key_path(
    unstarted: Node, old: str, new: str, problem: str
) -> None:
    text = unstarted.config_path.read_text()
    assert old in text
    unstarted.config_path.write_text(text.replace(old, new))
    result = trioraft("serve", "--config", str(unstarted.config_path))
    assert result.returncode == 2
    assert result.stderr == f"trioraft serve: {unstarted.config_path}: {problem}\n"


def test_a_client_port_in_use_exits_1_with_one_line(unstarted: Node) -> None:
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", unstarted.client_port))
        squatter.listen()
        result = trioraft("serve", "--config", str(unstarted.config_path))
    assert result.returncode == 1
    assert failure_lines(result.stderr, "serve") == [
        f"trioraft serve: cannot listen on client_addr "
        f"127.0.0.1:{unstarted.client_port}: address already in use"
    ]
    assert "Traceback" not in result.stderr


# ---- the data dir -------------------------------------------------------------------


def test_a_half_written_last_record_is_cut_with_a_warning(stopped_node: Node) -> None:
    segment = stopped_node.wal_segments()[-1]
    offset, length = wal_records(segment)[-1]
    os.truncate(segment, offset + (WAL_HEADER_BYTES + length) // 2)
    stopped_node.start()
    stopped_node.wait_serving()
    warnings = [line for line in stopped_node.log_text().splitlines() if " WARNING " in line]
    assert any(segment.name in line and "torn" in line for line in warnings), warnings
    assert stopped_node.call("GET", "key0") == b"value0"


@pytest.fixture(scope="module")
def damaged() -> Iterator[tuple[Node, Path, int]]:
    """A stopped node with one byte flipped in the payload of the middle record of its last
    WAL segment; yields the node, the segment and the damaged record's offset."""
    with running_cluster(1) as single:
        node = write_and_stop(single.nodes[0])
        segment = node.wal_segments()[-1]
        records = wal_records(segment)
        assert len(records) >= 10
        offset, length = records[len(records) // 2]
        data = bytearray(segment.read_bytes())
        data[offset + WAL_HEADER_BYTES + length // 2] ^= 0xFF
        segment.write_bytes(bytes(data))
        yield node, segment, offset


def test_a_flipped_byte_mid_wal_stops_serve_naming_file_and_offset(
    damaged: tuple[Node, Path, int],
) -> None:
    node, segment, offset = damaged
    result = trioraft("serve", "--config", str(node.config_path))
    assert result.returncode == 1
    [line] = failure_lines(result.stderr, "serve")
    assert f"{segment}: damaged record at byte offset {offset}" in line
    assert "Traceback" not in result.stderr


def test_check_names_file_and_offset_of_a_flipped_byte(damaged: tuple[Node, Path, int]) -> None:
    node, segment, offset = damaged
    result = trioraft("check", str(node.data_dir))
    assert result.returncode == 1
    assert result.stdout == ""
    assert result.stderr.startswith(
        f"trioraft check: {segment}: damaged record at byte offset {offset}:"
    )
    assert len(result.stderr.splitlines()) == 1


def test_check_on_a_clean_data_dir_exits_0_with_a_summary(stopped_node: Node) -> None:
    result = trioraft("check", str(stopped_node.data_dir))
    assert (result.returncode, result.stderr) == (0, "")
    summary = result.stdout.splitlines()[-1]
    assert summary.startswith(f"{stopped_node.data_dir}: intact")
    assert "snapshot index" in summary
    found = re.search(r"\blog (\d+)\.\.(\d+), (\d+) entries\b", summary)
    assert found, summary
    first, last, entries = map(int, found.groups())
    assert entries == last - first + 1
    assert entries >= 50  # the 50 SETs, and whatever entries the leader added itself


# ---- status, init and cluster -------------------------------------------------------


def test_status_prints_one_row_per_member(shared_cluster: ProcessCluster) -> None:
    leader = shared_cluster.wait_for_leader()
    result = trioraft("status", f"127.0.0.1:{shared_cluster.nodes[0].client_port}")
    assert (result.returncode, result.stderr) == (0, "")
    header, *rows = result.stdout.splitlines()
    assert header.split()[:2] == ["ID", "ROLE"]
    assert "REACHABLE" in header
    assert [row.split()[0] for row in rows] == ["n1", "n2", "n3"]
    roles = {row.split()[0]: row.split()[1] for row in rows}
    nodes = shared_cluster.nodes
    assert roles == {node.id: "leader" if node is leader else "follower" for node in nodes}
    assert all(row.split()[-1] == "yes" for row in rows)


def _read_until(proc: subprocess.Popen[bytes], marker: bytes, timeout: float) -> bytes:
    """What `proc` printed on stdout until `marker` appeared in it."""
    assert proc.stdout is not None
    fd = proc.stdout.fileno()
    seen = b""
    deadline = time.monotonic() + timeout
    while marker not in seen:
        left = deadline - time.monotonic()
        if left <= 0 or not select.select([fd], [], [], left)[0]:
            raise TimeoutError(f"{marker!r} not printed within {timeout} s; got {seen!r}")
        chunk = os.read(fd, 65536)
        if not chunk:
            raise AssertionError(f"stdout closed before {marker!r}; got {seen!r}")
        seen += chunk
    return seen


def _kill_nodes_of(data_root: Path) -> None:
    """kill -9 any node still holding a data dir under `data_root` (its pid is in the
    dir's lock file), should the quick start have left one behind."""
    for lock in data_root.glob("*/lock"):
        with contextlib.suppress(ValueError, OSError):
            pid = int(lock.read_text().strip())
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
            if b"trioraft" in cmdline and str(data_root.parent).encode() in cmdline:
                os.kill(pid, signal.SIGKILL)


@pytest.fixture
def temp_dir() -> Iterator[Path]:
    with tempfile.TemporaryDirectory(prefix="trioraft-test-") as name:
        yield Path(name)


def test_init_then_cluster_runs_until_ctrl_c(temp_dir: Path) -> None:
    conf = temp_dir / "conf"
    base = free_port_range(6)
    options = ["--out", str(conf), "--nodes", "3"]
    options += ["--client-port", str(base), "--peer-port", str(base + 3)]
    init = trioraft("init", *options)
    assert (init.returncode, init.stderr) == (0, "")
    proc = subprocess.Popen(
        [sys.executable, "-m", "trioraft", "cluster", *options],
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
    )
    try:
        printed = _read_until(proc, b"Ctrl-C stops", 30)
        for port in range(base, base + 3):
            assert f"127.0.0.1:{port}".encode() in printed

        def answers() -> bool:
            with RespClient(base, timeout=2) as client:
                return client.call("SET", "quick", "start") == "OK"

        wait_until(answers, 20, "the quick-start cluster takes a write")
        proc.send_signal(signal.SIGINT)
        assert proc.wait(EXIT_SECONDS) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        _kill_nodes_of(conf / "data")
        if proc.stdout is not None:
            proc.stdout.close()


def _answers(port: int) -> bool:
    with RespClient(port, timeout=2) as client:
        return client.call("SET", "quick", "start") == "OK"


def _quick_start(*options: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "trioraft", "cluster", *options],
        cwd=REPO,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
    )


def _stop_quick_start(proc: subprocess.Popen[bytes], data_root: Path) -> None:
    if proc.poll() is None:
        proc.kill()
        proc.wait()
    _kill_nodes_of(data_root)
    for stream in (proc.stdin, proc.stdout):
        if stream is not None:
            stream.close()


def test_cluster_reports_a_dead_node_keeps_serving_and_restarts_it_on_enter(
    temp_dir: Path,
) -> None:
    conf = temp_dir / "conf"
    base = free_port_range(6)
    proc = _quick_start(
        "--out", str(conf), "--client-port", str(base), "--peer-port", str(base + 3)
    )
    try:
        _read_until(proc, b"Ctrl-C stops", 30)
        wait_until(lambda: _answers(base), 20, "the quick-start cluster takes a write")
        os.kill(int((conf / "data" / "n1" / "lock").read_text()), signal.SIGKILL)
        _read_until(proc, b"n1 was killed by SIGKILL", 20)
        wait_until(lambda: _answers(base + 1), 20, "the other nodes take writes")
        assert proc.poll() is None
        assert proc.stdin is not None
        proc.stdin.write(b"\n")
        proc.stdin.flush()
        _read_until(proc, b"restarted n1", 10)
        wait_until(lambda: _answers(base), 20, "the restarted node takes a write")
        proc.send_signal(signal.SIGINT)
        assert proc.wait(EXIT_SECONDS) == 0
    finally:
        _stop_quick_start(proc, conf / "data")


def test_cluster_never_overwrites_configs_and_says_what_it_ignores(temp_dir: Path) -> None:
    conf = temp_dir / "conf"
    base = free_port_range(6)
    ports = ["--client-port", str(base), "--peer-port", str(base + 3)]
    assert trioraft("init", "--out", str(conf), "--nodes", "3", *ports).returncode == 0
    written = {path.name: path.read_text() for path in conf.glob("*.toml")}
    proc = _quick_start("--out", str(conf), "--nodes", "5", "--client-port", "9001")
    try:
        printed = _read_until(proc, b"Ctrl-C stops", 30)
        assert b"--nodes, --client-port ignored" in printed
        assert f"delete {conf}".encode() in printed  # how to start afresh
        wait_until(lambda: _answers(base), 20, "the existing cluster takes a write")
        proc.send_signal(signal.SIGINT)
        assert proc.wait(EXIT_SECONDS) == 0
    finally:
        _stop_quick_start(proc, conf / "data")
    # --force would give the nodes a new token, which their data dirs refuse
    forced = trioraft("cluster", "--out", str(conf), "--force", *ports)
    assert forced.returncode == 2
    assert forced.stderr.startswith(f"trioraft cluster: {conf}/data/n1 holds the data of ")
    assert {path.name: path.read_text() for path in conf.glob("*.toml")} == written


def test_cluster_refuses_an_incomplete_set_of_configs(temp_dir: Path) -> None:
    conf = temp_dir / "conf"
    assert trioraft("init", "--out", str(conf), "--nodes", "3").returncode == 0
    (conf / "n2.toml").unlink()
    result = trioraft("cluster", "--out", str(conf))
    assert result.returncode == 2
    assert result.stderr.startswith(f"trioraft cluster: {conf}/n1.toml names members whose ")
    assert not (conf / "data").exists()
