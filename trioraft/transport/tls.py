"""TLS on a connection: the two contexts of a peer link, and why a handshake failed.

ops/tls.py builds the contexts from the node's `[tls]` files.
"""

from __future__ import annotations

import ssl

import attrs
import trio


@attrs.frozen
class PeerContexts:
    """The two sides of a peer link."""

    #: for connections accepted on the peer address: requires a certificate from the CA
    accept: ssl.SSLContext
    #: for connections made to peers: presents this node's certificate, checks theirs
    connect: ssl.SSLContext


def handshake_failure(exc: trio.BrokenResourceError) -> str | None:
    """Why a TLS handshake failed, in a few words, from the ssl module's error that trio
    gives as the cause; None when the other side just went away (closed or reset)."""
    cause = exc.__cause__
    if isinstance(cause, ssl.SSLCertVerificationError):
        return f"certificate rejected: {cause.verify_message}"
    if isinstance(cause, ssl.SSLError) and not isinstance(cause, ssl.SSLEOFError):
        return (cause.reason or cause.strerror or "handshake failed").lower().replace("_", " ")
    return None
