"""Real `trioraft serve` processes for tests: a cluster harness and a tiny blocking RESP client.

Everything here is synchronous (plain sockets, `subprocess`), so it works from ordinary
pytest tests and fixtures and from helper threads.

    with Cluster.create(size=3) as cluster:      # configs and data dirs in a new temp dir
        cluster.start_all()
        leader = cluster.wait_for_leader()       # agreed on by every running node
        follower = cluster.followers()[0]
        with follower.client() as c:
            assert c.call("SET", "k", "v") == "OK"
        leader.kill()                            # kill -9; also pause()/resume(), terminate()
        cluster.wait_for_leader()
    # every process killed (even a paused one) and the temp dir removed, also on failure

What is here:

- `Cluster` (configs, start/kill/leader) and `Node` (one process: start, kill -9,
  terminate, pause/resume with SIGSTOP/SIGCONT, restart, INFO, RSS, log; on loopback by
  default, or at any `host` through a `launcher` such as `ip netns exec NS`); the
  `running_cluster` context manager for fixtures.
- `RespClient`, a blocking RESP2 client (`call`, `inline`, `pipeline`, `send_raw`), and
  `encode_request`, `parse_info`.
- `BackgroundWriter`, a thread that keeps writing and records what was acknowledged.
- `write_all` (many writes, pipelined), `dir_bytes` (disk use), `run_cli` (a `trioraft`
  command); `Node.snapshot_files`, `Cluster.wait_converged`.
- `wal_records`, the records of a WAL segment, for tests that damage one.
- `wait_until`, `free_ports`, `free_port_range`.

Rules:

- Ports are found by binding port 0 on 127.0.0.1, all at once so they differ. Another
  process can take a port between the check and the node's bind; the harness accepts
  that small race (a node that cannot listen exits 1 and `wait_serving` says so).
- Configs are written with the project's own config module (`cluster_configs` and
  `render_config`), so a test can set any `[raft]` or `[limits]` key, a password,
  `fsync` or a `[tls]` table per node. `Cluster.create(..., limits={"max_clients": 5})`.
  With `tls`, every client of the harness speaks TLS, trusting the node's `ca_file`.
- Each node writes its log (stderr and stdout) to `<root>/<id>.log`; the timeouts of the
  wait helpers put the tail of every log in their message.
- Waiting is polling with a deadline (`wait_until`), never a fixed sleep.
- Replies decode as: simple string -> `str`, error -> `Error`, integer -> `int`,
  bulk -> `bytes`, null -> `None`, array -> `list`. A test compares an error reply with
  `Error("ERR syntax error")`.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import TypeAlias, TypeVar

import attrs

from trioraft.closing import ClosedOnExit
from trioraft.ops.config import (
    Address,
    Config,
    Limits,
    Member,
    RaftSection,
    TlsConfig,
    cluster_configs,
    render_config,
)
from trioraft.redis import replies
from trioraft.redis.replies import ErrorReply, NullArray, SimpleString
from trioraft.redis.resp import RespProtocolError, decode_reply

HOST = "127.0.0.1"
#: the repository root: nodes run `python -m trioraft` from here, so an uninstalled
#: checkout works as well as an installed package
REPO = Path(__file__).resolve().parents[2]

#: how long a node may take to start serving clients: a cold Python start, CPU-bound, so
#: it scales with the load (on two cores at load average 46, `python -m trioraft --help`
#: alone took 6 s and nodes of the fault runs did not serve within 20 s); these bounds
#: cost nothing when the condition comes sooner
START_SECONDS = 60.0
#: how long a cluster may take to elect a leader that every node knows
ELECTION_SECONDS = 60.0
#: how long a node may take to exit after a signal
EXIT_SECONDS = 60.0
#: how long a writer may take for the writes a test waits for: one write at a time with
#: fsyncs on two nodes takes a few ms on quiet cores but over 100 ms at load average 30
ACK_SECONDS = 60.0

_T = TypeVar("_T")


# ---- waiting ------------------------------------------------------------------------


def wait_until(
    check: Callable[[], _T | None],
    timeout: float,
    what: str,
    interval: float = 0.02,
    describe: Callable[[], str] | None = None,
) -> _T:
    """Call `check` until it returns something other than None (or False), then return
    that; raise TimeoutError naming `what` (and `describe()`) after `timeout` seconds.
    Exceptions of `check` that are OSError count as "not yet"."""
    deadline = time.monotonic() + timeout
    last_error: OSError | None = None
    while True:
        try:
            result = check()
        except OSError as exc:
            last_error, result = exc, None
        if result is not None and result is not False:
            return result
        if time.monotonic() >= deadline:
            detail = f" (last error: {last_error})" if last_error else ""
            extra = f"\n{describe()}" if describe else ""
            raise TimeoutError(f"not within {timeout} s: {what}{detail}{extra}")
        time.sleep(interval)


# ---- ports --------------------------------------------------------------------------


def free_ports(count: int) -> list[int]:
    """`count` different TCP ports on 127.0.0.1 that were free a moment ago."""
    with contextlib.ExitStack() as stack:
        socks = [stack.enter_context(socket.socket()) for _ in range(count)]
        for sock in socks:
            sock.bind((HOST, 0))
        return [sock.getsockname()[1] for sock in socks]


def free_port_range(count: int, attempts: int = 100) -> int:
    """The first of `count` consecutive free ports (what `trioraft init --nodes` needs)."""
    for _ in range(attempts):
        base = free_ports(1)[0]
        if base + count > 65535:
            continue
        with contextlib.ExitStack() as stack:
            try:
                for port in range(base, base + count):
                    stack.enter_context(socket.socket()).bind((HOST, port))
            except OSError:
                continue
        return base
    raise RuntimeError(f"found no {count} consecutive free ports")


# ---- the RESP client ----------------------------------------------------------------


@dataclass(frozen=True)
class Error:
    """An error reply; `text` is the line without its leading '-'."""

    text: str


Reply: TypeAlias = "str | Error | int | bytes | list[Reply] | None"
Arg: TypeAlias = "str | bytes | int"


def _as_bytes(arg: Arg) -> bytes:
    if isinstance(arg, bytes):
        return arg
    return str(arg).encode()


def encode_request(*args: Arg) -> bytes:
    """A RESP2 multibulk request."""
    parts = [b"*%d\r\n" % len(args)]
    for arg in args:
        data = _as_bytes(arg)
        parts.append(b"$%d\r\n%s\r\n" % (len(data), data))
    return b"".join(parts)


def parse_reply(buf: bytes | bytearray, pos: int = 0) -> tuple[Reply, int] | None:
    """The reply starting at `pos` and the position after it, or None when `buf` does
    not hold all of it yet. ValueError for bytes that are no RESP2 reply."""
    try:
        decoded = decode_reply(buf, pos)
    except RespProtocolError as exc:
        raise ValueError(f"not a RESP2 reply: {exc}") from None
    if decoded is None:
        return None
    reply, after = decoded
    return _plain(reply), after


def _plain(reply: replies.Reply) -> Reply:
    """A decoded reply in the tests' terms: a simple string as `str`, an error as `Error`,
    a null array as None."""
    if isinstance(reply, SimpleString):
        return reply.text
    if isinstance(reply, ErrorReply):
        return Error(reply.text)
    if isinstance(reply, list):
        return [_plain(item) for item in reply]
    if isinstance(reply, NullArray):
        return None
    assert isinstance(reply, int | bytes | None), f"not a RESP2 reply: {reply!r}"
    return reply


class ConnectionClosed(ConnectionError):
    """The server closed the connection before a whole reply arrived."""


class RespClient(ClosedOnExit):
    """One blocking connection. `call` sends a request and reads its reply; `send` and
    `read` split the two for pipelining; `send_raw` sends any bytes at all."""

    def __init__(
        self,
        port: int,
        host: str = HOST,
        timeout: float = 10.0,
        tls: ssl.SSLContext | None = None,
    ) -> None:
        self.sock = socket.create_connection((host, port), timeout=timeout)
        if tls is not None:
            try:
                self.sock = tls.wrap_socket(self.sock, server_hostname=host)
            except BaseException:
                self.sock.close()
                raise
        self._buf = bytearray()
        self._pos = 0

    def close(self) -> None:
        self.sock.close()

    def send(self, *args: Arg) -> None:
        self.sock.sendall(encode_request(*args))

    def send_raw(self, data: bytes) -> None:
        self.sock.sendall(data)

    def call(self, *args: Arg) -> Reply:
        self.send(*args)
        return self.read()

    def inline(self, line: str | bytes) -> Reply:
        """Send one inline command line (as typed into nc) and read its reply."""
        data = line.encode() if isinstance(line, str) else line
        self.send_raw(data + b"\r\n")
        return self.read()

    def pipeline(self, *requests: tuple[Arg, ...]) -> list[Reply]:
        """Send every request in one write, then read all the replies."""
        self.send_raw(b"".join(encode_request(*request) for request in requests))
        return [self.read() for _ in requests]

    def read(self) -> Reply:
        """The next reply; ConnectionClosed if the server closes first."""
        while (parsed := parse_reply(self._buf, self._pos)) is None:
            self._fill()
        reply, self._pos = parsed
        return reply

    def read_until_closed(self) -> bytes:
        """Everything the server sends until it closes the connection (a reset counts as
        closing); TimeoutError (socket.timeout) if it stays open past the timeout."""
        data = bytes(self._buf[self._pos :])
        self._buf.clear()
        self._pos = 0
        while True:
            try:
                chunk = self.sock.recv(65536)
            except ConnectionResetError:
                return data
            if not chunk:
                return data
            data += chunk

    def _fill(self) -> None:
        if self._pos:
            del self._buf[: self._pos]
            self._pos = 0
        chunk = self.sock.recv(1 << 20)
        if not chunk:
            raise ConnectionClosed("the server closed the connection")
        self._buf += chunk


def parse_info(text: bytes) -> dict[str, str]:
    """The `name:value` lines of an INFO reply (section headers skipped)."""
    fields: dict[str, str] = {}
    for line in text.decode().splitlines():
        if line and not line.startswith("#"):
            name, _, value = line.partition(":")
            fields[name] = value
    return fields


# ---- a client that keeps writing ---------------------------------------------------


class BackgroundWriter:
    """A thread that SETs `<prefix>0`, `<prefix>1`, ... to "0", "1", ... on one node, one
    request at a time on one connection, until `stop()` or the first failure (an error
    reply, a timeout or a closed connection), which it records and stops on.

    `acked` holds the numbers whose SET was answered +OK, in order; `longest_gap` the
    longest time in seconds between the start and the first +OK or between two +OKs.

        with BackgroundWriter(node.client_port, "w:") as writer:
            writer.wait_acked(10)
            ...                                  # the test's mischief
            writer.wait_acked(len(writer.acked) + 10)
        assert writer.failure is None
    """

    def __init__(self, port: int, prefix: str, timeout: float = 10.0) -> None:
        self.port = port
        self.prefix = prefix
        self.timeout = timeout
        self.acked: list[int] = []
        self.failure: str | None = None
        self.longest_gap = 0.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"writer-{prefix}", daemon=True)

    def __enter__(self) -> BackgroundWriter:
        self.start()
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(self.timeout + 5)

    @property
    def alive(self) -> bool:
        return self._thread.is_alive()

    def wait_acked(self, count: int, timeout: float = ACK_SECONDS) -> None:
        """Wait until `count` SETs were acknowledged; fail at once if the writer failed."""

        def enough() -> bool:
            if self.failure is not None:
                raise AssertionError(f"the writer failed: {self.failure}")
            return len(self.acked) >= count

        wait_until(enough, timeout, f"{count} writes acknowledged (got {len(self.acked)})")

    def _run(self) -> None:
        last = time.monotonic()
        number = 0
        try:
            with RespClient(self.port, timeout=self.timeout) as client:
                while not self._stop.is_set():
                    reply = client.call("SET", f"{self.prefix}{number}", number)
                    if reply != "OK":
                        self.failure = f"SET answered {reply!r}"
                        return
                    now = time.monotonic()
                    self.longest_gap = max(self.longest_gap, now - last)
                    last = now
                    self.acked.append(number)
                    number += 1
        except (OSError, ValueError) as exc:
            self.failure = f"{type(exc).__name__}: {exc}"


# ---- bulk writes, disk use, the command line ----------------------------------------


def write_all(
    node: Node, requests: Iterable[tuple[Arg, ...]], depth: int = 64, timeout: float = 60.0
) -> int:
    """Send `requests` to `node` on one connection, `depth` at a time (pipelined), and
    check that each is answered +OK (AssertionError naming the first other reply); return
    how many were sent. Loads many keys fast: `write_all(node, (("MSET", ...), ...))`."""
    sent = 0
    pending = iter(requests)
    with node.client(timeout) as client:
        while group := list(itertools.islice(pending, depth)):
            for request, reply in zip(group, client.pipeline(*group), strict=True):
                if reply != "OK":
                    raise AssertionError(f"{request[0]!r} on {node.id} answered {reply!r}")
            sent += len(group)
    return sent


def dir_bytes(path: Path) -> int:
    """The total size of the files under `path`; a file deleted meanwhile counts 0."""
    total = 0
    for folder, _, files in os.walk(path):
        for name in files:
            with contextlib.suppress(FileNotFoundError):
                total += os.stat(os.path.join(folder, name)).st_size
    return total


def run_cli(*args: str | Path, timeout: float = 60.0) -> subprocess.CompletedProcess[str]:
    """Run `trioraft ARGS...` (from the repository) to its end; output captured as text."""
    return subprocess.run(
        [sys.executable, "-m", "trioraft", *map(str, args)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


# ---- the write-ahead log ------------------------------------------------------------

#: the size of a WAL record header: payload length, its crc32, the payload's crc32
WAL_HEADER_BYTES = 12


def wal_records(segment: Path) -> list[tuple[int, int]]:
    """(offset, payload length) of each whole record of a WAL segment, read by the
    documented format (docs/data-format.md) without checking checksums."""
    data = segment.read_bytes()
    records = []
    offset = 0
    while offset + WAL_HEADER_BYTES <= len(data):
        length = int.from_bytes(data[offset : offset + 4], "little")
        if offset + WAL_HEADER_BYTES + length > len(data):
            break
        records.append((offset, length))
        offset += WAL_HEADER_BYTES + length
    return records


# ---- nodes --------------------------------------------------------------------------


@dataclass
class Node:
    """One `trioraft serve` process (running or not) and its files."""

    id: str
    config_path: Path
    data_dir: Path
    client_port: int
    peer_port: int
    log_path: Path
    #: the client password of the config, sent by `client()` unless told not to
    password: str | None = field(default=None, repr=False)
    process: subprocess.Popen[bytes] | None = field(default=None, repr=False)
    paused: bool = False
    #: the address clients reach the node at (its client_addr host)
    host: str = HOST
    #: words put before the command that starts the node, e.g. `ip netns exec NS` to run
    #: it in a network namespace; the wrapper must exec the node, so `pid` is the node's
    launcher: tuple[str, ...] = ()
    #: set when the node speaks TLS: what its clients verify it with
    client_tls: ssl.SSLContext | None = field(default=None, repr=False)

    @classmethod
    def configured(
        cls,
        config: Config,
        root: Path,
        log_dir: Path,
        *,
        password: str | None = None,
        host: str = HOST,
        launcher: tuple[str, ...] = (),
        client_tls: ssl.SSLContext | None = None,
    ) -> Node:
        """The node that `config` describes, its config file written to `root/<id>.toml`
        and its log going to `log_dir/<id>.log`; nothing is started."""
        path = root / f"{config.node_id}.toml"
        path.write_text(render_config(config))
        return cls(
            id=config.node_id,
            config_path=path,
            data_dir=config.data_dir,
            client_port=config.client_addr.port,
            peer_port=config.peer_addr.port,
            log_path=log_dir / f"{config.node_id}.log",
            password=password,
            host=host,
            launcher=launcher,
            client_tls=client_tls,
        )

    # -- the process

    def start(self) -> None:
        """Start the process (it must not be running); returns at once, see wait_serving."""
        if self.running:
            raise RuntimeError(f"{self.id} is already running")
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                [
                    *self.launcher,
                    sys.executable,
                    "-m",
                    "trioraft",
                    "serve",
                    "--config",
                    str(self.config_path),
                ],
                cwd=REPO,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=log,
            )
        self.paused = False

    @property
    def running(self) -> bool:
        """Whether the process exists and has not exited (a paused one is running)."""
        return self.process is not None and self.process.poll() is None

    @property
    def pid(self) -> int:
        if self.process is None:
            raise RuntimeError(f"{self.id} was never started")
        return self.process.pid

    @property
    def returncode(self) -> int | None:
        return None if self.process is None else self.process.poll()

    def wait_serving(self, timeout: float = START_SECONDS) -> None:
        """Wait until the node answers PING; fail at once if the process exits."""

        def serving() -> bool:
            if not self.running:
                raise RuntimeError(
                    f"{self.id} exited with status {self.returncode}:\n{self.log_tail()}"
                )
            with self.client(timeout=1.0) as client:
                return client.call("PING") == "PONG"

        wait_until(serving, timeout, f"{self.id} answers PING", describe=self.log_tail)

    def signal(self, signum: int) -> None:
        if self.running:
            os.kill(self.pid, signum)

    def kill(self) -> int | None:
        """kill -9 and reap; the exit status, None if it was not running."""
        if not self.running:
            return self.returncode
        assert self.process is not None
        self.process.kill()
        self.paused = False
        return self.process.wait(EXIT_SECONDS)

    def terminate(self, timeout: float = EXIT_SECONDS) -> int:
        """SIGTERM and wait for the exit status (TimeoutExpired if it hangs)."""
        assert self.process is not None
        self.resume()
        self.process.terminate()
        return self.process.wait(timeout)

    def pause(self) -> None:
        """SIGSTOP: the process stays, but answers nothing until `resume`."""
        self.signal(signal.SIGSTOP)
        self.paused = True

    def resume(self) -> None:
        """SIGCONT after `pause` (harmless otherwise)."""
        if self.paused:
            self.signal(signal.SIGCONT)
            self.paused = False

    def restart(self, timeout: float = START_SECONDS) -> None:
        """kill -9 if running, start again and wait until it serves."""
        self.kill()
        self.start()
        self.wait_serving(timeout)

    # -- talking to it

    def client(self, timeout: float = 10.0, auth: bool = True) -> RespClient:
        """A new connection, authenticated when the node has a password (and `auth`)."""
        client = RespClient(self.client_port, host=self.host, timeout=timeout, tls=self.client_tls)
        if auth and self.password is not None:
            try:
                reply = client.call("AUTH", self.password)
            except BaseException:
                client.close()
                raise
            if reply != "OK":
                client.close()
                raise ValueError(f"AUTH on {self.id} answered {reply!r}")
        return client

    def call(self, *args: Arg, timeout: float = 10.0) -> Reply:
        """One request on a new connection."""
        with self.client(timeout) as client:
            return client.call(*args)

    def info(self, section: str = "raft", timeout: float = 2.0) -> dict[str, str]:
        reply = self.call("INFO", section, timeout=timeout)
        if not isinstance(reply, bytes):
            raise ValueError(f"INFO {section} on {self.id} answered {reply!r}")
        return parse_info(reply)

    # -- looking at it

    def rss_kib(self) -> int:
        """The process's resident set size (VmRSS in /proc/PID/status), in KiB."""
        for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
        raise RuntimeError(f"no VmRSS for {self.id} (pid {self.pid})")

    def log_text(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def log_tail(self, lines: int = 15) -> str:
        tail = self.log_text().splitlines()[-lines:]
        return f"--- {self.id} log ({self.log_path}) ---\n" + "\n".join(tail)

    def wal_segments(self) -> list[Path]:
        """The write-ahead log segment files, oldest first."""
        return sorted((self.data_dir / "wal").glob("*.wal"))

    def snapshot_files(self) -> list[Path]:
        """The complete snapshot files, oldest first (temp and partial files aside)."""
        return sorted((self.data_dir / "snap").glob("*.snap"))


# ---- clusters -----------------------------------------------------------------------


class Cluster(ClosedOnExit):
    """The nodes of one cluster, in a directory the cluster owns and removes on close."""

    def __init__(self, root: Path, nodes: list[Node]) -> None:
        self.root = root
        self.nodes = nodes

    @classmethod
    def create(
        cls,
        size: int = 3,
        *,
        password: str | None = None,
        fsync: bool = True,
        raft: dict[str, int] | None = None,
        limits: dict[str, int] | None = None,
        tls: Mapping[str, TlsConfig] | None = None,
    ) -> Cluster:
        """Write the configs of a new cluster (ids n1..nN) into a new temp dir; nothing
        is started. `raft` and `limits` override keys of those tables; `tls` gives nodes
        a `[tls]` table, by id."""
        root = Path(tempfile.mkdtemp(prefix="trioraft-test-"))
        try:
            ports = free_ports(2 * size)
            members = [
                Member(
                    id=f"n{k + 1}",
                    peer_addr=Address(HOST, ports[size + k]),
                    client_addr=Address(HOST, ports[k]),
                )
                for k in range(size)
            ]
            configs = cluster_configs(
                members,
                token="test-cluster-token",
                data_root=root / "data",
                fsync=fsync,
                password=password,
                raft=RaftSection(**(raft or {})),
                limits=Limits(**(limits or {})),
            )
            nodes = []
            for config in configs:
                node_tls = (tls or {}).get(config.node_id)
                nodes.append(
                    Node.configured(
                        attrs.evolve(config, tls=node_tls),
                        root,
                        root,
                        password=password,
                        client_tls=(
                            ssl.create_default_context(cafile=node_tls.ca_file)
                            if node_tls is not None
                            else None
                        ),
                    )
                )
        except BaseException:
            shutil.rmtree(root, ignore_errors=True)
            raise
        return cls(root, nodes)

    def close(self) -> None:
        """Kill every process (paused ones too) and remove the directory."""
        try:
            for node in self.nodes:
                with contextlib.suppress(OSError, subprocess.TimeoutExpired):
                    node.kill()
        finally:
            shutil.rmtree(self.root, ignore_errors=True)

    def __getitem__(self, node_id: str) -> Node:
        return next(node for node in self.nodes if node.id == node_id)

    @property
    def running(self) -> list[Node]:
        return [node for node in self.nodes if node.running]

    def log_tails(self) -> str:
        return "\n".join(node.log_tail() for node in self.nodes)

    def start_all(self) -> None:
        """Start every node that is not running and wait until each one serves."""
        for node in self.nodes:
            if not node.running:
                node.start()
        for node in self.nodes:
            node.wait_serving()

    def kill_all(self) -> None:
        for node in self.nodes:
            node.kill()

    def wait_for_leader(self, timeout: float = ELECTION_SECONDS) -> Node:
        """The leader, once every running, unpaused node names the same one in INFO raft
        (so every node can forward to it)."""
        return wait_until(
            self._agreed_leader, timeout, "a leader every node knows", describe=self.log_tails
        )

    def _agreed_leader(self) -> Node | None:
        views = [node.info() for node in self.running if not node.paused]
        leaders = {view["leader_id"] for view in views}
        if len(leaders) != 1 or "" in leaders:
            return None
        leader = self[leaders.pop()]
        if not any(view["node_id"] == leader.id and view["role"] == "leader" for view in views):
            return None
        return leader

    def followers(self, timeout: float = ELECTION_SECONDS) -> list[Node]:
        """Every running node but the (agreed) leader."""
        leader = self.wait_for_leader(timeout)
        return [node for node in self.running if node is not leader]

    def wait_converged(self, timeout: float = ELECTION_SECONDS) -> int:
        """Wait until every running, unpaused node has applied every write acknowledged so
        far: the leader's commit index once a linearizable read on it succeeded (a new
        leader learns the commit index only once it committed an entry of its term).
        Return that index."""
        leader = self.wait_for_leader(timeout)
        wait_until(
            lambda: isinstance(leader.call("DBSIZE"), int),
            timeout,
            f"a linearizable read on {leader.id}",
            describe=self.log_tails,
        )
        index = int(leader.info()["commit_index"])

        def applied() -> bool:
            live = [node for node in self.running if not node.paused]
            return all(int(node.info()["last_applied"]) >= index for node in live)

        wait_until(applied, timeout, f"every node applied index {index}", describe=self.log_tails)
        return index


@contextlib.contextmanager
def running_cluster(
    size: int = 3,
    *,
    password: str | None = None,
    fsync: bool = True,
    raft: dict[str, int] | None = None,
    limits: dict[str, int] | None = None,
    tls: Mapping[str, TlsConfig] | None = None,
) -> Iterator[Cluster]:
    """A started cluster with a leader (see `Cluster.create` for the options), closed on
    exit: every process killed and the directory removed."""
    with Cluster.create(
        size, password=password, fsync=fsync, raft=raft, limits=limits, tls=tls
    ) as c:
        c.start_all()
        c.wait_for_leader()
        yield c
