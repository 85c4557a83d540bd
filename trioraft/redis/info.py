"""The INFO reply: `# Section` headers and `name:value` lines, as Redis writes them."""

from __future__ import annotations

import os
import platform
import sys
import time
from collections.abc import Callable, Mapping

import attrs

from trioraft import __version__

#: the Redis release whose command semantics trioraft follows
REDIS_VERSION = "7.2.0"


@attrs.define
class ClientStats:
    """The client listener's counters, for INFO."""

    started: float = attrs.Factory(time.monotonic)
    connections_received: int = 0
    connections_rejected: int = 0
    connected: int = 0
    commands_processed: int = 0
    #: (monotonic time, commands_processed) at the last ops/sec sample
    ops_sample: tuple[float, int] = (0.0, 0)
    ops_per_sec: float = 0.0

    def sample_ops(self) -> float:
        now = time.monotonic()
        then, count = self.ops_sample
        if now - then >= 1.0:
            self.ops_per_sec = (self.commands_processed - count) / (now - then) if then else 0.0
            self.ops_sample = (now, self.commands_processed)
        return self.ops_per_sec


_DEFAULT_SECTIONS = ("server", "clients", "stats", "raft", "cluster", "keyspace")


def render_info(
    sections: list[str],
    *,
    stats: ClientStats,
    max_clients: int,
    raft: Callable[[], Mapping[str, object]],
    keyspace: Callable[[], Mapping[str, int]],
) -> str:
    """The INFO text of `sections` (none: the default ones): `raft` gives the node's
    status and `keyspace` the keyspace's counts, asked only for the sections wanted."""
    wanted = (
        _DEFAULT_SECTIONS
        if not sections or {"all", "everything", "default"} & set(sections)
        else tuple(s for s in _DEFAULT_SECTIONS if s in sections)
    )
    builders: dict[str, Callable[[], Mapping[str, object]]] = {
        "server": lambda: _server(stats),
        "clients": lambda: {"connected_clients": stats.connected, "maxclients": max_clients},
        "stats": lambda: _stats(stats),
        "raft": raft,
        "cluster": lambda: {"cluster_enabled": 0},
        "keyspace": lambda: _keyspace(keyspace()),
    }
    parts = []
    for name in wanted:
        fields = builders[name]()
        lines = [f"# {name.capitalize()}"] + [f"{k}:{v}" for k, v in fields.items()]
        parts.append("\r\n".join(lines) + "\r\n")
    return "\r\n".join(parts)


def _server(stats: ClientStats) -> dict[str, object]:
    return {
        "trioraft_version": __version__,
        "redis_version": REDIS_VERSION,
        "redis_mode": "standalone",
        "os": f"{platform.system()} {platform.release()} {platform.machine()}",
        "arch_bits": 64 if sys.maxsize > 2**32 else 32,
        "python_version": platform.python_version(),
        "process_id": os.getpid(),
        "uptime_in_seconds": int(time.monotonic() - stats.started),
    }


def _stats(stats: ClientStats) -> dict[str, object]:
    return {
        "total_connections_received": stats.connections_received,
        "rejected_connections": stats.connections_rejected,
        "total_commands_processed": stats.commands_processed,
        "instantaneous_ops_per_sec": round(stats.sample_ops()),
    }


def _keyspace(stats: Mapping[str, int]) -> dict[str, object]:
    line = f"keys={stats['keys']},expires={stats['expires']},avg_ttl={stats['avg_ttl']}"
    return {"db0": line} if stats["keys"] else {}
