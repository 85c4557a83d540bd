"""Peer transport: Raft messages and runtime RPCs between trioraft nodes.

`base.Transport` is the interface the node runtime uses; `TcpTransport` implements it over
TCP (`tcp.py`, wire format in `codec.py`), `MemoryNetwork` and `MemoryTransport` in memory
for tests (`memory.py`). The errors a caller can meet are in `errors.py`; addresses as
written (`host:port`) are parsed in `addresses.py`, and a link's TLS is in `tls.py`.
"""

from trioraft.transport.base import Address, Payload, PeerStats, RpcHandler, Transport
from trioraft.transport.errors import (
    FrameTooLarge,
    HandshakeRefused,
    ProtocolError,
    RpcBusy,
    RpcConnectionLost,
    RpcError,
    RpcRemoteError,
    RpcTimeout,
    RpcUnavailable,
    TransportError,
)
from trioraft.transport.memory import MemoryNetwork, MemoryTransport
from trioraft.transport.tcp import TcpTransport

__all__ = [
    "Address",
    "FrameTooLarge",
    "HandshakeRefused",
    "MemoryNetwork",
    "MemoryTransport",
    "Payload",
    "PeerStats",
    "ProtocolError",
    "RpcBusy",
    "RpcConnectionLost",
    "RpcError",
    "RpcHandler",
    "RpcRemoteError",
    "RpcTimeout",
    "RpcUnavailable",
    "TcpTransport",
    "Transport",
    "TransportError",
]
