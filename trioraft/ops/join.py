"""How a node configured with `join` reaches the members it asks (runtime/joining.py).

Each `join` address is a member's peer address or its client address. The request always
travels over the peer transport, authenticated by the cluster token: at a peer address
directly; at a client address, the node first asks there for the members' peer
addresses (`RAFT.MEMBER LIST`, with the config's password and TLS), then asks them in
turn. A peer address is tried first: a client listener does not pass the peer handshake.
"""

from __future__ import annotations

import ssl
from collections.abc import Callable

import trio

from trioraft.ops.status import encode_command, table_rows
from trioraft.redis.replies import Reply
from trioraft.redis.resp import decode_reply
from trioraft.runtime.joining import Ask
from trioraft.transport.addresses import parse_address
from trioraft.transport.base import Address, Payload, describe_error
from trioraft.transport.errors import (
    HandshakeRefused,
    RpcConnectionLost,
    RpcError,
    RpcUnavailable,
)
from trioraft.transport.tcp import TcpTransport

#: what a client listener may answer with, or fail by
_CLIENT_ERRORS = (OSError, ValueError, trio.BrokenResourceError, trio.TooSlowError)


def asker(
    node_transport: Callable[[], TcpTransport], password: str | None, tls: ssl.SSLContext | None
) -> Ask:
    """Ask at a peer address, or through the members a client address lists, over the
    node's transport (`node_transport()`: the node makes it)."""

    async def ask(address: Address, method: str, payload: Payload, timeout: float) -> Payload:
        transport = node_transport()
        try:
            return await transport.call_address(address, method, payload, timeout)
        except (RpcUnavailable, RpcConnectionLost) as exc:
            if isinstance(exc.__cause__, HandshakeRefused):
                raise  # a peer listener, which refused this node (a wrong token...)
            as_peer = str(exc)
        try:
            with trio.fail_after(timeout):
                peers = await member_peer_addresses(address, password, tls)
        except _CLIENT_ERRORS as exc:
            raise RpcUnavailable(
                f"no trioraft peer answered ({as_peer}), nor a client listener "
                f"({describe_error(exc)})"
            ) from None
        failures = []
        for peer in peers:
            try:
                return await transport.call_address(peer, method, payload, timeout)
            except RpcError as exc:
                failures.append(str(exc))
        raise RpcUnavailable(f"its members' peer addresses: {'; '.join(failures) or 'none'}")

    return ask


async def member_peer_addresses(
    address: Address, password: str | None, tls: ssl.SSLContext | None
) -> list[Address]:
    """The peer addresses of the members, as the client listener at `address` lists
    them (it asks the leader)."""
    host, port = address
    stream: trio.abc.Stream = await trio.open_tcp_stream(host, port)
    try:
        if tls is not None:
            stream = trio.SSLStream(stream, tls, server_hostname=host)
        commands = [[b"AUTH", password.encode()]] if password else []
        for command in [*commands, [b"RAFT.MEMBER", b"LIST"]]:
            reply = await _command(stream, command)
        rows = table_rows(reply)
    finally:
        await trio.aclose_forcefully(stream)
    peers = [parse_address(row["peer_addr"]) for row in rows]
    return [(peer.host, peer.port) for peer in peers]


async def _command(stream: trio.abc.Stream, args: list[bytes]) -> Reply:
    await stream.send_all(encode_command(args))
    buffer = bytearray()
    while True:
        decoded = decode_reply(buffer)
        if decoded is not None:
            return decoded[0]
        data = await stream.receive_some(65536)
        if not data:
            raise ConnectionError("the node closed the connection")
        buffer += data
