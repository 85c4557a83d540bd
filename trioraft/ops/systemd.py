"""Tell systemd about the daemon's state (Type=notify units), when it asks.

systemd sets NOTIFY_SOCKET to a datagram socket path (a leading '@' means the Linux
abstract namespace). Without it, every call does nothing, so the daemon runs the same in
the foreground.

The watchdog: a unit with `WatchdogSec=` sets WATCHDOG_USEC (and WATCHDOG_PID, the
process meant); `watchdog` then sends WATCHDOG=1 every half of that interval from a task
of the event loop, so that a loop that stalls (or a process stopped) stops the pings, and
systemd kills and restarts the node once a whole interval passes without one.
"""

from __future__ import annotations

import os
import socket

import trio


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


def watchdog_interval() -> float | None:
    """Seconds between two WATCHDOG=1 pings (half the unit's WatchdogSec), None when
    systemd does not watch this process."""
    usec = os.environ.get("WATCHDOG_USEC", "")
    pid = os.environ.get("WATCHDOG_PID", "")
    if not usec.isdigit() or int(usec) == 0 or not os.environ.get("NOTIFY_SOCKET"):
        return None
    if pid and pid != str(os.getpid()):
        return None  # meant for another process (one that started us, say)
    return int(usec) / 1_000_000 / 2


async def watchdog(interval: float) -> None:
    """Send WATCHDOG=1 every `interval` seconds, for as long as the event loop runs."""
    while True:
        notify("WATCHDOG=1")
        await trio.sleep(interval)


class StatusLine:
    """Sends `STATUS=...` when the text it would send changes."""

    def __init__(self) -> None:
        self._sent = ""

    def update(self, text: str) -> None:
        if text != self._sent:
            self._sent = text
            notify(f"STATUS={text}")
