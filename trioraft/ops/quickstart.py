"""`trioraft cluster`: run a local cluster in the foreground until Ctrl-C.

Each node is a `trioraft serve` child process whose log goes to `<config dir>/nK.log`.
A node that exits on its own is reported and the others keep serving; Enter restarts
every node that has stopped. Ctrl-C (or SIGTERM) stops them all with SIGTERM and waits
for them. When no node runs any more the command exits 1.
"""

from __future__ import annotations

import os
import select
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import TextIO

from trioraft.ops.config import Config, load_config

#: how long the nodes get to stop cleanly before they are killed
STOP_SECONDS = 15.0
#: how often the command looks at its nodes and at its standard input
POLL_SECONDS = 0.2


class _LocalNode:
    """One `trioraft serve` child process and its files."""

    def __init__(self, config_path: Path, config: Config) -> None:
        self.config_path = config_path
        self.config = config
        self.log_path = config_path.with_suffix(".log")
        self.process: subprocess.Popen[bytes] | None = None
        #: whether its exit has been reported
        self.reported = False

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def start(self) -> None:
        # the log holds keys: the node's user's only, like the config
        fd = os.open(self.log_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        with os.fdopen(fd, "ab") as log_file:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "trioraft", "serve", "--config", str(self.config_path)],
                stdin=subprocess.DEVNULL,
                stdout=log_file,
                stderr=log_file,
                start_new_session=True,  # Ctrl-C reaches only this command
            )
        self.reported = False

    def exit_report(self) -> str:
        """One line: how the node ended (with the last line of its log, which says why,
        when it exited by itself)."""
        assert self.process is not None
        code = self.process.returncode
        if code < 0:
            return f"{self.config.node_id} was killed by {signal.Signals(-code).name}"
        return f"{self.config.node_id} exited with status {code}: {_last_line(self.log_path)}"


def _last_line(path: Path) -> str:
    try:
        with path.open("rb") as f:
            f.seek(max(f.seek(0, os.SEEK_END) - 4096, 0))
            lines = f.read().decode("utf-8", "replace").rstrip().splitlines()
    except OSError as e:
        return f"(cannot read {path}: {e.strerror})"
    return lines[-1] if lines else "(empty)"


def run_cluster(config_paths: list[Path]) -> int:
    nodes = [_LocalNode(path, load_config(path)) for path in config_paths]
    stop = False

    def on_signal(signum: int, frame: object) -> None:
        nonlocal stop
        stop = True

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    try:
        for node in nodes:
            node.start()
            print(
                f"{node.config.node_id}: clients at {node.config.me.client_addr}, "
                f"log in {node.log_path}"
            )
        first = nodes[0].config.me.client_addr
        print(f"try: printf 'SET greeting hello\\r\\n' | nc -q1 {first.host} {first.port}")
        print(f"     trioraft status {first}")
        print("A node that stops is reported and the others keep serving; Enter restarts")
        print("the stopped nodes. Ctrl-C stops the cluster.")
        sys.stdout.flush()
        stdin: TextIO | None = sys.stdin
        while not stop:
            _report_exits(nodes)
            if not any(node.running for node in nodes):
                print("no node runs any more; stopping")
                return 1
            stdin = _restart_on_enter(stdin, nodes)
        print("stopping the cluster")
        return _stop(nodes)
    finally:
        for node in nodes:
            if node.process is not None and node.running:
                node.process.kill()


def _report_exits(nodes: list[_LocalNode]) -> None:
    for node in nodes:
        if not node.running and not node.reported:
            node.reported = True
            print(node.exit_report())
            print(f"the others keep serving; Enter restarts {node.config.node_id}")
            sys.stdout.flush()


def _restart_on_enter(stdin: TextIO | None, nodes: list[_LocalNode]) -> TextIO | None:
    """Wait up to POLL_SECONDS for a line on `stdin`; on one, restart the stopped nodes.
    Returns the stdin to watch next: None once it is closed."""
    if stdin is None:
        time.sleep(POLL_SECONDS)
        return None
    if not select.select([stdin], [], [], POLL_SECONDS)[0]:
        return stdin
    if not stdin.readline():
        return None  # closed: nothing more will come
    for node in nodes:
        if not node.running:
            node.start()
            print(f"restarted {node.config.node_id}")
    sys.stdout.flush()
    return stdin


def _stop(nodes: list[_LocalNode]) -> int:
    """SIGTERM every node still running and wait; returns 0 if all stopped cleanly. A node
    still starting (Python's start-up takes seconds on a loaded machine) has no handler
    yet and ends by the signal itself: stopped as asked, so that counts as clean."""
    running = [node.process for node in nodes if node.process is not None and node.running]
    for proc in running:
        proc.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + STOP_SECONDS
    status = 0
    for proc in running:
        try:
            code = proc.wait(max(deadline - time.monotonic(), 0.1))
        except subprocess.TimeoutExpired:
            proc.kill()
            code = proc.wait()
        status = status or (0 if code in (0, -signal.SIGTERM) else 1)
    return status
