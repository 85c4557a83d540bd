"""`trioraft serve`: one node as a foreground daemon.

Start-up loads the TLS files when `[tls]` is set, opens the data dir (locked, identity
checked), replays the write-ahead log (cutting a torn tail with a warning), then starts
the peer transport, the node, the expiry sweep and the client listener; once the peers
have confirmed the data dir (the incarnation check, the last start check) it tells
systemd READY=1. Under systemd it also says STATUS= (role and term) whenever they change,
and pings WATCHDOG=1 from the event loop when the unit sets WatchdogSec.
SIGTERM or SIGINT: stop taking clients, finish the writes in flight, hand leadership over
when leader, tell systemd STOPPING=1, exit 0. Start-up failures raise `StartupError` with
one line saying what and where, and whether a restart could fix it (`permanent`).
"""

from __future__ import annotations

import errno
import functools
import ipaddress
import resource
import signal
import socket
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path

import attrs
import trio

from trioraft.core.config import RaftConfig
from trioraft.core.membership import Configurations
from trioraft.core.messages import Entry, EntryKind, MemberAddress, Members, SnapshotMeta
from trioraft.kvstore import expiry
from trioraft.kvstore.replicated import ReplicatedState
from trioraft.logs import NodeLogger
from trioraft.ops.collector import instrument, probe_peers
from trioraft.ops.config import Config, listed_members
from trioraft.ops.health import Endpoint
from trioraft.ops.join import asker
from trioraft.ops.systemd import StatusLine, notify, watchdog, watchdog_interval
from trioraft.ops.tls import TlsContexts, TlsError, load_contexts
from trioraft.redis.limits import ClientLimits
from trioraft.redis.replies import Reply
from trioraft.redis.server import ClientServer
from trioraft.runtime.joining import Joining
from trioraft.runtime.node import GUEST_METHODS, Node, NodeOptions
from trioraft.runtime.snapshotter import SnapshotPolicy
from trioraft.storage import DataDir, DataDirLocked, StorageError, WriteAheadLog
from trioraft.storage.snapshots import SnapshotStore
from trioraft.storage.state import Restored, open_storage
from trioraft.transport.addresses import HostPort
from trioraft.transport.base import RpcHandler
from trioraft.transport.tcp import TcpTransport

#: how long a clean stop may take: in-flight writes plus a leadership hand-over
SHUTDOWN_SECONDS = 5.0


class StartupError(Exception):
    """The node cannot start; the message says what and where.

    `permanent` (the default): restarting cannot fix it, someone must act first (damaged
    or foreign data, a wiped data dir, unusable TLS files...). Otherwise trying again
    later may succeed (a port or the data dir's lock still held by a process stopping).
    """

    def __init__(self, message: str, *, permanent: bool = True) -> None:
        super().__init__(message)
        self.permanent = permanent


def node_options(config: Config) -> NodeOptions:
    r = config.raft
    return NodeOptions(
        node_id=config.node_id,
        members=listed_members(config),
        peer_addresses={m.id: (m.peer_addr.host, m.peer_addr.port) for m in config.peers},
        tick_seconds=r.tick_ms / 1000,
        raft=RaftConfig(
            election_ticks=r.election_ticks_min,
            election_ticks_max=r.election_ticks_max,
            heartbeat_ticks=r.heartbeat_ticks,
            max_uncommitted_bytes=config.limits.max_uncommitted_bytes,
        ),
        fsync=config.fsync,
        snapshot_policy=SnapshotPolicy(entries=r.snapshot_entries, bytes=r.snapshot_bytes),
    )


def server_limits(config: Config) -> ClientLimits:
    lim = config.limits
    return ClientLimits(
        max_value_bytes=lim.max_value_bytes,
        max_inline_bytes=lim.max_inline_bytes,
        max_args=lim.max_args,
        max_request_bytes=lim.max_request_bytes,
        max_clients=lim.max_clients,
        idle_timeout=float(lim.idle_timeout_s),
        max_unread_reply_bytes=lim.max_unread_reply_bytes,
        max_transaction_commands=lim.max_transaction_commands,
        max_transaction_bytes=lim.max_transaction_bytes,
    )


def raise_file_limit() -> None:
    """Allow as many open files as the hard limit permits: every client is one."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def serve(config: Config, config_file: Path) -> None:
    """Run the node `config` (read from `config_file`) until SIGTERM or SIGINT."""
    log = NodeLogger(config.node_id, "trioraft.daemon")
    if not config.fsync:
        log.warning("fsync is off: acknowledged writes can be lost in a power failure")
    raise_file_limit()
    try:
        tls = load_contexts(config.tls) if config.tls is not None else None
    except TlsError as exc:
        raise StartupError(str(exc)) from None
    try:
        data_dir = DataDir.open(
            config.data_dir, node_id=config.node_id, cluster_token=config.cluster_token
        )
    except DataDirLocked as exc:
        raise StartupError(str(exc), permanent=False) from None
    except StorageError as exc:
        raise StartupError(str(exc)) from None
    try:
        try:
            wal, snapshots, restored = open_storage(
                data_dir.path, fsync=config.fsync, keep=config.raft.snapshots_kept
            )
        except StorageError as exc:
            raise StartupError(str(exc)) from None
        for torn in restored.warnings:
            log.warning("cut a torn tail off the write-ahead log", detail=str(torn))
        if restored.restarted:
            log.warning("finished installing a snapshot interrupted by a crash")
        with wal:
            snapshot = _load_snapshot(restored, log)
            recorded = recorded_members(snapshot[0] if snapshot else None, restored.entries)
            if config.join:
                if recorded is not None:
                    log.warning(
                        f"{config_file}: join is ignored: this node's data dir records the "
                        f"members {_names(recorded)} (join only adds a node whose data dir "
                        f"records none)"
                    )
            else:
                mismatch = members_mismatch(config_file, listed_members(config), recorded)
                if mismatch is not None:
                    log.warning(mismatch)
            log.info(
                "storage recovered",
                snapshot_index=snapshot[0].index if snapshot else 0,
                entries=len(restored.entries),
                term=restored.hard_state.term,
                incarnation=data_dir.incarnation,
            )
            meta, state = snapshot if snapshot else (None, ReplicatedState())
            storage = _Storage(
                wal,
                snapshots,
                restored,
                state,
                meta,
                data_dir,
                joins=bool(config.join) and recorded is None,
            )
            trio.run(_run, config, storage, tls, log)
    finally:
        data_dir.close()


@attrs.frozen
class _Storage:
    """What the node resumes from."""

    wal: WriteAheadLog
    snapshots: SnapshotStore
    restored: Restored
    #: the replicated state, as the newest snapshot (if any) holds it
    state: ReplicatedState
    #: the snapshot `state` comes from
    snapshot: SnapshotMeta | None
    data_dir: DataDir
    #: whether the node asks to join (`join` is set, and the data dir records no members)
    joins: bool


def _load_snapshot(
    restored: Restored, log: NodeLogger
) -> tuple[SnapshotMeta, ReplicatedState] | None:
    if restored.snapshot is None:
        return None
    meta, data = restored.snapshot
    try:
        return meta, ReplicatedState.restore(data)
    except ValueError as exc:
        raise StartupError(f"snapshot {meta.index}: {exc}") from None


def recorded_members(snapshot: SnapshotMeta | None, entries: Sequence[Entry]) -> Members | None:
    """The configuration a data dir records: the newest configuration entry in its log,
    else its snapshot's; None when it records none (the config file's members then
    bootstrap the node)."""
    if snapshot is None and not any(e.kind is EntryKind.CONFIG for e in entries):
        return None
    configs = Configurations(snapshot.members if snapshot else Members(frozenset()))
    configs.appended(e for e in entries if snapshot is None or e.index > snapshot.index)
    return configs.current


def members_mismatch(config_file: Path, listed: Members, recorded: Members | None) -> str | None:
    """What to warn about when the data dir records other members than the config file
    lists. The data dir wins: membership changes at run time (`trioraft member`), so the
    file's list is used only to bootstrap an empty data dir, and a file edited since (or
    never updated after a change) must not give this node another quorum than the rest."""
    if recorded is None or (recorded.voters, recorded.learners) == (
        listed.voters,
        listed.learners,
    ):
        return None
    return (
        f"{config_file}: members lists {_names(listed)}, but this node's data dir records "
        f"the members {_names(recorded)}: the data dir's members are used (members only "
        f"bootstraps an empty data dir; `trioraft member` changes membership)"
    )


def _names(members: Members) -> str:
    voters = ", ".join(sorted(members.voters))
    learners = ", ".join(sorted(members.learners))
    return voters + (f" (learners {learners})" if learners else "")


async def _run(config: Config, storage: _Storage, tls: TlsContexts | None, log: NodeLogger) -> None:
    listening = [("peer_addr", config.peer_addr), ("client_addr", config.client_addr)]
    if config.metrics_addr is not None:
        listening.append(("metrics_addr", config.metrics_addr))
    for key, address in listening:
        await _check_listen_address(key, address, log)

    transports: list[TcpTransport] = []

    def make_transport(handler: RpcHandler) -> TcpTransport:
        transports.append(
            TcpTransport(
                node_id=config.node_id,
                token=config.cluster_token,
                listen_addr=(config.peer_addr.host, config.peer_addr.port),
                peers={m.id: (m.peer_addr.host, m.peer_addr.port) for m in config.peers},
                rpc_handler=handler,
                tls=tls.peers if tls is not None else None,
                guest_methods=GUEST_METHODS,
            )
        )
        return transports[0]

    joining = None
    if storage.joins:
        me = config.me
        joining = Joining(
            [(a.host, a.port) for a in config.join],
            MemberAddress(str(me.peer_addr), str(me.client_addr)),
            asker(lambda: transports[0], config.password, tls.peers.connect if tls else None),
        )
    node = Node(
        node_options(config),
        storage.wal,
        storage.restored,
        make_transport,
        storage.state,
        snapshots=storage.snapshots,
        snapshot=storage.snapshot,
        incarnation=storage.data_dir.incarnation,
        fresh=storage.data_dir.created,
        join=joining,
        ask_address=lambda *call: transports[0].call_address(*call),
    )
    server = ClientServer(node, storage.state, server_limits(config), config.password)
    serving = False
    status = StatusLine()
    node.role_watchers.append(lambda: status.update(role_and_term(node)))
    with trio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
        async with trio.open_nursery() as nursery:
            interval = watchdog_interval()
            if interval is not None:
                nursery.start_soon(watchdog, interval)
            await _start(nursery, node.run, "peer_addr", config.peer_addr)
            if config.metrics_addr is not None:
                await _serve_metrics(
                    nursery,
                    node,
                    server,
                    config.metrics_addr,
                    lambda: serving and node.accepted.is_set(),
                )
            # deletes due keys while this node leads
            nursery.start_soon(expiry.sweep, node, storage.state)
            client_scope = trio.CancelScope()

            async def serve_clients(*, task_status: trio.TaskStatus[object]) -> None:
                with client_scope:
                    await server.serve(
                        config.client_addr.host,
                        config.client_addr.port,
                        ssl_context=tls.clients if tls is not None else None,
                        task_status=task_status,
                    )

            await _start(nursery, serve_clients, "client_addr", config.client_addr)
            log.info(
                "serving",
                client=str(config.client_addr),
                peer=str(config.peer_addr),
                tls="on" if tls is not None else "off",
            )
            serving = True
            nursery.start_soon(_ready_once_accepted, node, log)
            async for signum in signals:
                log.info("stopping", signal=signal.Signals(signum).name)
                notify("STOPPING=1")
                client_scope.cancel()
                await node.shutdown(SHUTDOWN_SECONDS)
                nursery.cancel_scope.cancel()
                break
    log.info("stopped")


async def _serve_metrics(
    nursery: trio.Nursery,
    node: Node[Reply],
    server: ClientServer,
    address: HostPort,
    serving: Callable[[], bool],
) -> None:
    """Serve /metrics, /health and /ready at `address`, and probe the peers' round trips."""
    endpoint = Endpoint(node, instrument(node, server), serving)
    task = functools.partial(endpoint.serve, address.host, address.port)
    await _start(nursery, task, "metrics_addr", address)
    nursery.start_soon(probe_peers, node, node.metrics)


def role_and_term(node: Node[Reply]) -> str:
    """The node's role and term for systemd's STATUS: `follower of n2, term 4`."""
    row = node.status()
    leader = row["leader_id"]
    if row["role"] == "follower" and leader:
        return f"follower of {leader}, term {row['term']}"
    return f"{row['role']}, term {row['term']}"


async def _ready_once_accepted(node: Node[Reply], log: NodeLogger) -> None:
    """Tell systemd READY=1 once the peers have accepted the data dir: a node they refuse
    exits instead, and must not look started in between."""
    await node.accepted.wait()
    log.info("ready: every start check passed")
    notify("READY=1")


async def _check_listen_address(key: str, address: HostPort, log: NodeLogger) -> None:
    """Resolve a listen address before binding it. A host that does not resolve is a
    StartupError naming the key and the address (it may pass: DNS may not be up yet);
    a host name other than localhost that resolves to loopback addresses only (as a
    Debian host's own name may) is warned about, since other hosts cannot connect."""
    try:
        found = await trio.socket.getaddrinfo(
            address.host, address.port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
        )
    except OSError as exc:
        raise StartupError(
            f"cannot listen on {key} {address}: cannot resolve {address.host}: {exc.strerror}",
            permanent=False,
        ) from None
    resolved = sorted({str(info[4][0]) for info in found})
    loopback_only = all(_is_loopback(ip) for ip in resolved)
    if loopback_only and not address.is_ip and address.host != "localhost":
        log.warning(
            "listening on loopback only: other hosts cannot connect; listen on 0.0.0.0 or an "
            "IP address of this host instead",
            key=key,
            address=str(address),
            resolved=resolved,
        )


def _is_loopback(ip: str) -> bool:
    return ipaddress.ip_address(ip.partition("%")[0]).is_loopback


async def _start(
    nursery: trio.Nursery, task: Callable[..., Awaitable[object]], key: str, address: HostPort
) -> None:
    """Start a listening task; an address that cannot be bound is a StartupError naming
    the key and the address."""
    try:
        await nursery.start(task)
    except (OSError, BaseExceptionGroup) as exc:
        leaf = first_error(exc)
        if not isinstance(leaf, OSError):
            raise
        if leaf.errno == errno.EADDRINUSE:
            reason = "address already in use"
        elif leaf.errno == errno.EADDRNOTAVAIL:
            reason = f"{address.host} is not an address of this host"
        else:
            reason = leaf.strerror or str(leaf)
        raise StartupError(f"cannot listen on {key} {address}: {reason}", permanent=False) from None


def first_error(exc: BaseException) -> BaseException:
    """The first error inside (possibly nested) exception groups."""
    while isinstance(exc, BaseExceptionGroup):
        exc = exc.exceptions[0]
    return exc
