"""The INFO reply: `# Section` headers and `name:value` lines, as Redis writes them."""

from __future__ import annotations

import os
import platform
import sys
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from trioraft import __version__

if TYPE_CHECKING:
    from trioraft.redis.replies import Reply
    from trioraft.redis.server import ClientServer
    from trioraft.runtime.node import Node

#: the Redis release whose command semantics trioraft follows
REDIS_VERSION = "7.2.0"

_DEFAULT_SECTIONS = ("server", "clients", "stats", "raft", "cluster", "keyspace")


def render_info(node: Node[Reply], server: ClientServer, sections: list[str]) -> str:
    wanted = (
        _DEFAULT_SECTIONS
        if not sections or {"all", "everything", "default"} & set(sections)
        else tuple(s for s in _DEFAULT_SECTIONS if s in sections)
    )
    builders: dict[str, Callable[[], dict[str, Any]]] = {
        "server": lambda: _server(server),
        "clients": lambda: _clients(server),
        "stats": lambda: _stats(server),
        "raft": lambda: node.status(),
        "cluster": lambda: {"cluster_enabled": 0},
        "keyspace": lambda: _keyspace(server),
    }
    parts = []
    for name in wanted:
        fields = builders[name]()
        lines = [f"# {name.capitalize()}"] + [f"{k}:{v}" for k, v in fields.items()]
        parts.append("\r\n".join(lines) + "\r\n")
    return "\r\n".join(parts)


def _server(server: ClientServer) -> dict[str, Any]:
    return {
        "trioraft_version": __version__,
        "redis_version": REDIS_VERSION,
        "redis_mode": "standalone",
        "os": f"{platform.system()} {platform.release()} {platform.machine()}",
        "arch_bits": 64 if sys.maxsize > 2**32 else 32,
        "python_version": platform.python_version(),
        "process_id": os.getpid(),
        "uptime_in_seconds": int(time.monotonic() - server.stats.started),
    }


def _clients(server: ClientServer) -> dict[str, Any]:
    return {
        "connected_clients": server.stats.connected,
        "maxclients": server.limits.max_clients,
    }


def _stats(server: ClientServer) -> dict[str, Any]:
    stats = server.stats
    return {
        "total_connections_received": stats.connections_received,
        "rejected_connections": stats.connections_rejected,
        "total_commands_processed": stats.commands_processed,
        "instantaneous_ops_per_sec": round(stats.sample_ops()),
    }


def _keyspace(server: ClientServer) -> dict[str, Any]:
    stats = server.state.store.stats()
    line = f"keys={stats['keys']},expires={stats['expires']},avg_ttl={stats['avg_ttl']}"
    return {"db0": line} if stats["keys"] else {}
