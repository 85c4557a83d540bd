"""Where the nodes of a fault run live: one network namespace per node on a bridge, or
plain loopback.

Network namespaces (`NetnsHosts`, needs root and `ip netns`). Each node gets a
namespace `trnem-<tag>-<id>` holding the inner end of a veth pair, renamed `eth0`,
with the address 10.77.<s>.<10+k>/24; the outer ends hang on a bridge `tnb<tag>` in the
root namespace, which holds 10.77.<s>.1. So every node listens on its own address with
the same ports, the nodes reach each other across the bridge, and the harness, in the
root namespace, reaches every node through the bridge. `<tag>` is this process's pid and
a letter counting the runs of the process, so parallel runs never share a name; `<s>`
is a /24 no route of this machine uses yet, picked under a lock (an flock on the
temp directory) so two runs starting together do not pick the same one. No traffic
leaves these addresses.

Partitions are real: `cut(pairs)` loads, in the namespace of each node, an iptables
filter table that DROPs every packet from and to the nodes it must not see (inbound
and outbound, so both sides drop). Established peer connections then hang, just as on a
broken network; the client path from the root namespace is never cut, so clients still
reach nodes on the minority side. `heal()` loads empty tables again.

Cleanup. `close()` deletes the namespaces (with the inner veth ends, whose outer ends
go with them) and the bridge, and tolerates whatever part is missing; callers close
the cluster first, so no node process keeps a namespace alive. A run killed with -9
cannot clean up, so every `NetnsHosts` first removes what dead runs left: namespaces
and links carrying the tag of a pid that no longer exists (killing the node processes
still inside such a namespace, found by `ip netns pids`). Likewise `build_cluster`
removes the cluster dirs named after a dead pid, killing any process started from one.

Loopback (`LoopbackHosts`): every node on 127.0.0.1 with ports of its own; no
partitions, so only the faults that need no network can run.
"""

from __future__ import annotations

import contextlib
import fcntl
import itertools
import os
import re
import shutil
import signal
import subprocess
import tempfile
from collections.abc import Iterable, Iterator
from pathlib import Path

import attrs
from harness.ports import HOST, free_ports
from harness.process_cluster import ProcessCluster

from trioraft.closing import ClosedOnExit
from trioraft.ops.config import Member, RaftSection
from trioraft.transport.addresses import HostPort

#: client and peer ports inside a namespace (each namespace has its own port space)
NETNS_CLIENT_PORT = 7001
NETNS_PEER_PORT = 8001
#: the address block the bridges are carved from: 10.77.<s>.0/24
SUBNET_PREFIX = "10.77"
LOCK_DIR = tempfile.gettempdir()
#: how long one `ip` or `iptables-restore` command may take
COMMAND_SECONDS = 20.0

#: the cluster dirs in the temp directory: <prefix><pid>-<random>
DIR_PREFIX = "trioraft-nemesis-"
_DIR_PATTERN = re.compile(rf"^{DIR_PREFIX}(\d+)-")
_NS_PATTERN = re.compile(r"^trnem-(\d+)[a-z]-")
_LINK_PATTERN = re.compile(r"^tn[bvp](\d+)[a-z]")
_runs = itertools.count()


class HostsError(RuntimeError):
    """Setting up or changing the hosts failed; the message names the command."""


@attrs.frozen
class Host:
    """Where one node listens, and how it is started there."""

    node_id: str
    #: the address of both listeners, reachable from the harness
    ip: str
    client_port: int
    peer_port: int
    #: the words that start a command in the node's namespace (none on loopback)
    launcher: tuple[str, ...] = ()


def _run(*command: str, stdin: str | None = None) -> str:
    try:
        done = subprocess.run(
            command,
            input=stdin,
            capture_output=True,
            text=True,
            timeout=COMMAND_SECONDS,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise HostsError(f"{' '.join(command)}: {exc}") from exc
    if done.returncode != 0:
        raise HostsError(f"{' '.join(command)}: {done.stderr.strip() or done.returncode}")
    return done.stdout


def netns_problem() -> str | None:
    """Why this machine cannot run nodes in network namespaces, or None when it can
    (root, `ip` and `iptables-restore` present, and a namespace can be made)."""
    if os.geteuid() != 0:
        return "network namespaces need root (this process is not root)"
    for tool in ("ip", "iptables-restore"):
        if shutil.which(tool) is None:
            return f"network namespaces need the `{tool}` command, which is not installed"
    name = f"trnem-{os.getpid()}{_letter(next(_runs))}-probe"
    try:
        _run("ip", "netns", "add", name)
        _run("ip", "netns", "exec", name, "iptables-restore", stdin=_filter_table([]))
    except HostsError as exc:
        return f"cannot use network namespaces here: {exc}"
    finally:
        with contextlib.suppress(HostsError):
            _run("ip", "netns", "delete", name)
    return None


def _letter(number: int) -> str:
    return chr(ord("a") + number % 26)


def _filter_table(blocked: Iterable[str]) -> str:
    """An iptables-restore input: a filter table dropping all traffic from and to
    `blocked` addresses."""
    lines = ["*filter", ":INPUT ACCEPT [0:0]", ":FORWARD ACCEPT [0:0]", ":OUTPUT ACCEPT [0:0]"]
    for ip in sorted(blocked):
        lines.append(f"-A INPUT -s {ip}/32 -j DROP")
        lines.append(f"-A OUTPUT -d {ip}/32 -j DROP")
    lines.append("COMMIT")
    return "\n".join(lines) + "\n"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def remove_leftovers() -> list[str]:
    """Remove the namespaces and links of earlier runs whose process is gone (they were
    killed before they could clean up); returns what was removed."""
    removed: list[str] = []
    for line in _run("ip", "netns", "list").splitlines():
        name = line.split()[0] if line.split() else ""
        match = _NS_PATTERN.match(name)
        if match is None or _alive(int(match.group(1))):
            continue
        with contextlib.suppress(HostsError):
            for pid in _run("ip", "netns", "pids", name).split():
                with contextlib.suppress(ProcessLookupError):
                    os.kill(int(pid), signal.SIGKILL)
        with contextlib.suppress(HostsError):
            _run("ip", "netns", "delete", name)
            removed.append(f"netns {name}")
    for line in _run("ip", "-o", "link", "show").splitlines():
        parts = line.split(":")
        if len(parts) < 2:
            continue
        name = parts[1].strip().split("@")[0]
        match = _LINK_PATTERN.match(name)
        if match is None or _alive(int(match.group(1))):
            continue
        with contextlib.suppress(HostsError):
            _run("ip", "link", "delete", name)
            removed.append(f"link {name}")
    return removed


def remove_stale_dirs() -> list[str]:
    """Remove the cluster dirs (configs and data) of earlier runs whose process is gone,
    killing the node processes still started from them; returns what was removed."""
    removed = []
    for path in Path(tempfile.gettempdir()).glob(f"{DIR_PREFIX}*"):
        match = _DIR_PATTERN.match(path.name)
        if match is None or _alive(int(match.group(1))):
            continue
        for proc in Path("/proc").iterdir():
            with contextlib.suppress(OSError):
                if proc.name.isdigit() and str(path).encode() in (proc / "cmdline").read_bytes():
                    os.kill(int(proc.name), signal.SIGKILL)
        shutil.rmtree(path, ignore_errors=True)
        removed.append(str(path))
    return removed


@contextlib.contextmanager
def _net_lock() -> Iterator[None]:
    """Held while a run picks its subnet and makes its bridge: an flock on the temp
    directory itself, which every run shares and nobody has to create or remove."""
    fd = os.open(LOCK_DIR, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def _free_subnet() -> int:
    """A third octet s such that no route of this machine lies in 10.77.s.0/24."""
    used = set()
    for line in _run("ip", "-4", "route", "show", "table", "all").splitlines():
        match = re.search(rf"\b{re.escape(SUBNET_PREFIX)}\.(\d+)\.", line)
        if match:
            used.add(int(match.group(1)))
    start = os.getpid() % 250
    for offset in range(250):
        candidate = (start + offset) % 250 + 1
        if candidate not in used:
            return candidate
    raise HostsError(f"every {SUBNET_PREFIX}.*.0/24 subnet is in use")


class NetnsHosts(ClosedOnExit):
    """One network namespace per node on a bridge of its own; see the module docstring."""

    partitions = True

    def __init__(self, node_ids: list[str]) -> None:
        if len(node_ids) > 9:
            raise ValueError("at most 9 nodes (interface names must stay short)")
        self.tag = f"{os.getpid()}{_letter(next(_runs))}"
        self.bridge = f"tnb{self.tag}"
        self.namespaces: dict[str, str] = {}
        self.hosts: dict[str, Host] = {}
        #: the pairs of nodes that cannot talk now
        self.cut_pairs: frozenset[frozenset[str]] = frozenset()
        self._made_bridge = False
        self._outer_links: list[str] = []
        try:
            remove_leftovers()
            self._setup(node_ids)
        except BaseException:
            self.close()
            raise

    def _setup(self, node_ids: list[str]) -> None:
        with _net_lock():
            subnet = _free_subnet()
            _run("ip", "link", "add", self.bridge, "type", "bridge")
            self._made_bridge = True
            _run("ip", "addr", "add", f"{SUBNET_PREFIX}.{subnet}.1/24", "dev", self.bridge)
            _run("ip", "link", "set", self.bridge, "up")
        for k, node_id in enumerate(node_ids, start=1):
            namespace = f"trnem-{self.tag}-{node_id}"
            outer, inner = f"tnv{self.tag}n{k}", f"tnp{self.tag}n{k}"
            ip = f"{SUBNET_PREFIX}.{subnet}.{10 + k}"
            _run("ip", "netns", "add", namespace)
            self.namespaces[node_id] = namespace
            _run("ip", "link", "add", outer, "type", "veth", "peer", "name", inner)
            self._outer_links.append(outer)
            _run("ip", "link", "set", inner, "netns", namespace)
            _run("ip", "-n", namespace, "link", "set", inner, "name", "eth0")
            _run("ip", "-n", namespace, "addr", "add", f"{ip}/24", "dev", "eth0")
            _run("ip", "-n", namespace, "link", "set", "eth0", "up")
            _run("ip", "-n", namespace, "link", "set", "lo", "up")
            _run("ip", "link", "set", outer, "master", self.bridge)
            _run("ip", "link", "set", outer, "up")
            self.hosts[node_id] = Host(
                node_id,
                ip,
                NETNS_CLIENT_PORT,
                NETNS_PEER_PORT,
                ("ip", "netns", "exec", namespace),
            )

    def cut(self, pairs: Iterable[frozenset[str]]) -> None:
        """Make exactly `pairs` unable to talk (every other pair can)."""
        cut_pairs = frozenset(pairs)
        for node_id, namespace in self.namespaces.items():
            blocked = [
                self.hosts[other].ip for other in self.hosts if {node_id, other} in cut_pairs
            ]
            _run("ip", "netns", "exec", namespace, "iptables-restore", stdin=_filter_table(blocked))
        self.cut_pairs = cut_pairs

    def heal(self) -> None:
        self.cut([])

    def close(self) -> None:
        """Remove everything this object made; missing parts are skipped."""
        for namespace in self.namespaces.values():
            with contextlib.suppress(HostsError):
                _run("ip", "netns", "delete", namespace)
        for link in [*self._outer_links, self.bridge if self._made_bridge else ""]:
            if link:
                with contextlib.suppress(HostsError):
                    _run("ip", "link", "delete", link)
        self.namespaces.clear()
        self._outer_links.clear()
        self._made_bridge = False


class LoopbackHosts(ClosedOnExit):
    """Every node on 127.0.0.1 with ports of its own; partitions are impossible."""

    partitions = False

    def __init__(self, node_ids: list[str]) -> None:
        ports = free_ports(2 * len(node_ids))
        self.hosts = {
            node_id: Host(node_id, HOST, ports[k], ports[len(node_ids) + k])
            for k, node_id in enumerate(node_ids)
        }
        self.cut_pairs: frozenset[frozenset[str]] = frozenset()

    def cut(self, pairs: Iterable[frozenset[str]]) -> None:
        if frozenset(pairs):
            raise HostsError("loopback hosts cannot be partitioned")

    def heal(self) -> None:
        """Nothing is ever cut on loopback."""

    def close(self) -> None:
        """Nothing to remove."""


Hosts = NetnsHosts | LoopbackHosts


def build_cluster(hosts: Hosts, log_dir: Path, raft: RaftSection) -> ProcessCluster:
    """Configs and data dirs for one node per host in a new temp dir (removed by
    `ProcessCluster.close`), with the node logs in `log_dir`; nothing is started."""
    remove_stale_dirs()
    members = [
        Member(
            id=host.node_id,
            peer_addr=HostPort(host.ip, host.peer_port),
            client_addr=HostPort(host.ip, host.client_port),
        )
        for host in hosts.hosts.values()
    ]
    return ProcessCluster.configured(
        Path(tempfile.mkdtemp(prefix=f"{DIR_PREFIX}{os.getpid()}-")),
        members,
        token=f"nemesis-{os.getpid()}",
        log_dir=log_dir,
        launchers={host.node_id: host.launcher for host in hosts.hosts.values()},
        raft=raft,
    )
