"""One real `trioraft serve` process for tests (`Node`: start, kill -9, terminate,
pause/resume with SIGSTOP/SIGCONT, restart, INFO, RSS, log), and `run_cli` for a
`trioraft` command run to its end.

A node runs on loopback by default, or at any `host` through a `launcher` such as
`ip netns exec NS`. It writes its log (stderr and stdout) to its `log_path`; the timeouts of
the wait helpers put the tail of that log in their message.
"""

from __future__ import annotations

import os
import signal
import ssl
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

from harness.polling import wait_until
from harness.ports import HOST
from harness.resp_client import Arg, Reply, RespClient, parse_info
from trioraft.ops.config import Config, render_config

#: the repository root: nodes run `python -m trioraft` from here, so an uninstalled
#: checkout works as well as an installed package
REPO = Path(__file__).resolve().parents[2]

#: how long a node may take to start serving clients: a cold Python start, CPU-bound, so
#: it scales with the load (on two cores at load average 46, `python -m trioraft --help`
#: alone took 6 s and nodes of the fault runs did not serve within 20 s); these bounds
#: cost nothing when the condition comes sooner
START_SECONDS = 60.0
#: how long a node may take to exit after a signal
EXIT_SECONDS = 60.0


def run_cli(*args: str | Path, timeout: float = 60.0) -> subprocess.CompletedProcess[str]:
    """Run `trioraft ARGS...` (from the repository) to its end; output captured as text."""
    return subprocess.run(
        [sys.executable, "-m", "trioraft", *map(str, args)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


@dataclass
class Node:
    """One `trioraft serve` process (running or not) and its files."""

    id: str
    config_path: Path
    data_dir: Path
    client_port: int
    peer_port: int
    log_path: Path
    #: the client password of the config, sent by `client()` unless told not to
    password: str | None = field(default=None, repr=False)
    process: subprocess.Popen[bytes] | None = field(default=None, repr=False)
    paused: bool = False
    #: the address clients reach the node at (its client_addr host)
    host: str = HOST
    #: words put before the command that starts the node, e.g. `ip netns exec NS` to run
    #: it in a network namespace; the wrapper must exec the node, so `pid` is the node's
    launcher: tuple[str, ...] = ()
    #: set when the node speaks TLS: what its clients verify it with
    client_tls: ssl.SSLContext | None = field(default=None, repr=False)

    @classmethod
    def configured(
        cls,
        config: Config,
        root: Path,
        log_dir: Path,
        *,
        password: str | None = None,
        host: str | None = None,
        launcher: tuple[str, ...] = (),
        client_tls: ssl.SSLContext | None = None,
    ) -> Node:
        """The node that `config` describes, its config file written to `root/<id>.toml`
        and its log going to `log_dir/<id>.log`; clients reach it at `host` (default: the
        host of its client address). Nothing is started."""
        path = root / f"{config.node_id}.toml"
        path.write_text(render_config(config))
        return cls(
            id=config.node_id,
            config_path=path,
            data_dir=config.data_dir,
            client_port=config.client_addr.port,
            peer_port=config.peer_addr.port,
            log_path=log_dir / f"{config.node_id}.log",
            password=password,
            host=config.client_addr.host if host is None else host,
            launcher=launcher,
            client_tls=client_tls,
        )

    # -- the process

    def start(self) -> None:
        """Start the process (it must not be running); returns at once, see wait_serving."""
        if self.running:
            raise RuntimeError(f"{self.id} is already running")
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                [
                    *self.launcher,
                    sys.executable,
                    "-m",
                    "trioraft",
                    "serve",
                    "--config",
                    str(self.config_path),
                ],
                cwd=REPO,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=log,
            )
        self.paused = False

    @property
    def running(self) -> bool:
        """Whether the process exists and has not exited (a paused one is running)."""
        return self.process is not None and self.process.poll() is None

    @property
    def pid(self) -> int:
        if self.process is None:
            raise RuntimeError(f"{self.id} was never started")
        return self.process.pid

    @property
    def returncode(self) -> int | None:
        return None if self.process is None else self.process.poll()

    def wait_serving(self, timeout: float = START_SECONDS) -> None:
        """Wait until the node answers PING; fail at once if the process exits."""

        def serving() -> bool:
            if not self.running:
                raise RuntimeError(
                    f"{self.id} exited with status {self.returncode}:\n{self.log_tail()}"
                )
            with self.client(timeout=1.0) as client:
                return client.call("PING") == "PONG"

        wait_until(serving, timeout, f"{self.id} answers PING", describe=self.log_tail)

    def signal(self, signum: int) -> None:
        if self.running:
            os.kill(self.pid, signum)

    def kill(self) -> int | None:
        """kill -9 and reap; the exit status, None if it was not running."""
        if not self.running:
            return self.returncode
        assert self.process is not None
        self.process.kill()
        self.paused = False
        return self.process.wait(EXIT_SECONDS)

    def terminate(self, timeout: float = EXIT_SECONDS) -> int:
        """SIGTERM and wait for the exit status (TimeoutExpired if it hangs)."""
        assert self.process is not None
        self.resume()
        self.process.terminate()
        return self.process.wait(timeout)

    def pause(self) -> None:
        """SIGSTOP: the process stays, but answers nothing until `resume`."""
        self.signal(signal.SIGSTOP)
        self.paused = True

    def resume(self) -> None:
        """SIGCONT after `pause` (harmless otherwise)."""
        if self.paused:
            self.signal(signal.SIGCONT)
            self.paused = False

    def restart(self, timeout: float = START_SECONDS) -> None:
        """kill -9 if running, start again and wait until it serves."""
        self.kill()
        self.start()
        self.wait_serving(timeout)

    # -- talking to it

    def client(self, timeout: float = 10.0, auth: bool = True) -> RespClient:
        """A new connection, authenticated when the node has a password (and `auth`)."""
        client = RespClient(self.client_port, host=self.host, timeout=timeout, tls=self.client_tls)
        if auth and self.password is not None:
            try:
                reply = client.call("AUTH", self.password)
            except BaseException:
                client.close()
                raise
            if reply != "OK":
                client.close()
                raise ValueError(f"AUTH on {self.id} answered {reply!r}")
        return client

    def call(self, *args: Arg, timeout: float = 10.0) -> Reply:
        """One request on a new connection."""
        with self.client(timeout) as client:
            return client.call(*args)

    def info(self, section: str = "raft", timeout: float = 2.0) -> dict[str, str]:
        reply = self.call("INFO", section, timeout=timeout)
        if not isinstance(reply, bytes):
            raise ValueError(f"INFO {section} on {self.id} answered {reply!r}")
        return parse_info(reply)

    # -- looking at it

    def rss_kib(self) -> int:
        """The process's resident set size (VmRSS in /proc/PID/status), in KiB."""
        for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
        raise RuntimeError(f"no VmRSS for {self.id} (pid {self.pid})")

    def log_text(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def log_tail(self, lines: int = 15) -> str:
        tail = self.log_text().splitlines()[-lines:]
        return f"--- {self.id} log ({self.log_path}) ---\n" + "\n".join(tail)

    def wal_segments(self) -> list[Path]:
        """The write-ahead log segment files, oldest first."""
        return sorted((self.data_dir / "wal").glob("*.wal"))

    def snapshot_files(self) -> list[Path]:
        """The complete snapshot files, oldest first (temp and partial files aside)."""
        return sorted((self.data_dir / "snap").glob("*.snap"))
