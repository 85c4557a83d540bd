"""`trioraft status ADDR`: the cluster as one node sees it, one row per member; and
`trioraft member` and `trioraft transfer`, which ask a node to change the membership or
hand leadership over."""

from __future__ import annotations

import contextlib
import socket
import ssl

from trioraft.redis.replies import ErrorReply, Reply, SimpleString
from trioraft.redis.resp import decode_reply

#: the columns, in order: (field name in RAFT.STATUS, column title)
COLUMNS = (
    ("node_id", "ID"),
    ("role", "ROLE"),
    ("membership", "MEMBER"),
    ("term", "TERM"),
    ("commit_index", "COMMIT"),
    ("last_applied", "APPLIED"),
    ("last_log_index", "LAST INDEX"),
    ("snapshot_index", "SNAPSHOT"),
    ("reachable", "REACHABLE"),
)


def encode_command(args: list[bytes]) -> bytes:
    """A command as a client sends it: a RESP array of bulk strings."""
    return b"*%d\r\n" % len(args) + b"".join(b"$%d\r\n%s\r\n" % (len(a), a) for a in args)


def request(
    host: str, port: int, args: list[bytes], timeout: float, tls: ssl.SSLContext | None = None
) -> Reply:
    """Send one command on a new connection (TLS when given a context) and return its
    reply."""
    payload = encode_command(args)
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


#: the columns of `trioraft member list`: (field name in RAFT.MEMBER LIST, column title)
MEMBER_COLUMNS = (
    ("id", "ID"),
    ("role", "ROLE"),
    ("peer_addr", "PEER ADDRESS"),
    ("client_addr", "CLIENT ADDRESS"),
    ("match_index", "MATCH"),
)


def cluster_rows(
    host: str, port: int, timeout: float, tls: ssl.SSLContext | None = None
) -> list[dict[str, str]]:
    return table_rows(request(host, port, [b"RAFT.STATUS"], timeout, tls))


def table_rows(reply: Reply) -> list[dict[str, str]]:
    """The rows of RAFT.STATUS or RAFT.MEMBER LIST, as field -> value; ValueError with the
    node's error text."""
    if isinstance(reply, ErrorReply):
        raise ValueError(reply.text)
    if not isinstance(reply, list):
        raise ValueError(f"unexpected reply {reply!r}")
    rows = []
    for row in reply:
        if not isinstance(row, list):
            raise ValueError(f"unexpected status row {row!r}")
        flat = [item.decode() if isinstance(item, bytes) else str(item) for item in row]
        rows.append(dict(zip(flat[::2], flat[1::2], strict=True)))
    return rows


def print_cluster_status(
    host: str, port: int, timeout: float, tls: ssl.SSLContext | None = None
) -> None:
    print_table(cluster_rows(host, port, timeout, tls), COLUMNS)


def run_member_command(
    host: str, port: int, args: list[bytes], timeout: float, tls: ssl.SSLContext | None = None
) -> None:
    """Send RAFT.MEMBER or RAFT.TRANSFER; print LIST's table or the node's +OK. Raises
    ValueError with the node's error."""
    reply = request(host, port, args, timeout, tls)
    if args[:2] == [b"RAFT.MEMBER", b"LIST"]:
        print_table(table_rows(reply), MEMBER_COLUMNS)
        return
    if isinstance(reply, ErrorReply):
        raise ValueError(reply.text)
    print(reply.text if isinstance(reply, SimpleString) else reply)


def print_table(rows: list[dict[str, str]], columns: tuple[tuple[str, str], ...]) -> None:
    table = [[title for _, title in columns]] + [
        [row.get(field, "") or "-" for field, _ in columns] for row in rows
    ]
    widths = [max(len(line[k]) for line in table) for k in range(len(columns))]
    for line in table:
        cells = [cell.ljust(width) for cell, width in zip(line, widths, strict=True)]
        print("  ".join(cells).rstrip())
