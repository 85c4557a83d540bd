"""Tell systemd about the daemon's state (Type=notify units), when it asks.

systemd sets NOTIFY_SOCKET to a datagram socket path (a leading '@' means the Linux
abstract namespace). Without it, every call does nothing, so the daemon runs the same in
the foreground.
"""

from __future__ import annotations

import os
import socket


def notify(state: str) -> bool:
    """Send `state` (e.g. "READY=1"); returns whether a notification socket was set."""
    address = os.environ.get("NOTIFY_SOCKET")
    if not address:
        return False
    if address.startswith("@"):
        address = "\0" + address[1:]
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.connect(address)
        sock.sendall(state.encode())
    return True
