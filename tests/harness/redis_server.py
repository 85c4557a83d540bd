"""A redis-server of its own, for the measurements that put trioraft beside Redis
(tests/perf): started on loopback in a temp dir, killed at the end."""

from __future__ import annotations

import contextlib
import shutil
import subprocess
import tempfile
from collections.abc import Iterator

import attrs

from harness.polling import wait_until
from harness.ports import free_ports


@attrs.frozen
class RedisServer:
    pid: int
    port: int


@contextlib.contextmanager
def redis_server(*options: str) -> Iterator[RedisServer | None]:
    """A redis-server started with `options` (such as `--appendonly yes`), serving once
    this yields; None when redis-server is not installed."""
    binary = shutil.which("redis-server")
    if binary is None:
        yield None
        return
    (port,) = free_ports(1)
    with tempfile.TemporaryDirectory(prefix="redis-server-") as folder:
        process = subprocess.Popen(
            [binary, "--port", str(port), "--bind", "127.0.0.1", "--dir", folder, *options],
            stdout=subprocess.DEVNULL,
        )
        try:
            wait_until(lambda: answers(port), 10.0, "redis-server answers")
            yield RedisServer(process.pid, port)
        finally:
            process.kill()
            process.wait()


def answers(port: int) -> bool:
    """Whether the server on `port` answers PING."""
    return ask(port, "PING") == "PONG"


def ask(port: int, command: str) -> str | None:
    """What the server on `port` answers `command` (through redis-cli), None if nothing."""
    with contextlib.suppress(OSError, subprocess.SubprocessError):
        done = subprocess.run(
            ["redis-cli", "-p", str(port), command], capture_output=True, timeout=2
        )
        return done.stdout.decode().strip()
    return None
