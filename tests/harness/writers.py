"""Clients that write to a running node: a thread that keeps writing (`BackgroundWriter`)
and many writes pipelined on one connection (`write_all`)."""

from __future__ import annotations

import itertools
import threading
import time
from collections.abc import Iterable
from types import TracebackType

from harness.polling import wait_until
from harness.process_node import Node
from harness.resp_client import Arg, Error, RespClient

#: how long a writer may take for the writes a test waits for: one write at a time with
#: fsyncs on two nodes takes a few ms on quiet cores but over 100 ms at load average 30
ACK_SECONDS = 60.0


def is_timeout(reply: object) -> bool:
    """True for a -TIMEOUT reply: the write's outcome is unknown."""
    return isinstance(reply, Error) and reply.text.startswith("TIMEOUT")


class BackgroundWriter:
    """A thread that SETs `<prefix>0`, `<prefix>1`, ... to "0", "1", ... on one node, one
    request at a time on one connection, until `stop()` or the first failure (an error
    reply, a timeout or a closed connection), which it records and stops on.

    `acked` holds the numbers whose SET was answered +OK, in order; `longest_gap` the
    longest time in seconds between the start and the first +OK or between two +OKs.
    With `unknown_ok`, a -TIMEOUT (the outcome unknown, as while the leader changes) is
    recorded in `unknown` and the writer goes on with the next number.

        with BackgroundWriter(node.client_port, "w:") as writer:
            writer.wait_acked(10)
            ...                                  # the test's mischief
            writer.wait_acked(len(writer.acked) + 10)
        assert writer.failure is None
    """

    def __init__(
        self, port: int, prefix: str, timeout: float = 10.0, unknown_ok: bool = False
    ) -> None:
        self.port = port
        self.prefix = prefix
        self.timeout = timeout
        self.unknown_ok = unknown_ok
        self.acked: list[int] = []
        self.unknown: list[int] = []
        self.failure: str | None = None
        self.longest_gap = 0.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"writer-{prefix}", daemon=True)

    def __enter__(self) -> BackgroundWriter:
        self.start()
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(self.timeout + 5)

    @property
    def alive(self) -> bool:
        return self._thread.is_alive()

    def wait_acked(self, count: int, timeout: float = ACK_SECONDS) -> None:
        """Wait until `count` SETs were acknowledged; fail at once if the writer failed."""

        def enough() -> bool:
            if self.failure is not None:
                raise AssertionError(f"the writer failed: {self.failure}")
            return len(self.acked) >= count

        wait_until(enough, timeout, f"{count} writes acknowledged (got {len(self.acked)})")

    def _run(self) -> None:
        last = time.monotonic()
        number = 0
        try:
            with RespClient(self.port, timeout=self.timeout) as client:
                while not self._stop.is_set():
                    reply = client.call("SET", f"{self.prefix}{number}", number)
                    if self.unknown_ok and is_timeout(reply):
                        self.unknown.append(number)
                        number += 1
                        continue
                    if reply != "OK":
                        self.failure = f"SET answered {reply!r}"
                        return
                    now = time.monotonic()
                    self.longest_gap = max(self.longest_gap, now - last)
                    last = now
                    self.acked.append(number)
                    number += 1
        except (OSError, ValueError) as exc:
            self.failure = f"{type(exc).__name__}: {exc}"


# ---- bulk writes, disk use, the command line ----------------------------------------


def write_all(
    node: Node, requests: Iterable[tuple[Arg, ...]], depth: int = 64, timeout: float = 60.0
) -> int:
    """Send `requests` to `node` on one connection, `depth` at a time (pipelined), and
    check that each is answered +OK (AssertionError naming the first other reply); return
    how many were sent. Loads many keys fast: `write_all(node, (("MSET", ...), ...))`."""
    sent = 0
    pending = iter(requests)
    with node.client(timeout) as client:
        while group := list(itertools.islice(pending, depth)):
            for request, reply in zip(group, client.pipeline(*group), strict=True):
                if reply != "OK":
                    raise AssertionError(f"{request[0]!r} on {node.id} answered {reply!r}")
            sent += len(group)
    return sent
