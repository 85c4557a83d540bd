"""What the client listener allows each client (the `[limits]` a config sets for clients)."""

from __future__ import annotations

import attrs

#: how long a client's TLS handshake may take on the client listener
HANDSHAKE_SECONDS = 10.0


@attrs.frozen
class ClientLimits:
    max_value_bytes: int = 1024 * 1024
    max_inline_bytes: int = 64 * 1024
    max_args: int = 1024 * 1024
    #: the largest request, all its arguments together, checked as its bytes arrive
    max_request_bytes: int = 16 * 1024 * 1024
    max_clients: int = 10000
    #: seconds a connection may stay silent (0: forever)
    idle_timeout: float = 0.0
    #: seconds a client may take to read its replies before it is disconnected
    reply_timeout: float = 30.0
    max_unread_reply_bytes: int = 64 * 1024 * 1024
    #: the most commands, and bytes of arguments, one transaction (MULTI) may queue
    max_transaction_commands: int = 10_000
    max_transaction_bytes: int = 16 * 1024 * 1024
