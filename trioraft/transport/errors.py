"""The transport's named errors, all in one place.

What a caller of `Transport.call` may see, and what each means for the request:

- `RpcUnavailable`: definitely not delivered (unknown peer, full queue, transport not
  serving, the peer could not be reached or refused the handshake). Safe to retry elsewhere.
  `RpcBusy`, a kind of it: delivered but refused at once, unrun, because this node already
  had as many requests running on the peer as it may.
- `RpcTimeout` and `RpcConnectionLost`: indeterminate; the peer may or may not have run
  the request.
- `RpcRemoteError`: the peer ran its handler and the handler raised; the message is the
  remote error's text.
- `RpcBadAnswer`: the peer answered with something its request does not allow;
  indeterminate too.

`ProtocolError` (and `FrameTooLarge`) describe a peer that broke the wire protocol; they
end that one connection and never reach a caller of `send` or `call`.
"""

from __future__ import annotations


class TransportError(Exception):
    """Base class of every error the transport raises."""


class ProtocolError(TransportError):
    """Bytes from a peer that are not a valid frame, handshake or message."""


class FrameTooLarge(ProtocolError):
    """A frame header announced a body above the receiver's limit."""

    def __init__(self, size: int, limit: int) -> None:
        super().__init__(f"frame of {size} bytes exceeds the limit of {limit} bytes")
        self.size = size
        self.limit = limit


class HandshakeRefused(TransportError):
    """The accepting peer refused our handshake; the message is its stated reason."""


class RpcError(TransportError):
    """Base class of the errors `call` raises."""


class RpcUnavailable(RpcError):
    """The request was definitely not delivered."""


class RpcBusy(RpcUnavailable):
    """The peer refused the request without running it: too many of ours were running."""


class RpcTimeout(RpcError):
    """No response within the timeout; the request may or may not have been handled."""


class RpcConnectionLost(RpcError):
    """The connection ended before the response came; the request may have been handled."""


class RpcRemoteError(RpcError):
    """The remote handler raised; the message is the remote exception's text."""


class RpcBadAnswer(RpcError):
    """The answer is not one the request allows (see codec.decode_answer); the request
    may have been handled."""
