"""A node started the way its systemd unit starts it, and a stand-in for systemd's
notification socket to watch what the daemon tells the supervisor."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

from harness.process_node import REPO, Node

#: the status the systemd unit asks for when a restart cannot fix a refusal
REFUSED = 3


class NotifySocket:
    """A stand-in for systemd's notification socket: collects what the daemon sends."""

    def __init__(self, folder: Path) -> None:
        self.path = folder / "notify"
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(str(self.path))
        self.sock.setblocking(False)
        self.received: list[str] = []

    def drain(self) -> list[str]:
        """Everything received so far."""
        while True:
            try:
                self.received.append(self.sock.recv(4096).decode())
            except BlockingIOError:
                return self.received

    def close(self) -> None:
        self.sock.close()


def start_as_unit(
    node: Node, notify: NotifySocket | None = None, watchdog_usec: int | None = None
) -> subprocess.Popen[bytes]:
    """Start `node` the way the systemd unit does: `--refusal-status 3`, and with a
    notification socket when one is given (and WatchdogSec when `watchdog_usec` is)."""
    env = dict(os.environ)
    if notify is not None:
        env["NOTIFY_SOCKET"] = str(notify.path)
    if watchdog_usec is not None:
        env["WATCHDOG_USEC"] = str(watchdog_usec)
    with node.log_path.open("ab") as log:
        node.process = subprocess.Popen(
            [
                *(sys.executable, "-m", "trioraft", "serve", "--config", str(node.config_path)),
                *("--refusal-status", str(REFUSED)),
            ],
            cwd=REPO,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=log,
            env=env,
        )
    return node.process
