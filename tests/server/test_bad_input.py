"""Bad client input against a running node (docs/protocol.md, errors and limits): junk,
malformed RESP, oversized requests, slow and greedy clients, floods of connections.

Every test runs while another client keeps writing to the same node through its own
connection, and ends by checking that the writer was served throughout: no failed write,
no long stall, the node still up."""

from __future__ import annotations

import contextlib
import random
import resource
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from harness.polling import wait_until
from harness.process_cluster import ProcessCluster, running_cluster
from harness.process_node import Node
from harness.resp_client import Error, RespClient, encode_request
from harness.writers import BackgroundWriter

pytestmark = pytest.mark.processes

MIB = 1024 * 1024
#: the longest a writer may wait for one acknowledgement while a node is under attack, on
#: a quiet machine; on a loaded one, STALL_FACTOR times the longest wait the same writer
#: saw before the attack, when that is more (a real stall, such as a parser holding the
#: loop, lasts far longer than either)
LONGEST_STALL = 3.0
STALL_FACTOR = 4
#: acknowledgements a writer gets before the attack, to measure its pace on this machine
BASELINE_ACKS = 20


@pytest.fixture(scope="module")
def attack_cluster() -> Iterator[ProcessCluster]:
    with running_cluster(3) as cluster:
        yield cluster


@pytest.fixture(scope="module")
def target(attack_cluster: ProcessCluster) -> Node:
    """The node under attack: a follower when the module starts."""
    return attack_cluster.followers()[0]


class MeasuredWriter(BackgroundWriter):
    #: the longest gap between two acknowledgements before the test's mischief
    gap_before_attack = 0.0


def start_writer(node: Node, request: pytest.FixtureRequest) -> MeasuredWriter:
    writer = MeasuredWriter(node.client_port, f"writer:{request.node.name}:")
    writer.start()
    try:
        writer.wait_acked(5)
        writer.longest_gap = 0.0  # the first requests connect and find the leader
        writer.wait_acked(len(writer.acked) + BASELINE_ACKS)
    except BaseException:
        writer.stop()
        raise
    writer.gap_before_attack, writer.longest_gap = writer.longest_gap, 0.0
    return writer


@pytest.fixture
def writer(target: Node, request: pytest.FixtureRequest) -> Iterator[MeasuredWriter]:
    """A client writing to the target node all through the test."""
    running = start_writer(target, request)
    try:
        yield running
    finally:
        running.stop()


def assert_served_throughout(
    writer: MeasuredWriter, node: Node, stall: float = LONGEST_STALL
) -> None:
    """The writer got on: no failure, no wait longer than `stall` or than STALL_FACTOR
    times its longest before the attack, and the node still runs."""
    writer.wait_acked(len(writer.acked) + 20)
    assert writer.failure is None
    baseline = writer.gap_before_attack
    assert writer.longest_gap < max(stall, STALL_FACTOR * baseline), baseline
    assert node.running


def connect(node: Node, timeout: float = 10.0) -> socket.socket:
    return socket.create_connection(("127.0.0.1", node.client_port), timeout=timeout)


def read_until_closed(sock: socket.socket) -> bytes:
    """Everything the server sends until it closes (a reset counts as closing)."""
    data = b""
    while True:
        try:
            chunk = sock.recv(65536)
        except ConnectionResetError:
            return data
        if not chunk:
            return data
        data += chunk


# ---- junk ---------------------------------------------------------------------------


def test_a_junk_line_is_an_unknown_command_and_the_connection_lives(
    target: Node, writer: MeasuredWriter
) -> None:
    with target.client() as client:
        reply = client.inline(b"\x80\xff\x01junk\xfe more\x7f")
        assert isinstance(reply, Error)
        assert reply.text.startswith("ERR unknown command '")
        assert "junk" in reply.text
        assert client.call("PING") == "PONG"
    assert_served_throughout(writer, target)


def test_nul_bytes_are_ordinary_bytes(target: Node, writer: MeasuredWriter) -> None:
    with target.client() as client:
        assert client.inline(b"SET nul:inline a\x00b") == "OK"
        assert client.call("SET", b"nul:\x00key", b"\x00\x00") == "OK"
        assert client.call("GET", "nul:inline") == b"a\x00b"
        assert client.call("GET", b"nul:\x00key") == b"\x00\x00"
        assert client.call("GET", b"nul:") is None
    assert_served_throughout(writer, target)


@pytest.mark.parametrize("prefix", [b"", b"*", b"*3\r\n$"], ids=["inline", "star", "bulk"])
def test_random_bytes_do_not_hurt_the_node(
    target: Node, writer: MeasuredWriter, prefix: bytes
) -> None:
    junk = prefix + random.Random(prefix).randbytes(256 * 1024)
    with connect(target) as sock:
        with contextlib.suppress(OSError):  # the node may reset before it has all of it
            sock.sendall(junk)
            sock.shutdown(socket.SHUT_WR)
        replies = read_until_closed(sock)
    assert replies == b"" or replies.startswith((b"-ERR", b"+", b"$", b":", b"*"))
    assert_served_throughout(writer, target)


@pytest.mark.parametrize(
    ("request_bytes", "problem"),
    [
        (b"*-5\r\n", "invalid multibulk length"),
        (b"*99999999999\r\n", "invalid multibulk length"),
        (b"*1\r\n$99999999999\r\n", "invalid bulk length"),
        (b"*1\r\n$-3\r\n", "invalid bulk length"),
        (b"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$1048577\r\n", "invalid bulk length"),
        (b"*2\r\nxx\r\n", "expected '$', got 'x'"),
        (b"*1\r\n$3\r\nGETxx", "expected CRLF after bulk data"),
        (b'SET "unbalanced\r\n', "unbalanced quotes in request"),
    ],
    ids=[
        "negative-count",
        "absurd-count",
        "absurd-length",
        "negative-length",
        "over-max-value-bytes",
        "no-dollar",
        "no-crlf",
        "quotes",
    ],
)
def test_malformed_resp_is_a_protocol_error_then_the_connection_closes(
    target: Node, writer: MeasuredWriter, request_bytes: bytes, problem: str
) -> None:
    with connect(target) as sock:
        sock.sendall(b"PING\r\n" + request_bytes + b"PING\r\n")
        assert read_until_closed(sock) == b"+PONG\r\n-ERR Protocol error: %s\r\n" % (
            problem.encode()
        )
    assert_served_throughout(writer, target)


def test_a_value_of_max_value_bytes_is_accepted(target: Node, writer: MeasuredWriter) -> None:
    value = b"v" * MIB
    with target.client() as client:
        assert client.call("SET", "maxvalue:k", value) == "OK"
        assert client.call("GET", "maxvalue:k") == value
    assert_served_throughout(writer, target)


# ---- big, slow and greedy clients ---------------------------------------------------


def send_until_refused(sock: socket.socket, chunk: bytes, limit: int) -> int:
    """Send `chunk` again and again, at most `limit` bytes in all, until the server stops
    taking them (closes, resets); returns how many bytes were sent."""
    sent = 0
    try:
        while sent < limit:
            sock.sendall(chunk)
            sent += len(chunk)
    except OSError:
        pass
    return sent


def socket_buffers_max() -> int:
    """The most bytes the kernel may hold for one TCP connection: the sender's buffer and
    the receiver's (loopback carries them in memory), from the kernel's own limits."""
    limits = (Path("/proc/sys/net/ipv4/tcp_rmem"), Path("/proc/sys/net/ipv4/tcp_wmem"))
    return sum(int(path.read_text().split()[2]) for path in limits)


def test_a_100_mb_line_without_newline_is_cut_off_at_the_line_limit(
    target: Node, writer: MeasuredWriter
) -> None:
    """The node reads at most its 64 KiB line limit before it cuts the client off: the
    client gets no further than that plus what the sockets' buffers take (how long that
    takes depends on the machine's load, so it is not measured)."""
    before = target.rss_kib()
    with connect(target) as sock:
        sent = send_until_refused(sock, b"x" * MIB, 100 * MIB)
    assert sent <= 64 * 1024 + socket_buffers_max() + MIB  # MIB: the chunk in flight
    assert target.rss_kib() - before < 32 * 1024
    assert_served_throughout(writer, target)


def test_a_line_without_newline_gets_an_error(target: Node, writer: MeasuredWriter) -> None:
    with connect(target) as sock:
        sock.sendall(b"x" * (64 * 1024 + 1))
        assert read_until_closed(sock) == b"-ERR Protocol error: too big inline request\r\n"
    assert_served_throughout(writer, target)


def test_a_request_over_max_request_bytes_is_cut_off(target: Node, writer: MeasuredWriter) -> None:
    before = target.rss_kib()
    with connect(target) as sock:
        sock.sendall(b"*1000\r\n$4\r\nMSET\r\n")
        # each argument is within max_value_bytes; together they pass max_request_bytes
        sent = send_until_refused(sock, b"$%d\r\n%s\r\n" % (MIB, b"a" * MIB), 200 * MIB)
    assert sent < 100 * MIB
    assert target.rss_kib() - before < 64 * 1024
    assert_served_throughout(writer, target)


def test_clients_sending_a_byte_every_100_ms_are_served_and_hold_up_nobody(
    target: Node, writer: MeasuredWriter
) -> None:
    socks = [connect(target) for _ in range(20)]
    try:
        requests = [b"SET slow:%d v%d\r\n" % (i, i) for i in range(len(socks))]
        # the writer's pace alone, on this machine as loaded as it is now, over as long as
        # the slow clients will take: with them it must keep at least a quarter of it
        steps = max(len(r) for r in requests)
        alone = len(writer.acked)
        time.sleep(0.1 * steps)  # a measuring window, not a wait for a condition
        alone = len(writer.acked) - alone
        acked_before = len(writer.acked)
        for position in range(steps):
            for sock, request in zip(socks, requests, strict=True):
                if position < len(request):
                    sock.sendall(request[position : position + 1])
            time.sleep(0.1)  # the slow clients' pace, not a wait for a condition
        assert [sock.recv(100) for sock in socks] == [b"+OK\r\n"] * len(socks)
        beside_slow_clients = len(writer.acked) - acked_before
        assert beside_slow_clients >= max(alone / 4, 1), (alone, beside_slow_clients)
    finally:
        for sock in socks:
            sock.close()
    assert_served_throughout(writer, target)


def test_a_client_that_never_reads_its_replies_keeps_memory_bounded(
    target: Node, writer: MeasuredWriter
) -> None:
    assert target.call("SET", "greedy:big", b"g" * (256 * 1024)) == "OK"
    before = target.rss_kib()
    with connect(target, timeout=1.0) as sock:
        # every 12-byte request asks for a 256 KiB reply that is never read, until the
        # node stops reading requests (the send times out) or 50 MB of them went out
        sent = 0
        try:
            while sent < 50 * MIB:
                sock.sendall(b"GET greedy:big\r\n" * 4096)
                sent += 16 * 4096
        except TimeoutError:
            pass
        assert target.rss_kib() - before < 160 * 1024
        assert_served_throughout(writer, target)
        assert target.rss_kib() - before < 160 * 1024


def test_one_huge_mget_that_is_never_read_keeps_memory_bounded(
    target: Node, writer: MeasuredWriter
) -> None:
    assert target.call("SET", "hugemget:k", b"h" * (64 * 1024)) == "OK"
    before = target.rss_kib()
    with connect(target) as sock:
        # one 340 KB request asking for 20,000 copies of a 64 KiB value: 1.3 GB
        sock.sendall(encode_request("MGET", *["hugemget:k"] * 20_000))
        assert_served_throughout(writer, target)
        assert target.rss_kib() - before < 160 * 1024


def test_2000_connections_at_once_while_another_client_is_served(
    target: Node, writer: MeasuredWriter
) -> None:
    count = 2000
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and hard < count + 100:
        pytest.skip(f"RLIMIT_NOFILE hard limit {hard} is below {count + 100}")
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, count + 100), hard))
    socks: list[socket.socket] = []
    try:
        started = time.monotonic()
        for _ in range(count):
            socks.append(connect(target))
        for sock in socks:
            sock.sendall(b"PING\r\n")
        assert all(sock.recv(100) == b"+PONG\r\n" for sock in socks)
        crowd_seconds = time.monotonic() - started
        with target.client() as client:
            assert client.call("SET", "crowd:k", "v") == "OK"
    finally:
        for sock in socks:
            sock.close()
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
    # the crowd's work takes the node's loop for a while, the longer the less CPU it gets
    # (its answers took crowd_seconds): the writer must wait less than all of it, not be
    # queued behind the whole crowd
    assert_served_throughout(writer, target, stall=max(LONGEST_STALL, crowd_seconds))


# ---- configured limits: one node of its own -----------------------------------------

IDLE_TIMEOUT = 2


@pytest.fixture(scope="module")
def limited() -> Iterator[Node]:
    """A single node allowing 4 clients, closing connections idle for 2 s, and taking
    requests of at most 2 MiB."""
    limits = {"max_clients": 4, "idle_timeout_s": IDLE_TIMEOUT, "max_request_bytes": 2 * MIB}
    with running_cluster(1, limits=limits) as cluster:
        yield cluster.nodes[0]


@pytest.fixture
def limited_writer(limited: Node, request: pytest.FixtureRequest) -> Iterator[MeasuredWriter]:
    running = start_writer(limited, request)
    try:
        yield running
    finally:
        running.stop()


def test_a_client_past_max_clients_is_told_and_closed(
    limited: Node, limited_writer: MeasuredWriter
) -> None:
    clients = [RespClient(limited.client_port) for _ in range(3)]  # the writer is the 4th
    try:
        assert [client.call("PING") for client in clients] == ["PONG"] * 3
        with connect(limited) as refused:
            assert read_until_closed(refused) == b"-ERR max number of clients reached\r\n"
        clients.pop().close()

        def admitted() -> bool:
            with RespClient(limited.client_port, timeout=2) as client:
                return client.call("PING") == "PONG"

        wait_until(admitted, 10, "a client admitted once another left")
    finally:
        for client in clients:
            client.close()
    assert_served_throughout(limited_writer, limited)


def test_an_idle_connection_is_closed_after_the_idle_timeout(
    limited: Node, limited_writer: MeasuredWriter
) -> None:
    with connect(limited, timeout=IDLE_TIMEOUT + 10) as sock:
        sock.sendall(b"PING\r\n")
        assert sock.recv(100) == b"+PONG\r\n"
        quiet_since = time.monotonic()
        assert read_until_closed(sock) == b""
        assert time.monotonic() - quiet_since >= IDLE_TIMEOUT - 0.5
    assert_served_throughout(limited_writer, limited)


def test_the_configured_max_request_bytes_is_enforced(
    limited: Node, limited_writer: MeasuredWriter
) -> None:
    value = b"m" * MIB
    with connect(limited) as sock:
        # three values within max_value_bytes, 3 MiB together: over the configured 2 MiB
        request = b"*7\r\n$4\r\nMSET\r\n" + b"".join(
            b"$2\r\nk%d\r\n$%d\r\n%s\r\n" % (i, len(value), value) for i in range(3)
        )
        send_until_refused(sock, request, len(request))
        assert read_until_closed(sock) == b"-ERR Protocol error: too big request\r\n"
    assert_served_throughout(limited_writer, limited)
