"""Free TCP ports on loopback for the nodes a test starts.

Ports are found by binding port 0 on 127.0.0.1, all at once so they differ. Another process
can take a port between the check and the node's bind; the harness accepts that small race
(a node that cannot listen exits 1 and `Node.wait_serving` says so).
"""

from __future__ import annotations

import contextlib
import socket

HOST = "127.0.0.1"


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
