"""TLS: the contexts built from `[tls]`, mutual TLS between peers, TLS for clients.

Certificates are made for each test session with the `openssl` command in a temp dir: a
CA, one certificate per node signed by it (naming 127.0.0.1 and localhost), and for the
refusals a second CA with a node certificate of its own and a certificate of the right
CA that names another host. Without `openssl` the module is skipped.

Peer links are tested in process (TcpTransport on loopback, real time under deadlines);
the client listener in process for its handshake deadline, and with real `trioraft serve`
processes for real clients (redis-py, redis-cli) and the start-up errors.
"""

from __future__ import annotations

import logging
import shutil
import socket
import ssl
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace
from typing import cast

import attrs
import pytest
import redis
import trio
from harness.process_cluster import ProcessCluster, running_cluster
from harness.process_node import REPO, Node
from harness.resp_client import RespClient

from trioraft.core.messages import Heartbeat, Message, NodeId
from trioraft.kvstore.replicated import ReplicatedState
from trioraft.logs import LineFormatter
from trioraft.ops.config import TlsConfig, load_config, render_config
from trioraft.ops.tls import TlsContexts, TlsError, load_contexts
from trioraft.redis.limits import ClientLimits
from trioraft.redis.server import ClientServer
from trioraft.runtime.metrics import NodeMetrics
from trioraft.runtime.node import Node as RaftNode
from trioraft.transport import Payload, RpcUnavailable, TcpTransport

OPENSSL = shutil.which("openssl")
pytestmark = pytest.mark.skipif(
    OPENSSL is None, reason="the openssl command is needed to make test certificates"
)

TOKEN = "tls-test-token"
LOCAL = ("127.0.0.1", 0)
#: the bound on any single real-time wait: it only catches a hang (a handshake takes
#: milliseconds), so it allows for a machine whose cores are shared by several test runs
DEADLINE = 30.0
FAST_BACKOFF = (0.01, 0.1)


# ---- certificates -------------------------------------------------------------------


def openssl(folder: Path, *args: str) -> None:
    assert OPENSSL is not None
    subprocess.run([OPENSSL, *args], cwd=folder, check=True, capture_output=True)


def make_ca(folder: Path, name: str) -> tuple[Path, Path]:
    """A self-signed CA: (certificate, key)."""
    openssl(
        folder,
        "req",
        "-x509",
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:P-256",
        "-nodes",
        "-days",
        "2",
        "-subj",
        f"/CN={name}",
        "-addext",
        "basicConstraints=critical,CA:TRUE",
        "-addext",
        "keyUsage=critical,keyCertSign,cRLSign",
        "-keyout",
        f"{name}.key",
        "-out",
        f"{name}.pem",
    )
    return folder / f"{name}.pem", folder / f"{name}.key"


def make_cert(
    folder: Path,
    ca: tuple[Path, Path],
    name: str,
    san: str = "IP:127.0.0.1,DNS:localhost",
) -> tuple[Path, Path]:
    """A certificate for both TLS roles signed by `ca`: (certificate, key)."""
    (folder / f"{name}.ext").write_text(
        f"subjectAltName={san}\nextendedKeyUsage=serverAuth,clientAuth\nbasicConstraints=CA:FALSE\n"
    )
    openssl(
        folder,
        "req",
        "-new",
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:P-256",
        "-nodes",
        "-subj",
        f"/CN={name}",
        "-keyout",
        f"{name}.key",
        "-out",
        f"{name}.csr",
    )
    openssl(
        folder,
        "x509",
        "-req",
        "-in",
        f"{name}.csr",
        "-CA",
        str(ca[0]),
        "-CAkey",
        str(ca[1]),
        "-set_serial",
        str(abs(hash(name)) % 10**9 + 1),
        "-days",
        "2",
        "-extfile",
        f"{name}.ext",
        "-out",
        f"{name}.pem",
    )
    return folder / f"{name}.pem", folder / f"{name}.key"


@dataclass(frozen=True)
class Pki:
    folder: Path
    #: the cluster's CA certificate
    ca: Path
    #: n1..n3: certificates of the cluster's CA
    nodes: Mapping[str, TlsConfig]
    #: a certificate of another CA (it trusts the cluster's CA, to be refused only for
    #: its own certificate)
    stranger: TlsConfig
    #: a certificate of the cluster's CA that names another host than 127.0.0.1
    elsewhere: TlsConfig


@pytest.fixture(scope="session")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    folder = tmp_path_factory.mktemp("pki")
    ca = make_ca(folder, "ca")
    other_ca = make_ca(folder, "other-ca")

    def tls(cert: tuple[Path, Path]) -> TlsConfig:
        return TlsConfig(cert_file=cert[0], key_file=cert[1], ca_file=ca[0])

    nodes = {n: tls(make_cert(folder, ca, n)) for n in ("n1", "n2", "n3")}
    stranger = tls(make_cert(folder, other_ca, "stranger"))
    elsewhere = tls(make_cert(folder, ca, "elsewhere", san="DNS:elsewhere.invalid"))
    return Pki(folder, ca[0], nodes, stranger, elsewhere)


# ---- the contexts -------------------------------------------------------------------


def test_contexts_load_from_good_files(pki: Pki) -> None:
    contexts = load_contexts(pki.nodes["n1"])
    assert contexts.clients.verify_mode == ssl.CERT_NONE
    assert contexts.peers.accept.verify_mode == ssl.CERT_REQUIRED
    assert contexts.peers.connect.verify_mode == ssl.CERT_REQUIRED
    assert contexts.peers.connect.check_hostname


def bad_files(pki: Pki) -> dict[str, tuple[TlsConfig, str, str]]:
    """Ways to break a [tls] table: (table, key named, file named)."""
    good = pki.nodes["n1"]
    folder = pki.folder
    junk = folder / "junk.pem"
    junk.write_text("not a PEM file\n")
    missing = folder / "missing.pem"
    encrypted = folder / "encrypted.key"
    openssl(
        folder, "pkey", "-in", str(good.key_file), "-aes128", "-passout", "pass:x", "-out",
        str(encrypted),
    )  # fmt: skip
    n2_key = pki.nodes["n2"].key_file
    cert, key, ca = good.cert_file, good.key_file, good.ca_file
    return {
        "missing cert": (TlsConfig(missing, key, ca), "tls.cert_file", str(missing)),
        "junk cert": (TlsConfig(junk, key, ca), "tls.cert_file", str(junk)),
        "key as cert": (TlsConfig(key, key, ca), "tls.cert_file", str(key)),
        "missing key": (TlsConfig(cert, missing, ca), "tls.key_file", str(missing)),
        "junk key": (TlsConfig(cert, junk, ca), "tls.key_file", str(junk)),
        "other key": (TlsConfig(cert, n2_key, ca), "tls.key_file", str(n2_key)),
        "encrypted key": (TlsConfig(cert, encrypted, ca), "tls.key_file", str(encrypted)),
        "missing ca": (TlsConfig(cert, key, missing), "tls.ca_file", str(missing)),
        "junk ca": (TlsConfig(cert, key, junk), "tls.ca_file", str(junk)),
        "ca is a folder": (TlsConfig(cert, key, folder), "tls.ca_file", str(folder)),
    }


@pytest.mark.parametrize(
    "case",
    [
        "missing cert",
        "junk cert",
        "key as cert",
        "missing key",
        "junk key",
        "other key",
        "encrypted key",
        "missing ca",
        "junk ca",
        "ca is a folder",
    ],
)
def test_a_bad_file_is_one_line_naming_key_and_file(pki: Pki, case: str) -> None:
    tls, key, path = bad_files(pki)[case]
    with pytest.raises(TlsError) as caught:
        load_contexts(tls)
    message = str(caught.value)
    assert message.startswith(f"{key}: ")
    assert path in message
    assert "\n" not in message


def test_an_encrypted_key_is_refused_without_asking_for_a_passphrase(pki: Pki) -> None:
    tls, _, _ = bad_files(pki)["encrypted key"]
    with pytest.raises(TlsError, match="is encrypted"):
        load_contexts(tls)


# ---- peers --------------------------------------------------------------------------


async def echo_handler(src: NodeId, method: str, payload: Payload) -> Payload:
    return {"from": src, "method": method, "payload": payload}


def heartbeat(src: NodeId, dst: NodeId, seq: int = 0) -> Heartbeat:
    return Heartbeat(src=src, dst=dst, term=1, commit=0, seq=seq)


async def receive(transport: TcpTransport) -> Message:
    with trio.fail_after(DEADLINE):
        return await transport.incoming.receive()


@asynccontextmanager
async def peers(
    tls: Mapping[NodeId, TlsConfig | None],
) -> AsyncIterator[dict[NodeId, TcpTransport]]:
    """Transports on loopback, serving, each knowing all the others; a node given None
    speaks plain TCP."""
    transports = {
        node: TcpTransport(
            node,
            TOKEN,
            LOCAL,
            {},
            echo_handler,
            backoff=FAST_BACKOFF,
            connect_timeout=2.0,
            tls=load_contexts(files).peers if files is not None else None,
        )
        for node, files in tls.items()
    }
    async with trio.open_nursery() as nursery:
        addresses = {node: await nursery.start(t.serve) for node, t in transports.items()}
        for transport in transports.values():
            transport.set_peers(addresses)
        yield transports
        nursery.cancel_scope.cancel()


def logged(caplog: pytest.LogCaptureFixture, *texts: str) -> bool:
    """Whether a line as the daemon logs it contains all of `texts`."""
    line = LineFormatter(timestamps=False)
    return any(all(text in line.format(r) for text in texts) for r in caplog.records)


async def wait_logged(caplog: pytest.LogCaptureFixture, *texts: str) -> None:
    with trio.fail_after(DEADLINE):
        while not logged(caplog, *texts):
            await trio.sleep(0.01)


async def test_three_peers_talk_over_mutual_tls(pki: Pki) -> None:
    async with peers(pki.nodes) as nodes:
        for a in nodes.values():
            for b in nodes.values():
                if a is b:
                    continue
                a.send(heartbeat(a.node_id, b.node_id, seq=7))
                assert await receive(b) == heartbeat(a.node_id, b.node_id, seq=7)
                answer = await a.call(b.node_id, "echo", {"x": b"\x00\xff"}, timeout=DEADLINE)
                assert answer == {
                    "from": a.node_id,
                    "method": "echo",
                    "payload": {"x": b"\x00\xff"},
                }


async def test_the_token_handshake_still_runs_inside_tls(
    pki: Pki, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, "trioraft.transport")
    async with peers({"n1": pki.nodes["n1"]}) as nodes:
        n1 = nodes["n1"]
        wrong = TcpTransport(
            "n2", "another-token", LOCAL, {"n1": n1.listen_addr}, echo_handler,
            tls=load_contexts(pki.nodes["n2"]).peers,
        )  # fmt: skip
        n1.set_peers({"n2": ("127.0.0.1", 1)})
        async with trio.open_nursery() as nursery:
            await nursery.start(wrong.serve)
            with pytest.raises(RpcUnavailable, match="wrong cluster token"):
                await wrong.call("n1", "echo", {}, timeout=DEADLINE)
            nursery.cancel_scope.cancel()
    assert logged(caplog, "refused a peer connection", "wrong cluster token")


async def test_a_peer_with_a_certificate_of_another_ca_is_refused(
    pki: Pki, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, "trioraft.transport")
    async with peers({"n1": pki.nodes["n1"], "n2": pki.stranger, "n3": pki.nodes["n3"]}) as nodes:
        n1, n2, n3 = nodes["n1"], nodes["n2"], nodes["n3"]
        # n2 reaching n1: n1 refuses n2's certificate and closes the connection
        with pytest.raises(RpcUnavailable, match="trust this node's certificate"):
            await n2.call("n1", "echo", {}, timeout=DEADLINE)
        await wait_logged(caplog, "n1 refused a peer connection", "TLS: certificate")
        # n1 reaching n2: n1 does not trust n2's certificate
        with pytest.raises(RpcUnavailable, match="TLS: certificate rejected"):
            await n1.call("n2", "echo", {}, timeout=DEADLINE)
        assert n1.stats()["n2"].connected is False
        assert n2.stats()["n1"].connected is False
        # the good peers are untouched
        assert await n1.call("n3", "echo", 1, timeout=DEADLINE) == {
            "from": "n1",
            "method": "echo",
            "payload": 1,
        }
        n3.send(heartbeat("n3", "n1"))
        assert await receive(n1) == heartbeat("n3", "n1")


async def test_a_peer_certificate_must_name_the_host_connected_to(pki: Pki) -> None:
    async with peers({"n1": pki.nodes["n1"], "n2": pki.elsewhere}) as nodes:
        with pytest.raises(RpcUnavailable, match=r"Hostname mismatch|IP address mismatch"):
            await nodes["n1"].call("n2", "echo", {}, timeout=DEADLINE)
        # the other way round passes: the accepting side checks the chain, not a name
        assert (await nodes["n2"].call("n1", "echo", 2, timeout=DEADLINE))["payload"] == 2


async def test_plain_tcp_and_tls_peers_refuse_each_other(
    pki: Pki, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, "trioraft.transport")
    async with peers({"n1": pki.nodes["n1"], "n2": None, "n3": pki.nodes["n3"]}) as nodes:
        n1, n2, n3 = nodes["n1"], nodes["n2"], nodes["n3"]
        with pytest.raises(RpcUnavailable):
            await n2.call("n1", "echo", {}, timeout=DEADLINE)
        await wait_logged(caplog, "n1 refused a peer connection", "TLS:")
        with pytest.raises(RpcUnavailable, match="TLS"):
            await n1.call("n2", "echo", {}, timeout=DEADLINE)
        assert (await n3.call("n1", "echo", 3, timeout=DEADLINE))["payload"] == 3


async def test_a_silent_connection_to_the_peer_port_times_out(
    pki: Pki, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, "trioraft.transport")
    async with peers({"n1": pki.nodes["n1"], "n2": pki.nodes["n2"]}) as nodes:
        n1 = nodes["n1"]
        silent = await trio.open_tcp_stream(*n1.listen_addr)
        async with silent:
            # others get through while it hangs
            assert (await nodes["n2"].call("n1", "echo", 4, timeout=DEADLINE))["payload"] == 4
            await wait_logged(caplog, "refused a peer connection", "handshake timed out")
            with trio.fail_after(DEADLINE):
                assert await silent.receive_some() == b""


# ---- the client listener in process -------------------------------------------------


def handshake_only_server() -> ClientServer:
    """A ClientServer for tests that never get past the TLS handshake to a command, so
    the node behind it only needs an id and the counters a refused connection moves."""
    node = SimpleNamespace(id="n1", metrics=NodeMetrics())
    return ClientServer(cast(RaftNode, node), ReplicatedState(), ClientLimits())


@asynccontextmanager
async def client_listener(
    contexts: TlsContexts, handshake_timeout: float
) -> AsyncIterator[tuple[ClientServer, tuple[str, int]]]:
    server = handshake_only_server()
    async with trio.open_nursery() as nursery:
        address = await nursery.start(
            lambda task_status: server.serve(
                "127.0.0.1",
                0,
                ssl_context=contexts.clients,
                handshake_timeout=handshake_timeout,
                task_status=task_status,
            )
        )
        yield server, address
        nursery.cancel_scope.cancel()


async def test_a_tls_handshake_has_a_deadline_and_blocks_no_one(pki: Pki) -> None:
    contexts = load_contexts(pki.nodes["n1"])
    client_context = ssl.create_default_context(cafile=pki.ca)
    # long enough for the other client's handshake on a loaded machine (it must complete
    # within it too), short enough not to slow the test much
    async with client_listener(contexts, handshake_timeout=2.0) as (server, address):
        silent = await trio.open_tcp_stream(*address)
        async with silent:
            # a TLS client completes its handshake while the silent one holds its own
            other = trio.SSLStream(
                await trio.open_tcp_stream(*address), client_context, server_hostname="127.0.0.1"
            )
            with trio.fail_after(DEADLINE):
                await other.do_handshake()
            assert server.stats.connected == 2
            await trio.aclose_forcefully(other)
            with trio.fail_after(DEADLINE):
                assert await silent.receive_some() == b""
        with trio.fail_after(DEADLINE):
            while server.stats.connected:
                await trio.sleep(0.01)


async def test_plain_text_to_the_tls_client_port_is_disconnected(pki: Pki) -> None:
    contexts = load_contexts(pki.nodes["n1"])
    async with client_listener(contexts, handshake_timeout=DEADLINE) as (server, address):
        for request in (b"PING\r\n", b"*1\r\n$4\r\nPING\r\n", b"\x16\x03\x01\x00\x05hello"):
            plain = await trio.open_tcp_stream(*address)
            async with plain:
                await plain.send_all(request)
                received = b""
                with trio.fail_after(DEADLINE):
                    while chunk := await plain.receive_some():
                        received += chunk
                assert b"PONG" not in received
        with trio.fail_after(DEADLINE):
            while server.stats.connected:
                await trio.sleep(0.01)
        assert server.stats.connections_received == 3


# ---- real processes -----------------------------------------------------------------


@pytest.fixture(scope="module")
def tls_cluster(pki: Pki) -> Iterator[ProcessCluster]:
    with running_cluster(3, tls=pki.nodes) as cluster:
        yield cluster


@pytest.fixture
def follower(tls_cluster: ProcessCluster) -> Node:
    return tls_cluster.followers()[0]


@pytest.mark.processes
def test_a_tls_cluster_elects_and_replicates(tls_cluster: ProcessCluster) -> None:
    leader = tls_cluster.wait_for_leader()
    follower, other = tls_cluster.followers()
    with follower.client() as client:
        assert client.call("SET", "tls:k", "v") == "OK"
    with other.client() as client:
        assert client.call("GET", "tls:k") == b"v"
    assert leader.info()["members"] == "n1,n2,n3"


@pytest.mark.processes
def test_redis_py_with_ssl(tls_cluster: ProcessCluster, follower: Node, pki: Pki) -> None:
    for node in tls_cluster.nodes:
        client = redis.Redis(
            port=node.client_port,
            ssl=True,
            ssl_ca_certs=str(pki.ca),
            socket_timeout=10,
        )
        with client:
            assert client.set(f"tls:py:{node.id}", node.id) is True
            assert client.incr(f"tls:py:n:{node.id}", 5) == 5
    with redis.Redis(port=follower.client_port, ssl=True, ssl_ca_certs=str(pki.ca)) as client:
        assert client.mget([f"tls:py:{n.id}" for n in tls_cluster.nodes]) == [
            n.id.encode() for n in tls_cluster.nodes
        ]


def redis_cli_speaks_tls() -> bool:
    cli = shutil.which("redis-cli")
    if cli is None:
        return False
    usage = subprocess.run([cli, "--help"], capture_output=True, text=True, check=False)
    return "--tls" in usage.stdout + usage.stderr


@pytest.mark.processes
@pytest.mark.skipif(not redis_cli_speaks_tls(), reason="no redis-cli built with TLS")
def test_redis_cli_with_tls(follower: Node, pki: Pki) -> None:
    def cli(*args: str) -> str:
        command = ["redis-cli", "--tls", "--cacert", str(pki.ca), "-p", str(follower.client_port)]
        done = subprocess.run([*command, *args], capture_output=True, text=True, timeout=20)
        assert done.returncode == 0, done.stderr
        return done.stdout.strip()

    assert cli("SET", "tls:cli", "hello world") == "OK"
    assert cli("GET", "tls:cli") == "hello world"
    assert cli("PING") == "PONG"


@pytest.mark.processes
def test_status_speaks_tls_with_a_ca_file(follower: Node, pki: Pki) -> None:
    address = f"127.0.0.1:{follower.client_port}"
    done = subprocess.run(
        [sys.executable, "-m", "trioraft", "status", address, "--cacert", str(pki.ca)],
        capture_output=True,
        text=True,
        timeout=30,
        cwd=REPO,
    )
    assert done.returncode == 0, done.stderr
    rows = done.stdout.splitlines()[1:]
    assert len(rows) == 3
    assert sum(" leader " in row for row in rows) == 1


@pytest.mark.processes
def test_a_plain_client_to_a_tls_node_is_dropped_and_the_node_serves_on(
    follower: Node,
) -> None:
    for _ in range(3):
        plain = RespClient(follower.client_port, timeout=10)
        with plain:
            plain.send_raw(b"PING\r\n")
            assert b"PONG" not in plain.read_until_closed()
    with socket.create_connection(("127.0.0.1", follower.client_port)):  # never says a word
        assert follower.call("PING") == "PONG"
        with follower.client() as client:
            assert client.call("SET", "tls:after", "1") == "OK"
    assert follower.running


@pytest.mark.processes
def test_a_bad_certificate_path_makes_serve_exit_1_naming_the_file(
    pki: Pki, tmp_path: Path
) -> None:
    with ProcessCluster.create(3, tls=pki.nodes) as cluster:
        config = load_config(cluster["n1"].config_path)
        assert config.tls is not None
        missing = tmp_path / "no-such-cert.pem"
        broken = attrs.evolve(config, tls=attrs.evolve(config.tls, cert_file=missing))
        cluster["n1"].config_path.write_text(render_config(broken))
        done = subprocess.run(
            [sys.executable, "-m", "trioraft", "serve", "--config", str(cluster["n1"].config_path)],
            cwd=REPO,
            capture_output=True,
            text=True,
            timeout=30,
        )
    assert done.returncode == 1
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert lines[0] == (
        f"trioraft serve: tls.cert_file: cannot read {missing}: No such file or directory"
    )
