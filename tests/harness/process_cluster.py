"""A cluster of real `trioraft serve` processes for tests, in a directory of its own.

Everything here is synchronous (plain sockets, `subprocess`), so it works from ordinary
pytest tests and fixtures and from helper threads.

    with ProcessCluster.create(size=3) as cluster:      # configs and data dirs in a new temp dir
        cluster.start_all()
        leader = cluster.wait_for_leader()       # agreed on by every running node
        follower = cluster.followers()[0]
        with follower.client() as c:
            assert c.call("SET", "k", "v") == "OK"
        leader.kill()                            # kill -9; also pause()/resume(), terminate()
        cluster.wait_for_leader()
    # every process killed (even a paused one) and the temp dir removed, also on failure

What is here: `ProcessCluster` (configs, start/kill/leader, `wait_converged`) and the
`running_cluster` context manager for fixtures. Its nodes are `process_node.Node`s; the
clients are in `resp_client`, the writers in `writers`, file inspection in `on_disk`.

Configs are written with the project's own config module (`cluster_configs` and
`render_config`), so a test can set any `[raft]` or `[limits]` key, a password, `fsync` or a
`[tls]` table per node: `ProcessCluster.create(..., limits={"max_clients": 5})`. With `tls`,
every client of the harness speaks TLS, trusting the node's `ca_file`.
"""

from __future__ import annotations

import contextlib
import shutil
import ssl
import subprocess
import tempfile
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import TypedDict, Unpack

import attrs

from harness.polling import wait_until
from harness.ports import HOST, free_ports
from harness.process_node import Node
from trioraft.closing import ClosedOnExit
from trioraft.ops.config import Limits, Member, RaftSection, TlsConfig, cluster_configs
from trioraft.transport.addresses import HostPort

#: how long a cluster may take to elect a leader that every node knows
ELECTION_SECONDS = 60.0


class ProcessCluster(ClosedOnExit):
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
    ) -> ProcessCluster:
        """Write the configs of a new cluster (ids n1..nN, on loopback) into a new temp
        dir; nothing is started. `raft` and `limits` override keys of those tables; `tls`
        gives nodes a `[tls]` table, by id."""
        ports = free_ports(2 * size)
        members = [
            Member(
                id=f"n{k + 1}",
                peer_addr=HostPort(HOST, ports[size + k]),
                client_addr=HostPort(HOST, ports[k]),
            )
            for k in range(size)
        ]
        return cls.configured(
            Path(tempfile.mkdtemp(prefix="trioraft-test-")),
            members,
            token="test-cluster-token",
            password=password,
            fsync=fsync,
            raft=RaftSection(**(raft or {})),
            limits=Limits(**(limits or {})),
            tls=tls,
        )

    @classmethod
    def configured(
        cls,
        root: Path,
        members: Sequence[Member],
        *,
        token: str,
        log_dir: Path | None = None,
        launchers: Mapping[str, tuple[str, ...]] | None = None,
        password: str | None = None,
        fsync: bool = True,
        raft: RaftSection | None = None,
        limits: Limits | None = None,
        tls: Mapping[str, TlsConfig] | None = None,
    ) -> ProcessCluster:
        """The cluster of `members`, its configs and data dirs written into `root`, which
        it owns from now on (removed on close, and at once if writing fails); node logs go
        to `log_dir` (default `root`), each node is started through its launcher, by id
        (see `Node.launcher`). Nothing is started."""
        try:
            configs = cluster_configs(
                members,
                token=token,
                data_root=root / "data",
                fsync=fsync,
                password=password,
                raft=raft or RaftSection(),
                limits=limits or Limits(),
            )
            nodes = []
            for config in configs:
                node_tls = (tls or {}).get(config.node_id)
                nodes.append(
                    Node.configured(
                        attrs.evolve(config, tls=node_tls),
                        root,
                        log_dir or root,
                        password=password,
                        launcher=(launchers or {}).get(config.node_id, ()),
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


class ClusterOptions(TypedDict, total=False):
    """The options of `ProcessCluster.create` besides the size."""

    password: str | None
    fsync: bool
    raft: dict[str, int] | None
    limits: dict[str, int] | None
    tls: Mapping[str, TlsConfig] | None


@contextlib.contextmanager
def running_cluster(size: int = 3, **options: Unpack[ClusterOptions]) -> Iterator[ProcessCluster]:
    """A started cluster with a leader (see `ProcessCluster.create` for the options),
    closed on exit: every process killed and the directory removed."""
    with ProcessCluster.create(size, **options) as cluster:
        cluster.start_all()
        cluster.wait_for_leader()
        yield cluster
