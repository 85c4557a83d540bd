"""`trioraft status ADDR`: the cluster as one node sees it, one row per member."""

from __future__ import annotations

import contextlib
import socket
import ssl

from trioraft.redis.replies import ErrorReply, Reply
from trioraft.redis.resp import decode_reply

#: the columns, in order: (field name in RAFT.STATUS, column title)
COLUMNS = (
    ("node_id", "ID"),
    ("role", "ROLE"),
    ("term", "TERM"),
    ("commit_index", "COMMIT"),
    ("last_applied", "APPLIED"),
    ("last_log_index", "LAST INDEX"),
    ("snapshot_index", "SNAPSHOT"),
    ("reachable", "REACHABLE"),
)


def request(
    host: str, port: int, args: list[bytes], timeout: float, tls: ssl.SSLContext | None = None
) -> Reply:
    """Send one command on a new connection (TLS when given a context) and return its
    reply."""
    payload = b"*%d\r\n" % len(args) + b"".join(b"$%d\r\n%s\r\n" % (len(a), a) for a in args)
    with contextlib.ExitStack() as stack:
        sock = stack.enter_context(socket.create_connection((host, port), timeout=timeout))
        if tls is not None:
            sock = stack.enter_context(tls.wrap_socket(sock, server_hostname=host))
        sock.sendall(payload)
        buf = bytearray()
        while True:
            chunk = sock.recv(65536)
            if not chunk:
                raise ConnectionError("the node closed the connection")
            buf += chunk
            decoded = decode_reply(buf)
            if decoded is not None:
                return decoded[0]


def cluster_rows(
    host: str, port: int, timeout: float, tls: ssl.SSLContext | None = None
) -> list[dict[str, str]]:
    reply = request(host, port, [b"RAFT.STATUS"], timeout, tls)
    if isinstance(reply, ErrorReply):
        raise ValueError(reply.text)
    if not isinstance(reply, list):
        raise ValueError(f"unexpected reply {reply!r}")
    rows = []
    for row in reply:
        assert isinstance(row, list)
        flat = [item.decode() if isinstance(item, bytes) else str(item) for item in row]
        rows.append(dict(zip(flat[::2], flat[1::2], strict=True)))
    return rows


def print_cluster_status(
    host: str, port: int, timeout: float, tls: ssl.SSLContext | None = None
) -> None:
    rows = cluster_rows(host, port, timeout, tls)
    table = [[title for _, title in COLUMNS]] + [
        [row.get(field, "") or "-" for field, _ in COLUMNS] for row in rows
    ]
    widths = [max(len(line[k]) for line in table) for k in range(len(COLUMNS))]
    for line in table:
        cells = [cell.ljust(width) for cell, width in zip(line, widths, strict=True)]
        print("  ".join(cells).rstrip())
