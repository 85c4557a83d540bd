"""The operator's HTTP listener (`metrics_addr`): `/metrics`, `/health` and `/ready`.

- `GET /metrics`: the node's metrics in Prometheus's text format (runtime/metrics.py).
- `GET /health`: 200 `ok` when the node is a member of its cluster, accepted by it (the
  data dir check passed), knows a leader it heard from within an election timeout (or
  leads, which it stops doing once a majority is silent that long) and has applied its
  log within `MAX_APPLY_LAG` entries of its commit index; else 503 with a one-line
  reason. For a load balancer, or an alert.
- `GET /ready`: 200 once the node serves clients, else 503.

A small HTTP/1.1 server of its own in the node's event loop (one request per connection,
answered with `Connection: close`), not prometheus_client's threaded one: the levels it
reports are read from the node, which only its event loop may touch. A request must
arrive within `REQUEST_SECONDS` and be at most `MAX_REQUEST_BYTES`, so a slow or
hostile client holds nothing for long.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Final

import trio
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

from trioraft.core.raft import Role
from trioraft.logs import NodeLogger

if TYPE_CHECKING:
    from trioraft.runtime.node import Node

#: how far the applied index may trail the commit index for the node to be healthy
MAX_APPLY_LAG: Final = 1000
#: the longest request head accepted, and how long it may take to arrive
MAX_REQUEST_BYTES: Final = 8192
REQUEST_SECONDS: Final = 5.0

_TEXT: Final = "text/plain; charset=utf-8"
_REASONS: Final = {
    200: "OK",
    400: "Bad Request",
    404: "Not Found",
    405: "Method Not Allowed",
    500: "Internal Server Error",
    503: "Service Unavailable",
}


def health(node: Node[Any]) -> str | None:
    """None when the node is healthy (see the module docstring), else why not."""
    core = node.core
    if node.stopping:
        return "stopping"
    if not node.accepted.is_set():
        return "the cluster has not yet accepted this node's data dir"
    if node.id not in core.members.all:
        return "not a member of the cluster"
    timeout_ms = round(node.options.tick_seconds * core.config.election_ticks * 1000)
    if core.role is not Role.LEADER:
        if core.leader_id is None:
            return f"no leader (term {core.term})"
        if core.election_elapsed >= core.config.election_ticks:
            return f"no word from the leader {core.leader_id} for over {timeout_ms} ms"
    lag = core.commit - node.applied
    if lag > MAX_APPLY_LAG:
        return (
            f"applied index {node.applied} trails the commit index {core.commit} by {lag} "
            f"entries (more than {MAX_APPLY_LAG})"
        )
    return None


class Endpoint:
    """Answers `/metrics`, `/health` and `/ready` for one node."""

    def __init__(self, node: Node[Any], registry: CollectorRegistry, serving: Callable[[], bool]):
        self.node = node
        self.registry = registry
        #: whether the node serves clients yet
        self.serving = serving
        self.log = NodeLogger(node.id, "trioraft.health")

    async def serve(
        self, host: str, port: int, *, task_status: trio.TaskStatus[Any] = trio.TASK_STATUS_IGNORED
    ) -> None:
        """Listen until cancelled; `started()` with the bound (host, port)."""
        listeners = await trio.open_tcp_listeners(port, host=host)
        task_status.started(listeners[0].socket.getsockname()[:2])
        await trio.serve_listeners(self._handle, listeners)

    def answer(self, method: str, path: str) -> tuple[int, str, bytes]:
        """(status, content type, body) for a request."""
        route = path.partition("?")[0]
        if route not in ("/metrics", "/health", "/ready"):
            return 404, _TEXT, b"not found: try /metrics, /health or /ready\n"
        if method != "GET":
            return 405, _TEXT, b"only GET\n"
        if route == "/metrics":
            return 200, CONTENT_TYPE_LATEST, generate_latest(self.registry)
        if route == "/health":
            problem = health(self.node)
        else:
            problem = None if self.serving() else "not serving clients yet"
        if problem is None:
            return 200, _TEXT, b"ok\n"
        return 503, _TEXT, problem.encode() + b"\n"

    def answer_safely(self, method: str, path: str) -> tuple[int, str, bytes]:
        """`answer`, with a failure logged and answered 500: the node must not stop
        because one scrape failed."""
        try:
            return self.answer(method, path)
        except Exception:
            self.log.exception("answering an HTTP request failed", path=path)
            return 500, _TEXT, b"internal error: see the node's log\n"

    async def _handle(self, stream: trio.SocketStream) -> None:
        try:
            with trio.move_on_after(REQUEST_SECONDS):
                head = await read_head(stream)
                if head is None:
                    status, kind, body = 400, _TEXT, b"bad request\n"
                else:
                    status, kind, body = self.answer_safely(*head)
                await stream.send_all(_response(status, kind, body))
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            pass
        finally:
            await trio.aclose_forcefully(stream)


async def read_head(stream: trio.abc.ReceiveStream) -> tuple[str, str] | None:
    """The method and path of the request on `stream`, None when it is not HTTP or too
    long. Headers and body are not used."""
    data = bytearray()
    while b"\r\n\r\n" not in data and b"\n\n" not in data:
        if len(data) > MAX_REQUEST_BYTES:
            return None
        chunk = await stream.receive_some(4096)
        if not chunk:
            break
        data += chunk
    words = bytes(data).split(b"\n", 1)[0].decode("latin-1").split()
    if len(words) != 3 or not words[2].startswith("HTTP/"):
        return None
    return words[0], words[1]


def _response(status: int, content_type: str, body: bytes) -> bytes:
    reason = _REASONS[status]
    head = (
        f"HTTP/1.1 {status} {reason}\r\nContent-Type: {content_type}\r\n"
        f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n"
    )
    return head.encode("latin-1") + body
